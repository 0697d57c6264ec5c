package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"herald/services/contract"
	"herald/services/devstack/dynamolocal/dynamotest"
	"herald/services/internal/herald"
	"herald/services/internal/store"
)

// countingSQS counts the SQS requests the API makes.
type countingSQS struct {
	sqsAPI
	calls atomic.Int64
}

func (c *countingSQS) SendMessage(ctx context.Context, in *sqs.SendMessageInput, o ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	c.calls.Add(1)
	return c.sqsAPI.SendMessage(ctx, in, o...)
}

func (c *countingSQS) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, o ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	c.calls.Add(1)
	return c.sqsAPI.SendMessageBatch(ctx, in, o...)
}

// BenchmarkEnqueue posts single notifications from many goroutines through
// the handler to the in-process SQS emulator, with coalescing on (the default
// 2ms linger) and off, and reports SQS requests per notification. The
// pipeline figures for issue 6 come from `make bench`; this isolates the API.
//
//	go test ./services/notification-api -run '^$' -bench Enqueue -benchtime 3000x
func BenchmarkEnqueue(b *testing.B) {
	localAWSEnv(b)
	for _, linger := range []time.Duration{0, 2 * time.Millisecond} {
		b.Run("linger="+linger.String(), func(b *testing.B) {
			emu := startEmulator(b, "127.0.0.1:0")
			defer emu.Close()
			awsCfg, err := herald.LoadAWSConfig(context.Background(), "us-east-1", awsOptions)
			if err != nil {
				b.Fatal(err)
			}
			counter := &countingSQS{sqsAPI: sqs.NewFromConfig(awsCfg, func(o *sqs.Options) { o.BaseEndpoint = aws.String(emu.Endpoint) })}
			cfg := testConfig()
			cfg.QueueURL = emu.QueueURL("herald")
			cfg.BatchLinger = linger
			cfg.EnqueueTimeout = 5 * time.Second
			s, err := newServer(cfg, deps{sqs: counter}, herald.NewLogger(discard{}, "error", "bench", string(contract.API)), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.close()
			h := s.handler()
			body := valid(nil)
			b.SetParallelism(16) // 16 per core: concurrent clients, as under load
			b.ResetTimer()
			postParallel(b, h, body, nil)
			b.ReportMetric(float64(counter.calls.Load())/float64(b.N), "sqs-requests/op")
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkKeyed posts single notifications through the handler without
// and with an Idempotency-Key of their own, on the real store in dynalite
// (through dynamolocal's proxy) with the DynamoDB client built as main
// builds it, and a fake queue. It reports the API process's CPU per
// notification (its profile is the API's cost of a key: run it with
// -cpuprofile); the rate is dynalite's, not the API's.
//
//	go test -run='^$' -bench=Keyed -benchtime=2000x -cpuprofile=cpu.out ./services/notification-api
func BenchmarkKeyed(b *testing.B) {
	localAWSEnv(b)
	dyn, table := dynamo.Table(b)
	ctx := context.Background()
	awsCfg, err := herald.LoadAWSConfig(ctx, "us-east-1", awsOptions)
	if err != nil {
		b.Fatal(err)
	}
	ids, err := store.NewIDs(bytes.Repeat([]byte("i"), store.MinSecretBytes))
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.New(store.NewDynamoDB(awsCfg, dyn.Endpoint), store.Config{
		Table: table, IdempotencyTTL: 24 * time.Hour, StatusTTL: 30 * 24 * time.Hour, IDs: ids, Clock: time.Now,
	})
	if err != nil {
		b.Fatal(err)
	}
	// 16 clients a core: the rate is dynalite's.
	postKeyedModes(b, st, ids, 16, func() func(*testing.B) {
		before := dyn.Stats()
		return func(b *testing.B) {
			b.ReportMetric(float64(dyn.Stats().Sub(before).Total())/float64(b.N), "dynamodb-requests/op")
		}
	})
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// localAWSEnv points the SDK's default chain at dummy credentials and no
// shared files, for herald.LoadAWSConfig against the emulators.
func localAWSEnv(b *testing.B) {
	none := filepath.Join(b.TempDir(), "none")
	b.Setenv("AWS_ACCESS_KEY_ID", "local")
	b.Setenv("AWS_SECRET_ACCESS_KEY", "local")
	b.Setenv("AWS_CONFIG_FILE", none)
	b.Setenv("AWS_SHARED_CREDENTIALS_FILE", none)
	b.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// postParallel posts body b.N times through h from the benchmark's
// goroutines, each request changed by prepare (when not nil), and stops the
// timer; it fails the benchmark if any post was not accepted.
func postParallel(b *testing.B, h http.Handler, body string, prepare func(*http.Request)) {
	var failed atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/api/notifications", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+testKey)
			req.Header.Set("Content-Type", "application/json")
			if prepare != nil {
				prepare(req)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusAccepted {
				failed.Add(1)
			}
		}
	})
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d requests not accepted", n, b.N)
	}
}

// BenchmarkKeyedMarginal is the API's CPU for a notification without and
// with an Idempotency-Key when neither the queue nor the store costs
// anything else: a Go fake for SQS, and for DynamoDB the SDK's client on an
// HTTP client that answers success at once. The API runs at its own speed
// (no emulator sets the rate), from 32 goroutines a core, so its batchers
// fill as under load; the difference of the two is what a key adds to the
// API's CPU per notification (the Begin and Complete through the batchers,
// the store and the SDK), as in production but for the network's syscalls.
//
//	go test -run='^$' -bench=KeyedMarginal -benchtime=20000x ./services/notification-api
func BenchmarkKeyedMarginal(b *testing.B) {
	ids, err := store.NewIDs(bytes.Repeat([]byte("i"), store.MinSecretBytes))
	if err != nil {
		b.Fatal(err)
	}
	db := dynamotest.CannedClient()
	st, err := store.New(db, store.Config{Table: "herald-bench", IdempotencyTTL: 24 * time.Hour, StatusTTL: 30 * 24 * time.Hour, IDs: ids, Clock: time.Now})
	if err != nil {
		b.Fatal(err)
	}
	// 128 clients a core: a keyed request waits out three lingers (Begin,
	// queue, Complete), so it takes this many to keep the CPU busy and the
	// API, not its waits, the limit.
	postKeyedModes(b, st, ids, 128, nil)
}

// postKeyedModes posts valid notifications to an API on st and a fake
// queue from parallelism goroutines a core, without and with an
// Idempotency-Key of its own on each, and reports the API's CPU per
// notification. start, when set, runs before the timed part and gives what
// reports more after it.
func postKeyedModes(b *testing.B, st *store.Store, ids *store.IDs, parallelism int, start func() func(*testing.B)) {
	var seq atomic.Int64
	for _, keyed := range []bool{false, true} {
		b.Run(fmt.Sprint("keyed=", keyed), func(b *testing.B) {
			cfg := testConfig()
			cfg.EnqueueTimeout = 5 * time.Second
			s, err := newServer(cfg, deps{sqs: &fakeSQS{}, state: st, ids: ids}, herald.NewLogger(discard{}, "error", "bench", string(contract.API)), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.close()
			var key func(*http.Request)
			if keyed {
				key = func(r *http.Request) { r.Header.Set("Idempotency-Key", fmt.Sprint("bench-", seq.Add(1))) }
			}
			h := s.handler()
			var report func(*testing.B)
			if start != nil {
				report = start()
			}
			cpu0 := processCPU(b)
			b.SetParallelism(parallelism)
			b.ResetTimer()
			postParallel(b, h, valid(nil), key)
			b.ReportMetric((processCPU(b)-cpu0).Seconds()*1e6/float64(b.N), "cpu-µs/op")
			if report != nil {
				report(b)
			}
		})
	}
}
