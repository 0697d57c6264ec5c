package store_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"herald/services/devstack/dynamolocal/dynamotest"
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
	ctx := context.Background()
	answer := store.Answer{Status: 202, Body: []byte(`{"id":"0190b3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b","status":"queued"}`)}
	var seq atomic.Int64
	for _, shared := range []int{1, 10, 25} {
		b.Run(fmt.Sprint("shared-by-", shared), func(b *testing.B) {
			cpu0 := processCPU(b)
			for done := 0; done < b.N; done += shared {
				reqs := make([]store.BeginRequest, shared)
				for i := range reqs {
					reqs[i] = store.BeginRequest{Scope: "svc", Key: fmt.Sprint("k-", seq.Add(1)), BodyHash: body("a")}
				}
				cs := make([]store.Completion, shared)
				for i, r := range s.BeginMany(ctx, 30*time.Second, reqs) {
					if r.Err != nil {
						b.Fatal(r.Err)
					}
					cs[i] = store.Completion{Lease: r.Lease, Answer: answer}
				}
				cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				if err := errors.Join(s.CompleteMany(cctx, cs)...); err != nil {
					b.Fatal(err)
				}
				cancel()
			}
			b.ReportMetric((processCPU(b)-cpu0).Seconds()*1e6/float64(b.N), "cpu-µs/notification")
		})
	}
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
