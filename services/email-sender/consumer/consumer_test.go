package consumer

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sestypes "github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"herald/services/email-sender/transport"
	"herald/services/internal/herald"
)

func TestSuccessesAreDeletedInBatchesOfTen(t *testing.T) {
	fq := newFakeSQS()
	cfg := testConfig()
	cfg.Workers = 32
	// A linger longer than the test: batches go out only when full, or at
	// shutdown, which makes their sizes exact.
	cfg.BatchLinger = time.Hour
	metrics := herald.NewMetrics(&strings.Builder{}, "test", "email-sender")
	var sent atomic.Int32
	c := newConsumer(t, cfg, Deps{SQS: fq, Metrics: metrics,
		Sender: senderFunc(func(context.Context, *herald.Envelope) (string, error) { sent.Add(1); return "ok", nil })})
	for i := range 25 {
		id := fmt.Sprintf("m%02d", i)
		fq.put(sqsMessage(id, envelopeBody(t, "env-"+id), 1, 1))
	}
	stop := start(t, c)
	waitFor(t, "25 sends and two full delete batches", func() bool { return sent.Load() == 25 && len(fq.deletedReceipts()) == 20 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	fq.read(func(f *fakeSQS) {
		for _, call := range f.deleteCalls {
			sizes = append(sizes, len(call))
		}
		slices.Sort(sizes)
		if len(f.visibility) > 0 || len(f.dlq) > 0 {
			t.Errorf("visibility changes %v, dead letters %d; want none", f.visibility, len(f.dlq))
		}
	})
	if fmt.Sprint(sizes) != "[5 10 10]" {
		t.Errorf("delete batch sizes %v, want [5 10 10]", sizes)
	}
	seen := map[string]bool{}
	for _, r := range fq.deletedReceipts() {
		seen[r] = true
	}
	if len(seen) != 25 {
		t.Errorf("%d distinct messages deleted, want 25", len(seen))
	}
	if got := metrics.Totals()[MetricSent]; got != 25 {
		t.Errorf("Sent = %v, want 25", got)
	}
}

// TestOneAtATime: with ReceiveBatch and DeleteBatch 1 (batching off, for
// comparisons), each receive asks for one message and each success is
// deleted on its own with DeleteMessage.
func TestOneAtATime(t *testing.T) {
	fq := newFakeSQS()
	cfg := testConfig()
	cfg.ReceiveBatch, cfg.DeleteBatch = 1, 1
	cfg.BatchLinger = time.Hour // a batch of one leaves at once anyway
	var sent atomic.Int32
	c := newConsumer(t, cfg, Deps{SQS: fq,
		Sender: senderFunc(func(context.Context, *herald.Envelope) (string, error) { sent.Add(1); return "ok", nil })})
	for i := range 5 {
		fq.put(sqsMessage(fmt.Sprint("m", i), envelopeBody(t, fmt.Sprint("e", i)), 1, 1))
	}
	stop := start(t, c)
	waitFor(t, "five sends and deletes", func() bool { return sent.Load() == 5 && len(fq.deletedReceipts()) == 5 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	fq.read(func(f *fakeSQS) {
		if len(f.deleteCalls) != 0 || len(f.singleDels) != 5 {
			t.Errorf("%d DeleteMessageBatch and %d DeleteMessage calls, want 0 and 5", len(f.deleteCalls), len(f.singleDels))
		}
		for _, n := range f.asked {
			if n != 1 {
				t.Errorf("asked SQS for %d messages with ReceiveBatch 1: %v", n, f.asked)
			}
		}
	})
}

func TestReceivesNoMoreThanFreeWorkers(t *testing.T) {
	fq := newFakeSQS()
	cfg := testConfig()
	cfg.Workers = 3
	release := make(chan struct{})
	var inFlight, most atomic.Int32
	sender := senderFunc(func(ctx context.Context, e *herald.Envelope) (string, error) {
		n := inFlight.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		<-release
		inFlight.Add(-1)
		return "ok", nil
	})
	c := newConsumer(t, cfg, Deps{SQS: fq, Sender: sender})
	for i := range 7 {
		fq.put(sqsMessage(fmt.Sprint("m", i), envelopeBody(t, fmt.Sprint("e", i)), 1, 1))
	}
	stop := start(t, c)
	waitFor(t, "three sends in flight", func() bool { return inFlight.Load() == 3 })
	close(release)
	waitFor(t, "all seven deleted", func() bool { return len(fq.deletedReceipts()) == 7 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if most.Load() > 3 {
		t.Errorf("%d sends at once with 3 workers", most.Load())
	}
	fq.read(func(f *fakeSQS) {
		for _, n := range f.asked {
			if n < 1 || n > 3 {
				t.Errorf("asked SQS for %d messages with 3 workers: %v", n, f.asked)
			}
		}
	})
}

func TestTransientFailureBacksOffWithoutDelete(t *testing.T) {
	fq := newFakeSQS()
	throttled := &sestypes.TooManyRequestsException{Message: aws.String("Maximum sending rate exceeded.")}
	metrics := herald.NewMetrics(&strings.Builder{}, "test", "email-sender")
	c := newConsumer(t, testConfig(), Deps{SQS: fq, Metrics: metrics,
		Sender: senderFunc(func(context.Context, *herald.Envelope) (string, error) { return "", throttled })})
	c.rnd = func(n int64) int64 { return n - 1 } // the top of the jitter window
	// SQS says this is the third receive: ceiling 1 s * 2^2 = 4 s.
	fq.put(sqsMessage("m1", envelopeBody(t, "e1"), 3, 1))
	stop := start(t, c)
	waitFor(t, "a visibility change", func() bool { return fq.visibilityChanges() == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	fq.read(func(f *fakeSQS) {
		if got := f.visibility[0]; got != (visChange{"rh-m1-1", 4}) {
			t.Errorf("visibility change %+v, want 4 s on rh-m1-1", got)
		}
		if len(f.deleteCalls) > 0 || len(f.dlq) > 0 {
			t.Errorf("a transient failure was deleted (%v) or dead-lettered (%d)", f.deleteCalls, len(f.dlq))
		}
	})
	tot := metrics.Totals()
	if tot[MetricRetried] != 1 || tot[MetricFailed+"."+string(transport.Throttled)] != 1 {
		t.Errorf("metrics %v, want Retried 1 and Failed.throttled 1", tot)
	}
}

func TestBackoffGrowsWithInProcessAttemptsWhenReceiveCountStaysOne(t *testing.T) {
	// goaws reports ApproximateReceiveCount 1 on every receive.
	fq := newFakeSQS()
	c := newConsumer(t, testConfig(), Deps{SQS: fq,
		Sender: senderFunc(func(context.Context, *herald.Envelope) (string, error) {
			return "", fmt.Errorf("send: %w", context.DeadlineExceeded)
		})})
	c.rnd = func(n int64) int64 { return n - 1 }
	stop := start(t, c)
	for delivery := 1; delivery <= 3; delivery++ {
		fq.put(sqsMessage("m1", envelopeBody(t, "e1"), 1, delivery))
		waitFor(t, "a visibility change", func() bool { return fq.visibilityChanges() == delivery })
	}
	stop()
	var got []int32
	fq.read(func(f *fakeSQS) {
		for _, v := range f.visibility {
			got = append(got, v.seconds)
		}
	})
	if fmt.Sprint(got) != "[1 2 4]" {
		t.Errorf("backoff per attempt %v, want [1 2 4]", got)
	}
}

func TestPermanentFailureIsDeadLetteredThenDeleted(t *testing.T) {
	fq := newFakeSQS()
	rejected := &sestypes.MessageRejected{Message: aws.String("Email address is not verified: sender@example.com")}
	metrics := herald.NewMetrics(&strings.Builder{}, "test", "email-sender")
	c := newConsumer(t, testConfig(), Deps{SQS: fq, Metrics: metrics,
		Sender: senderFunc(func(context.Context, *herald.Envelope) (string, error) { return "", rejected })})
	body := envelopeBody(t, "e1")
	m := sqsMessage("m1", body, 1, 1)
	m.MessageAttributes = map[string]types.MessageAttributeValue{"traceId": {DataType: aws.String("String"), StringValue: aws.String("t-1")}}
	fq.put(m)
	stop := start(t, c)
	waitFor(t, "the delete", func() bool { return len(fq.deletedReceipts()) == 1 })
	stop()
	fq.read(func(f *fakeSQS) {
		if len(f.dlq) != 1 {
			t.Fatalf("%d dead letters, want 1", len(f.dlq))
		}
		d := f.dlq[0]
		if aws.ToString(d.QueueUrl) != testConfig().DeadLetterURL || aws.ToString(d.MessageBody) != body {
			t.Errorf("dead letter to %s with body %q", aws.ToString(d.QueueUrl), aws.ToString(d.MessageBody))
		}
		attr := func(name string) string { return aws.ToString(d.MessageAttributes[name].StringValue) }
		if attr(herald.AttrFailureClass) != "permanent" || attr(herald.AttrSourceMessageID) != "m1" || attr("traceId") != "t-1" {
			t.Errorf("attributes %v", d.MessageAttributes)
		}
		if r := attr(herald.AttrFailureReason); !strings.Contains(r, "MessageRejected") || strings.Contains(r, "@") {
			t.Errorf("reason %q: want MessageRejected and no address", r)
		}
		first, err := time.Parse(herald.TimeFormatMillis, attr(herald.AttrFailureFirstAttempt))
		if attr(herald.AttrFailureAttempts) != "1" || err != nil || time.Since(first) > time.Minute || time.Since(first) < 0 {
			t.Errorf("attempts %q, first attempt %q (%v): want 1 and about now", attr(herald.AttrFailureAttempts), attr(herald.AttrFailureFirstAttempt), err)
		}
		if len(f.visibility) != 0 {
			t.Errorf("visibility changed on a dead-lettered message: %v", f.visibility)
		}
	})
	if got := metrics.Totals()[MetricDeadLettered]; got != 1 {
		t.Errorf("DeadLettered = %v, want 1", got)
	}
}

func TestDeadLetterFailureLeavesTheMessage(t *testing.T) {
	fq := newFakeSQS()
	fq.dlqErr = errBoom
	var sends atomic.Int32
	c := newConsumer(t, testConfig(), Deps{SQS: fq,
		Sender: senderFunc(func(context.Context, *herald.Envelope) (string, error) {
			sends.Add(1)
			return "", &sestypes.BadRequestException{Message: aws.String("bad")}
		})})
	fq.put(sqsMessage("m1", envelopeBody(t, "e1"), 1, 1))
	stop := start(t, c)
	waitFor(t, "the send", func() bool { return sends.Load() == 1 })
	if err := stop(); err != nil { // the drain waits for the DLQ attempt
		t.Fatal(err)
	}
	fq.read(func(f *fakeSQS) {
		if len(f.deleteCalls) != 0 || len(f.visibility) != 0 {
			t.Errorf("deleted %v / visibility %v after a failed dead-letter send; want the message left alone", f.deleteCalls, f.visibility)
		}
	})
}

func TestUnreadableEnvelopeIsDeadLettered(t *testing.T) {
	fq := newFakeSQS()
	var sends atomic.Int32
	c := newConsumer(t, testConfig(), Deps{SQS: fq,
		Sender: senderFunc(func(context.Context, *herald.Envelope) (string, error) { sends.Add(1); return "ok", nil })})
	fq.put(sqsMessage("bad", `{"v":1,"id":"x","to":["not an address"]}`, 1, 1), sqsMessage("worse", "not json", 1, 1))
	stop := start(t, c)
	waitFor(t, "both deleted", func() bool { return len(fq.deletedReceipts()) == 2 })
	stop()
	if sends.Load() != 0 {
		t.Errorf("%d unreadable messages were sent", sends.Load())
	}
	fq.read(func(f *fakeSQS) {
		if len(f.dlq) != 2 {
			t.Fatalf("%d dead letters, want 2", len(f.dlq))
		}
		for _, d := range f.dlq {
			if got := aws.ToString(d.MessageAttributes[herald.AttrFailureClass].StringValue); got != "unreadable" {
				t.Errorf("class %q, want unreadable", got)
			}
		}
	})
}

func TestHeartbeatExtendsASlowSend(t *testing.T) {
	fq := newFakeSQS()
	cfg := testConfig()
	cfg.Visibility = 2 * time.Second // heartbeat after 1 s
	extended := make(chan struct{})
	var once sync.Once
	fq.onVisibility = func(v visChange) {
		if v.receipt == "rh-m1-1" && v.seconds == 2 {
			once.Do(func() { close(extended) })
		}
	}
	c := newConsumer(t, cfg, Deps{SQS: fq,
		Sender: senderFunc(func(ctx context.Context, e *herald.Envelope) (string, error) {
			select { // a send that lasts until its message was extended
			case <-extended:
				return "ok", nil
			case <-ctx.Done():
				return "", ctx.Err()
			}
		})})
	fq.put(sqsMessage("m1", envelopeBody(t, "e1"), 1, 1))
	stop := start(t, c)
	waitFor(t, "the delete after the extension", func() bool { return len(fq.deletedReceipts()) == 1 })
	stop()
	fq.read(func(f *fakeSQS) {
		for _, v := range f.visibility {
			if v != (visChange{"rh-m1-1", 2}) {
				t.Errorf("unexpected visibility change %+v", v)
			}
		}
	})
}

// gateLimiter lets the first Wait through and holds the others until ctx ends.
type gateLimiter struct {
	calls   atomic.Int32
	waiting atomic.Int32
}

func (g *gateLimiter) Wait(ctx context.Context) error {
	if g.calls.Add(1) == 1 {
		return nil
	}
	g.waiting.Add(1)
	<-ctx.Done()
	return ctx.Err()
}

func TestShutdownReleasesUnstartedAndFinishesInFlight(t *testing.T) {
	for _, batchFails := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch call fails=%v", batchFails), func(t *testing.T) {
			fq := newFakeSQS()
			if batchFails {
				fq.batchVisErr = errBoom // as on goaws, which lacks the batch call
			}
			started, finish := make(chan struct{}), make(chan struct{})
			lim := &gateLimiter{}
			var sentReceipt string // written before started is closed
			c := newConsumer(t, testConfig(), Deps{SQS: fq, Limiter: lim,
				Sender: senderFunc(func(ctx context.Context, e *herald.Envelope) (string, error) {
					sentReceipt = "rh-m" + strings.TrimPrefix(e.ID, "e") + "-1"
					close(started) // only one send may ever start
					select {
					case <-finish:
						return "ok", nil
					case <-ctx.Done():
						return "", ctx.Err()
					}
				})})
			fq.put(sqsMessage("m1", envelopeBody(t, "e1"), 1, 1), sqsMessage("m2", envelopeBody(t, "e2"), 1, 1), sqsMessage("m3", envelopeBody(t, "e3"), 1, 1))
			stop := start(t, c)
			<-started
			waitFor(t, "two messages waiting for the limiter", func() bool { return lim.waiting.Load() == 2 })

			stopped := make(chan error, 1)
			go func() { stopped <- stop() }()
			// The two unstarted messages are released while the third is
			// still being sent.
			waitFor(t, "two releases", func() bool {
				released := map[string]bool{}
				fq.read(func(f *fakeSQS) {
					for _, b := range f.batchVis {
						for _, v := range b {
							if v.seconds == 0 {
								released[v.receipt] = true
							}
						}
					}
					for _, v := range f.visibility {
						if v.seconds == 0 {
							released[v.receipt] = true
						}
					}
				})
				return len(released) == 2 && !released[sentReceipt]
			})
			if n := len(fq.deletedReceipts()); n != 0 {
				t.Fatalf("%d deletes before the send in flight finished", n)
			}
			close(finish)
			if err := <-stopped; err != nil {
				t.Fatal(err)
			}
			if got := fq.deletedReceipts(); len(got) != 1 || got[0] != sentReceipt {
				t.Errorf("deleted %v, want the finished message %s", got, sentReceipt)
			}
		})
	}
}

// countingLimiter hands out permits; every send must have had one.
type countingLimiter struct {
	permits chan struct{}
	granted atomic.Int32
}

func (l *countingLimiter) Wait(ctx context.Context) error {
	select {
	case <-l.permits:
		l.granted.Add(1)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestRateLimiterGatesEverySend(t *testing.T) {
	fq := newFakeSQS()
	lim := &countingLimiter{permits: make(chan struct{}, 10)}
	var sends atomic.Int32
	var overrun atomic.Bool
	c := newConsumer(t, testConfig(), Deps{SQS: fq, Limiter: lim,
		Sender: senderFunc(func(context.Context, *herald.Envelope) (string, error) {
			if sends.Add(1) > lim.granted.Load() {
				overrun.Store(true)
			}
			return "ok", nil
		})})
	for i := range 4 {
		fq.put(sqsMessage(fmt.Sprint("m", i), envelopeBody(t, fmt.Sprint("e", i)), 1, 1))
	}
	stop := start(t, c)
	lim.permits <- struct{}{}
	lim.permits <- struct{}{}
	waitFor(t, "two sends", func() bool { return sends.Load() == 2 })
	for range 2 {
		lim.permits <- struct{}{}
	}
	waitFor(t, "four deletes", func() bool { return len(fq.deletedReceipts()) == 4 })
	stop()
	if overrun.Load() {
		t.Error("a send started without a permit from the limiter")
	}
}

func TestReceiveErrorsAreRetried(t *testing.T) {
	fq := newFakeSQS()
	fq.receiveErrs = []error{errBoom, errBoom}
	c := newConsumer(t, testConfig(), Deps{SQS: fq, Sender: okSender()})
	c.rnd = func(int64) int64 { return 0 }
	fq.put(sqsMessage("m1", envelopeBody(t, "e1"), 1, 1))
	stop := start(t, c)
	waitFor(t, "the delete after two failed receives", func() bool { return len(fq.deletedReceipts()) == 1 })
	stop()
}

func TestAccountFailurePausesReceiving(t *testing.T) {
	fq := newFakeSQS()
	cfg := testConfig()
	cfg.RetryBase = time.Hour
	cfg.RetryMax = time.Hour
	var sends atomic.Int32
	c := newConsumer(t, cfg, Deps{SQS: fq,
		Sender: senderFunc(func(context.Context, *herald.Envelope) (string, error) {
			sends.Add(1)
			return "", &sestypes.SendingPausedException{}
		})})
	fq.put(sqsMessage("m1", envelopeBody(t, "e1"), 1, 1))
	stop := start(t, c)
	waitFor(t, "the retry", func() bool { return fq.visibilityChanges() == 1 })
	if until := time.Unix(0, c.pausedUntil.Load()); time.Until(until) < 50*time.Minute {
		t.Errorf("receiving paused until %v, want about an hour from now", until)
	}
	stop()
	if sends.Load() != 1 {
		t.Errorf("%d sends", sends.Load())
	}
}

func TestLastProgressMovesWithPolls(t *testing.T) {
	fq := newFakeSQS()
	c := newConsumer(t, testConfig(), Deps{SQS: fq, Sender: okSender()})
	before := c.LastProgress()
	fq.put(sqsMessage("m1", envelopeBody(t, "e1"), 1, 1))
	stop := start(t, c)
	waitFor(t, "progress", func() bool { return c.LastProgress().After(before) })
	stop()
}
