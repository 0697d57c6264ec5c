package store_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"herald/services/devstack/dynamolocal"
	"herald/services/devstack/dynamolocal/dynamotest"
	"herald/services/internal/herald"
	"herald/services/internal/store"
)

// BenchmarkStoreOnDynalite is the local store's ceiling: each path of a
// notification against dynalite (through dynamolocal's proxy, as the local
// pipeline uses it), from 8 goroutines a core. It reports notifications/s
// and DynamoDB requests/s; dynalite is one Node.js process, so this is the
// emulator's limit, not DynamoDB's.
//
//	go test -run='^$' -bench=StoreOnDynalite ./services/internal/store
func BenchmarkStoreOnDynalite(b *testing.B) {
	emu, table := newTable(b)
	client := emu.Client(func(o *dynamodb.Options) {
		o.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			tr.MaxIdleConnsPerHost = 256
		})
	})
	s, err := store.New(client, store.Config{
		Table: table, IdempotencyTTL: idemTTL, StatusTTL: statusTTL, IDs: testIDs(b), Clock: time.Now,
	})
	if err != nil {
		b.Fatal(err)
	}
	ids := testIDs(b)
	ctx := context.Background()
	var seq atomic.Int64
	answer := store.Answer{Status: 202, Body: []byte(`{"status":"queued"}`)}
	paths := []struct {
		name string
		op   func() error
	}{
		// The API's part of a keyed notification.
		{"api-keyed", func() error {
			bg, err := s.Begin(ctx, "svc", fmt.Sprint("key-", seq.Add(1)), body("a"), 30*time.Second)
			if err != nil {
				return err
			}
			return s.Complete(ctx, bg.Lease, answer)
		}},
		// The sender's part of any notification.
		{"sender", func() error {
			id, _ := ids.New("svc")
			cl, err := s.Claim(ctx, id, "svc", time.Minute)
			if err != nil {
				return err
			}
			_, err = s.MarkSent(ctx, cl.Lease, "ses-"+id, time.Now())
			return err
		}},
		// The sender's part, then SES's Send and Delivery events.
		{"sender+feedback", func() error {
			id, _ := ids.New("svc")
			cl, err := s.Claim(ctx, id, "svc", time.Minute)
			if err != nil {
				return err
			}
			at := time.Now()
			if _, err = s.MarkSent(ctx, cl.Lease, "ses-"+id, at); err != nil {
				return err
			}
			if _, err := s.RecordFeedback(ctx, id, store.Feedback{ProviderMessageID: "ses-" + id, SentAt: at}); err != nil {
				return err
			}
			_, err = s.RecordFeedback(ctx, id, store.Feedback{ProviderMessageID: "ses-" + id, SentAt: at,
				Recipients: []store.Recipient{{Address: "a@example.com", Outcome: store.OutcomeDelivered, At: at.Add(time.Second)}}})
			return err
		}},
		// A status lookup.
		{"get", func() error {
			id, _ := ids.New("svc")
			_, err := s.Get(ctx, id, "svc")
			return err
		}},
	}
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			b.SetParallelism(8)
			before := emu.Stats()
			var failed atomic.Value
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := p.op(); err != nil {
						failed.Store(err)
						return
					}
				}
			})
			elapsed := time.Since(start).Seconds()
			if err, _ := failed.Load().(error); err != nil {
				b.Fatal(err)
			}
			requests := emu.Stats().Sub(before).Total()
			b.ReportMetric(float64(b.N)/elapsed, "notifications/s")
			b.ReportMetric(float64(requests)/elapsed, "requests/s")
			b.ReportMetric(float64(requests)/float64(b.N), "requests/notification")
		})
	}
}

// BenchmarkKeyedWritesSDK is the client-side CPU of a keyed notification's
// store writes, without a network or an emulator: Begin and Complete one
// request at a time (a PutItem and an UpdateItem each), against BeginMany
// and CompleteMany of 10 (one TransactWriteItems and one BatchWriteItem for
// ten notifications, as the API's coalescing makes them under load).
//
//	go test -run='^$' -bench=KeyedWritesSDK -benchtime=20000x ./services/internal/store
func BenchmarkKeyedWritesSDK(b *testing.B) {
	client := dynamotest.CannedClient()
	s, err := store.New(client, store.Config{Table: "herald-bench", IdempotencyTTL: idemTTL, StatusTTL: statusTTL, IDs: testIDs(b), Clock: time.Now})
	if err != nil {
		b.Fatal(err)
	}
	for _, shared := range []int{1, 10, 25} {
		b.Run(fmt.Sprint("shared-by-", shared), func(b *testing.B) { keyedWrites(b, s, shared, 1) })
	}
}

// BenchmarkKeyedWritesLoopback is what the network path adds to the
// keyed writes' client CPU: the store on herald.LoadAWSConfig's client
// against an endpoint in another process (this test binary, see
// writesOKChild) that answers every write at once, as the pipeline bench's
// keyed-ceiling mode does, next to the same calls on the canned client;
// four callers at once, as the API makes its calls, and the calls shared
// as in the bench's burst (about 27 Begins a TransactWriteItems) or as
// full as they go. The client's CPU only: the endpoint's is its own.
//
//	go test -run='^$' -bench=KeyedWritesLoopback -benchtime=20000x ./services/internal/store
func BenchmarkKeyedWritesLoopback(b *testing.B) {
	b.Setenv("AWS_ACCESS_KEY_ID", "local")
	b.Setenv("AWS_SECRET_ACCESS_KEY", "local")
	url := startWritesOK(b)
	clients := []struct {
		name   string
		client store.Client
	}{{"canned", dynamotest.CannedClient()}}
	// net/http's default write buffer (4 KiB), and the API's.
	for _, wb := range []int{4 << 10, 64 << 10} {
		cfg, err := herald.LoadAWSConfig(context.Background(), "us-east-1", herald.AWSOptions{MaxAttempts: 3, WriteBufferSize: wb})
		if err != nil {
			b.Fatal(err)
		}
		clients = append(clients, struct {
			name   string
			client store.Client
		}{fmt.Sprintf("loopback-%dKiB", wb>>10), store.NewDynamoDB(cfg, url)})
	}
	for _, c := range clients {
		s, err := store.New(c.client, store.Config{Table: "herald-bench", IdempotencyTTL: idemTTL, StatusTTL: statusTTL, IDs: testIDs(b), Clock: time.Now})
		if err != nil {
			b.Fatal(err)
		}
		for _, shared := range []int{27, store.MaxTransactItems} {
			b.Run(fmt.Sprintf("%s/shared-by-%d", c.name, shared), func(b *testing.B) { keyedWrites(b, s, shared, 4) })
		}
	}
}

// keyedWrites begins and completes b.N keys on s from callers
// goroutines, in calls shared by shared keys, and reports the process's
// CPU per notification.
func keyedWrites(b *testing.B, s *store.Store, shared, callers int) {
	answer := store.Answer{Status: 202, Body: []byte(`{"id":"0190b3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b","status":"queued"}`)}
	round := func() error {
		reqs := make([]store.BeginRequest, shared)
		for i := range reqs {
			reqs[i] = store.BeginRequest{Scope: "svc", Key: fmt.Sprint("k-", keySeq.Add(1)), BodyHash: body("a")}
		}
		cs := make([]store.Completion, shared)
		for i, r := range s.BeginMany(context.Background(), 30*time.Second, reqs) {
			if r.Err != nil {
				return r.Err
			}
			cs[i] = store.Completion{Lease: r.Lease, Answer: answer}
		}
		// As the API makes them: calls of at most MaxBatchWrite.
		for len(cs) > 0 {
			n := min(len(cs), store.MaxBatchWrite)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			err := errors.Join(s.CompleteMany(ctx, cs[:n])...)
			cancel()
			if err != nil {
				return err
			}
			cs = cs[n:]
		}
		return nil
	}
	rounds := (b.N + shared - 1) / shared
	var next atomic.Int64
	var wg sync.WaitGroup
	cpu0 := processCPU(b)
	for range callers {
		wg.Go(func() {
			for next.Add(1) <= int64(rounds) {
				if err := round(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric((processCPU(b)-cpu0).Seconds()*1e6/float64(rounds*shared), "cpu-µs/notification")
}

var keySeq atomic.Int64

// writesOKVariable makes the test binary a writes-ok DynamoDB endpoint
// (writesOKChild) instead of running tests.
const writesOKVariable = "HERALD_STORE_BENCH_WRITES_OK"

// startWritesOK runs this test binary as a writes-ok endpoint until the
// benchmark ends, and gives its URL.
func startWritesOK(b *testing.B) string {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), writesOKVariable+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatalf("writes-ok endpoint: %v", err)
	}
	return strings.TrimSpace(line)
}

// writesOKChild serves, when writesOKVariable is set, every write with
// success at once (dynamolocal.WritesOK) on a free loopback port it prints,
// until it is killed; it reports whether it did.
func writesOKChild() bool {
	if os.Getenv(writesOKVariable) == "" {
		return false
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("http://%s\n", ln.Addr())
	http.Serve(ln, dynamolocal.NewWritesOK())
	return true
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
