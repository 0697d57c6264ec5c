package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sestypes "github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"herald/services/contract"
	"herald/services/email-sender/transport"
	"herald/services/internal/herald"
	"herald/services/internal/herald/heraldtest"
)

func TestSuccessesAreDeletedInBatchesOfTen(t *testing.T) {
	fq := newFakeSQS()
	cfg := testConfig()
	cfg.Workers = 32
	// A linger longer than the test: batches go out only when full, or at
	// shutdown, which makes their sizes exact.
	cfg.BatchLinger = time.Hour
	metrics := herald.NewMetrics(&strings.Builder{}, "test", contract.Sender)
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
	if got := metrics.Totals()[contract.Sent.Name]; got != 25 {
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

// withBudget is a copy of message id that carries attempts failed attempts,
// the first at first.
func withBudget(t *testing.T, id string, attempts int, first time.Time) types.Message {
	t.Helper()
	m := sqsMessage(id, envelopeBody(t, "e-"+id), 1, 1)
	m.MessageAttributes = map[string]types.MessageAttributeValue{
		herald.AttrRetryAttempts:     stringAttr(strconv.Itoa(attempts)),
		herald.AttrRetryFirstAttempt: stringAttr(first.UTC().Format(herald.TimeFormatMillis)),
	}
	return m
}

func TestTransientFailureIsRequeuedAsACopyWithItsAccounting(t *testing.T) {
	fq := newFakeSQS()
	metrics := herald.NewMetrics(&strings.Builder{}, "test", contract.Sender)
	c := newConsumer(t, testConfig(), Deps{SQS: fq, Metrics: metrics,
		Sender: senderFunc(func(context.Context, *herald.Envelope) (string, error) {
			return "", fmt.Errorf("send: %w", context.DeadlineExceeded)
		})})
	c.rnd = func(n int64) int64 { return n - 1 } // the top of the jitter window
	// Given a copy that carries two failed attempts, the first ten minutes ago.
	first := time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Millisecond)
	body := envelopeBody(t, "e1")
	m := sqsMessage("m1", body, 1, 1)
	m.MessageAttributes = map[string]types.MessageAttributeValue{
		herald.AttrRetryAttempts:     stringAttr("2"),
		herald.AttrRetryFirstAttempt: stringAttr(first.Format(herald.TimeFormatMillis)),
		herald.AttrRetryLastError:    stringAttr("throttled: before"),
		"traceId":                    stringAttr("t-1"),
	}
	cfg := testConfig()
	fq.put(m)
	stop := start(t, c)
	waitFor(t, "the copy and the delete", func() bool { return fq.copyCount() == 1 && len(fq.deletedReceipts()) == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	fq.read(func(f *fakeSQS) {
		cp := f.copies[0]
		// Then: the third attempt's backoff ceiling is 1 s * 2^2 = 4 s.
		if aws.ToString(cp.QueueUrl) != cfg.QueueURL || aws.ToString(cp.MessageBody) != body || cp.DelaySeconds != 4 {
			t.Errorf("copy to %s, delay %d s, body %q; want the queue, 4 s, the original body", aws.ToString(cp.QueueUrl), cp.DelaySeconds, aws.ToString(cp.MessageBody))
		}
		a := cp.MessageAttributes
		if attr(a, herald.AttrRetryAttempts) != "3" || attr(a, herald.AttrRetryFirstAttempt) != first.Format(herald.TimeFormatMillis) ||
			attr(a, herald.AttrRetryLastError) != "transient: timeout" || attr(a, "traceId") != "t-1" {
			t.Errorf("copy attributes %v", a)
		}
		if len(f.visibility) > 0 || len(f.dlq) > 0 {
			t.Errorf("visibility changes %v, dead letters %d; want neither", f.visibility, len(f.dlq))
		}
	})
	if got := fq.deletedReceipts(); fmt.Sprint(got) != "[rh-m1-1]" {
		t.Errorf("deleted %v, want the original", got)
	}
	tot := metrics.Totals()
	if tot[contract.Retried.Name] != 1 || tot[contract.Failed.Name+"."+string(transport.Transient)] != 1 {
		t.Errorf("metrics %v, want Retried 1 and Failed.transient 1", tot)
	}
}

func TestBackoffGrowsWithTheAttemptsTheCopiesCarry(t *testing.T) {
	// Each copy is a new message (receive count 1): the attempts it carries
	// drive the backoff, not SQS's receive count.
	fq := newFakeSQS()
	fq.requeueCopies = true
	var sends atomic.Int32
	c := newConsumer(t, testConfig(), Deps{SQS: fq, Sender: failingSender(&sends, fmt.Errorf("send: %w", context.DeadlineExceeded))})
	c.rnd = func(n int64) int64 { return n - 1 }
	fq.put(sqsMessage("m1", envelopeBody(t, "e1"), 1, 1))
	stop := start(t, c)
	waitFor(t, "three copies", func() bool { return fq.copyCount() >= 3 })
	stop()
	var delays, attempts []string
	fq.read(func(f *fakeSQS) {
		for _, cp := range f.copies[:3] {
			delays = append(delays, fmt.Sprint(cp.DelaySeconds))
			attempts = append(attempts, attr(cp.MessageAttributes, herald.AttrRetryAttempts))
		}
		if attr(f.copies[0].MessageAttributes, herald.AttrRetryFirstAttempt) != attr(f.copies[2].MessageAttributes, herald.AttrRetryFirstAttempt) {
			t.Error("the first attempt's time changed between copies")
		}
	})
	if fmt.Sprint(delays) != "[1 2 4]" || fmt.Sprint(attempts) != "[1 2 3]" {
		t.Errorf("delays %v and attempts %v per copy, want [1 2 4] and [1 2 3]", delays, attempts)
	}
}

func TestCopyFailureFallsBackToVisibility(t *testing.T) {
	fq := newFakeSQS()
	fq.copyErr = errBoom
	c := newConsumer(t, testConfig(), Deps{SQS: fq,
		Sender: senderFunc(func(context.Context, *herald.Envelope) (string, error) {
			return "", fmt.Errorf("send: %w", context.DeadlineExceeded)
		})})
	c.rnd = func(n int64) int64 { return n - 1 }
	fq.put(sqsMessage("m1", envelopeBody(t, "e1"), 1, 1))
	stop := start(t, c)
	waitFor(t, "a visibility change", func() bool { return fq.visibilityChanges() == 1 })
	stop()
	fq.read(func(f *fakeSQS) {
		if got := f.visibility[0]; got != (visChange{"rh-m1-1", 1}) {
			t.Errorf("visibility change %+v, want the backoff (1 s) on the original", got)
		}
		if len(f.deleteCalls)+len(f.singleDels) > 0 {
			t.Errorf("the original was deleted although no copy exists")
		}
	})
}

// recordingLimiter admits at once and records the feedback.
type recordingLimiter struct {
	waits, throttled, succeeded atomic.Int32
}

func (l *recordingLimiter) Wait(context.Context) error { l.waits.Add(1); return nil }
func (l *recordingLimiter) Throttled(time.Time)        { l.throttled.Add(1) }
func (l *recordingLimiter) Succeeded(time.Time)        { l.succeeded.Add(1) }

func TestThrottledSendIsRetriedInProcess(t *testing.T) {
	fq := newFakeSQS()
	lim := &recordingLimiter{}
	throttled := &sestypes.TooManyRequestsException{Message: aws.String("Maximum sending rate exceeded.")}
	metrics := herald.NewMetrics(&strings.Builder{}, "test", contract.Sender)
	var sends atomic.Int32
	c := newConsumer(t, testConfig(), Deps{SQS: fq, Limiter: lim, Metrics: metrics,
		Sender: senderFunc(func(context.Context, *herald.Envelope) (string, error) {
			if sends.Add(1) <= 2 {
				return "", throttled
			}
			return "ok", nil
		})})
	fq.put(sqsMessage("m1", envelopeBody(t, "e1"), 1, 1))
	stop := start(t, c)
	waitFor(t, "the delete", func() bool { return len(fq.deletedReceipts()) == 1 })
	stop()
	// Then: three sends, each after its own permit; the limiter heard both
	// throttles and the success; the message never left the process.
	if sends.Load() != 3 || lim.waits.Load() != 3 || lim.throttled.Load() != 2 || lim.succeeded.Load() != 1 {
		t.Errorf("sends %d, waits %d, throttled %d, succeeded %d; want 3, 3, 2, 1", sends.Load(), lim.waits.Load(), lim.throttled.Load(), lim.succeeded.Load())
	}
	if fq.copyCount() != 0 || fq.deadLetters() != 0 || fq.visibilityChanges() != 0 {
		t.Errorf("copies %d, dead letters %d, visibility changes %d; want none", fq.copyCount(), fq.deadLetters(), fq.visibilityChanges())
	}
	tot := metrics.Totals()
	if tot[contract.Throttled.Name] != 2 || tot[contract.Failed.Name] != 0 || tot[contract.Sent.Name] != 1 {
		t.Errorf("metrics %v, want Throttled 2, Failed 0, Sent 1", tot)
	}
}

func TestPermanentFailureIsDeadLetteredThenDeleted(t *testing.T) {
	fq := newFakeSQS()
	rejected := &sestypes.MessageRejected{Message: aws.String("Email address is not verified: sender@example.com")}
	metrics := herald.NewMetrics(&strings.Builder{}, "test", contract.Sender)
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
	if got := metrics.Totals()[contract.DeadLettered.Name]; got != 1 {
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

func (g *gateLimiter) Throttled(time.Time) {}
func (g *gateLimiter) Succeeded(time.Time) {}

func (g *gateLimiter) Wait(ctx context.Context) error {
	if g.calls.Add(1) == 1 {
		return nil
	}
	g.waiting.Add(1)
	<-ctx.Done()
	return ctx.Err()
}

func TestShutdownReleasesUnstartedAndFinishesInFlight(t *testing.T) {
	fq := newFakeSQS()
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
}

// TestFailedReleaseLeavesTheMessages: when ChangeMessageVisibilityBatch
// fails, the messages come back after their visibility timeout; there is no
// second path (SQS has the batch call; so has the local emulator).
func TestFailedReleaseLeavesTheMessages(t *testing.T) {
	fq := newFakeSQS()
	fq.batchVisErr = errBoom
	logs := &heraldtest.Buffer{}
	c := newConsumer(t, testConfig(), Deps{SQS: fq, Sender: okSender(), Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	c.flushReleases(context.Background(), []entry{{messageID: "m1", receipt: "rh-m1-1"}, {messageID: "m2", receipt: "rh-m2-1"}})
	fq.read(func(f *fakeSQS) {
		if len(f.visibility) != 0 || len(f.batchVis) != 0 {
			t.Errorf("visibility changed %v %v", f.visibility, f.batchVis)
		}
	})
	if n := strings.Count(logs.String(), "release failed"); n != 1 {
		t.Errorf("%d release failures logged, want 1 for the batch:\n%s", n, logs.String())
	}
}

// countingLimiter hands out permits; every send must have had one.
type countingLimiter struct {
	permits chan struct{}
	granted atomic.Int32
}

func (l *countingLimiter) Throttled(time.Time) {}
func (l *countingLimiter) Succeeded(time.Time) {}

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

func TestAccountFailurePausesSendingUntilAProbeGoesThrough(t *testing.T) {
	fq := newFakeSQS()
	logs := &heraldtest.Buffer{}
	var healthy atomic.Bool
	var order []string
	var mu sync.Mutex
	c := newConsumer(t, testConfig(), Deps{SQS: fq, Logger: slog.New(slog.NewJSONHandler(logs, nil)),
		Sender: senderFunc(func(_ context.Context, e *herald.Envelope) (string, error) {
			mu.Lock()
			order = append(order, e.ID)
			mu.Unlock()
			if !healthy.Load() {
				return "", &sestypes.SendingPausedException{Message: aws.String("sending paused")}
			}
			return "ok", nil
		})})
	fq.put(sqsMessage("m1", envelopeBody(t, "e1"), 1, 1))
	stop := start(t, c)
	// When: one account-level failure.
	waitFor(t, "the breaker to open", c.breaker.isOpen)
	// Then: a message queued now is not received while sending is paused.
	fq.put(sqsMessage("m2", envelopeBody(t, "e2"), 1, 1))
	waitFor(t, "a failed probe", func() bool { mu.Lock(); defer mu.Unlock(); return len(order) >= 2 })
	healthy.Store(true)
	waitFor(t, "both deleted", func() bool { return len(fq.deletedReceipts()) == 2 })
	stop()
	mu.Lock()
	defer mu.Unlock()
	if len(order) < 3 || order[0] != "e1" || order[1] != "e1" || order[len(order)-1] != "e2" {
		t.Errorf("send order %v, want e1 failing, e1 probing, then e2 after e1 went through", order)
	}
	if fq.copyCount() != 0 || fq.deadLetters() != 0 {
		t.Errorf("copies %d, dead letters %d: a held message went back to the queue", fq.copyCount(), fq.deadLetters())
	}
	if p, r := strings.Count(logs.String(), `"msg":"sending paused`), strings.Count(logs.String(), `"msg":"sending resumed`); p != 1 || r != 1 {
		t.Errorf("logged %d pauses and %d resumptions, want one each", p, r)
	}
}

func TestBreakerOpensOnConsecutiveFailuresAndProbesOneAtATime(t *testing.T) {
	fq := newFakeSQS()
	cfg := testConfig()
	cfg.Workers = 16
	metrics := herald.NewMetrics(&strings.Builder{}, "test", contract.Sender)
	var healthy atomic.Bool
	var inFlight, mostWhileOpen, probes atomic.Int32
	var c *Consumer
	c = newConsumer(t, cfg, Deps{SQS: fq, Metrics: metrics,
		Sender: senderFunc(func(context.Context, *herald.Envelope) (string, error) {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			if c.breaker.isOpen() {
				probes.Add(1)
				for {
					m := mostWhileOpen.Load()
					if n <= m || mostWhileOpen.CompareAndSwap(m, n) {
						break
					}
				}
			}
			if !healthy.Load() {
				time.Sleep(10 * time.Millisecond) // a failing call takes a moment
				return "", fmt.Errorf("send: %w", context.DeadlineExceeded)
			}
			return "ok", nil
		})})
	c.breaker.probeMin, c.breaker.probeMax = 50*time.Millisecond, 100*time.Millisecond
	for i := range 12 {
		fq.put(sqsMessage(fmt.Sprint("m", i), envelopeBody(t, fmt.Sprint("e", i)), 1, 1))
	}
	stop := start(t, c)
	waitFor(t, "the breaker to open", c.breaker.isOpen)
	waitFor(t, "three probes", func() bool { return probes.Load() >= 3 })
	healthy.Store(true)
	waitFor(t, "every message sent or re-queued", func() bool { return len(fq.deletedReceipts()) == 12 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if mostWhileOpen.Load() != 1 {
		t.Errorf("%d sends at once while open, want one probe at a time", mostWhileOpen.Load())
	}
	// Failures before the breaker opened went back as copies; no more than
	// the failures it takes to open, plus the sends already on their way.
	copies := fq.copyCount()
	if copies < 1 || copies > 16 || fq.deadLetters() != 0 {
		t.Errorf("%d copies, %d dead letters", copies, fq.deadLetters())
	}
	if sent := metrics.Totals()[contract.Sent.Name]; int(sent)+copies != 12 {
		t.Errorf("sent %g + re-queued %d != 12", sent, copies)
	}
}

func TestExpiredWindowIsDeadLetteredWithTheReason(t *testing.T) {
	fq := newFakeSQS()
	var sends atomic.Int32
	c := newConsumer(t, testConfig(), Deps{SQS: fq, Sender: failingSender(&sends, fmt.Errorf("send: %w", context.DeadlineExceeded))})
	// Given a copy whose first attempt was two hours ago, with a one-hour window.
	first := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Millisecond)
	fq.put(withBudget(t, "m1", 6, first))
	stop := start(t, c)
	waitFor(t, "the dead letter", func() bool { return fq.deadLetters() == 1 && len(fq.deletedReceipts()) == 1 })
	stop()
	// Then: it was still tried once (the provider may be back), and its
	// dead letter says why and since when.
	if sends.Load() != 1 || fq.copyCount() != 0 {
		t.Errorf("%d sends, %d copies; want one last attempt and no copy", sends.Load(), fq.copyCount())
	}
	fq.read(func(f *fakeSQS) {
		a := f.dlq[0].MessageAttributes
		reason := attr(a, herald.AttrFailureReason)
		if attr(a, herald.AttrFailureClass) != "expired" || !strings.Contains(reason, "7 attempts") ||
			!strings.Contains(reason, first.Format(herald.TimeFormatMillis)) || !strings.Contains(reason, "transient: timeout") {
			t.Errorf("class %q, reason %q", attr(a, herald.AttrFailureClass), reason)
		}
		if attr(a, herald.AttrFailureAttempts) != "7" || attr(a, herald.AttrFailureFirstAttempt) != first.Format(herald.TimeFormatMillis) || attr(a, herald.AttrSourceMessageID) != "m1" {
			t.Errorf("dead letter attributes %v", a)
		}
	})
}

func TestHeldMessageExpiresWhileSendingIsPaused(t *testing.T) {
	fq := newFakeSQS()
	var sends atomic.Int32
	c := newConsumer(t, testConfig(), Deps{SQS: fq, Sender: failingSender(&sends, &sestypes.SendingPausedException{})})
	c.breaker.probeMin, c.breaker.probeMax = time.Hour, time.Hour // no probe in this test
	// Given a message whose one-hour window ends in a second.
	fq.put(withBudget(t, "m1", 1, time.Now().Add(-time.Hour+time.Second)))
	stop := start(t, c)
	waitFor(t, "the dead letter", func() bool { return fq.deadLetters() == 1 })
	stop()
	fq.read(func(f *fakeSQS) {
		if got := attr(f.dlq[0].MessageAttributes, herald.AttrFailureClass); got != "expired" {
			t.Errorf("class %q, want expired", got)
		}
	})
	if sends.Load() != 1 {
		t.Errorf("%d sends while paused, want only the one that paused sending", sends.Load())
	}
}

func TestHeldTooLongGoesBackToTheQueue(t *testing.T) {
	fq := newFakeSQS()
	cfg := testConfig()
	cfg.RetryBase, cfg.RetryMax = time.Second, time.Second
	c := newConsumer(t, cfg, Deps{SQS: fq,
		Sender: senderFunc(func(context.Context, *herald.Envelope) (string, error) {
			return "", &sestypes.SendingPausedException{}
		})})
	c.breaker.probeMin, c.breaker.probeMax = time.Hour, time.Hour
	fq.put(sqsMessage("m1", envelopeBody(t, "e1"), 1, 1))
	stop := start(t, c)
	// A worker holds it at most RetryMax (1 s), then the queue keeps it.
	waitFor(t, "the copy", func() bool { return fq.copyCount() == 1 && len(fq.deletedReceipts()) == 1 })
	stop()
	fq.read(func(f *fakeSQS) {
		if got := attr(f.copies[0].MessageAttributes, herald.AttrRetryAttempts); got != "1" {
			t.Errorf("copy carries %q attempts, want 1", got)
		}
	})
}

func TestShutdownRequeuesHeldMessagesWithTheirAccounting(t *testing.T) {
	fq := newFakeSQS()
	c := newConsumer(t, testConfig(), Deps{SQS: fq,
		Sender: senderFunc(func(context.Context, *herald.Envelope) (string, error) {
			return "", &sestypes.SendingPausedException{}
		})})
	c.breaker.probeMin, c.breaker.probeMax = time.Hour, time.Hour
	fq.put(sqsMessage("m1", envelopeBody(t, "e1"), 1, 1))
	stop := start(t, c)
	waitFor(t, "the breaker to open", c.breaker.isOpen)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if fq.copyCount() != 1 || len(fq.deletedReceipts()) != 1 {
		t.Fatalf("%d copies, %d deletes; want the held message re-queued", fq.copyCount(), len(fq.deletedReceipts()))
	}
	fq.read(func(f *fakeSQS) {
		a := f.copies[0].MessageAttributes
		if attr(a, herald.AttrRetryAttempts) != "1" || !strings.HasPrefix(attr(a, herald.AttrRetryLastError), "account: ") {
			t.Errorf("copy attributes %v", a)
		}
	})
}

func TestCopiesKeepTheOriginalsAttributesWithinTen(t *testing.T) {
	m := &message{Message: types.Message{MessageAttributes: map[string]types.MessageAttributeValue{}}, id: "m1"}
	for i := range 12 {
		m.MessageAttributes[fmt.Sprintf("a%02d", i)] = stringAttr("v")
	}
	m.MessageAttributes[herald.AttrRetryAttempts] = stringAttr("9") // stale: replaced
	m.MessageAttributes[herald.AttrFailureClass] = stringAttr("x")  // never copied
	m.retry.failed(time.Now(), transport.Failure{Class: transport.Transient, Reason: "ses status 503"})
	got := copyAttributes(m)
	if len(got) != maxAttributes || attr(got, herald.AttrRetryAttempts) != "1" || attr(got, "a00") != "v" || attr(got, "a06") != "v" || attr(got, "a07") != "" {
		t.Errorf("copy attributes %v", got)
	}
	if _, ok := got[herald.AttrFailureClass]; ok {
		t.Error("a failure attribute was copied")
	}
	dead := deadLetterAttributes(m, transport.Failure{Class: transport.Permanent, Reason: "no"})
	// A permanent failure after one transient one: two attempts.
	if len(dead) != maxAttributes || attr(dead, herald.AttrFailureClass) != "permanent" || attr(dead, herald.AttrFailureAttempts) != "2" ||
		attr(dead, herald.AttrRetryAttempts) != "" || attr(dead, "a04") != "v" {
		t.Errorf("dead letter attributes %v", dead)
	}
}

func TestRetryStateRejectsMalformedAttributes(t *testing.T) {
	for _, attrs := range []map[string]types.MessageAttributeValue{
		{herald.AttrRetryAttempts: stringAttr("many")},
		{herald.AttrRetryAttempts: stringAttr("-1")},
		{herald.AttrRetryFirstAttempt: stringAttr("yesterday")},
	} {
		if _, err := readRetryState(attrs); err == nil {
			t.Errorf("%v read without an error", attrs)
		}
	}
	s, err := readRetryState(nil)
	if err != nil || s.attempts != 0 || !s.first.IsZero() || s.expired(time.Now(), time.Nanosecond) {
		t.Errorf("no attributes: %+v, %v; want a fresh budget that has not started", s, err)
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

// TestSenderNotAllowedIsDeadLettered: a message put on the queue around
// the API, from a sender the allow-list does not hold, is never sent: it is
// dead-lettered as permanent, with a reason that names the rule. The
// allow-list compares the domain ignoring case.
func TestSenderNotAllowedIsDeadLettered(t *testing.T) {
	fq := newFakeSQS()
	var sent []string
	var mu sync.Mutex
	c := newConsumer(t, testConfig(), Deps{SQS: fq, Sender: senderFunc(func(_ context.Context, e *herald.Envelope) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		sent = append(sent, e.From)
		return "ok", nil
	})})
	for i, from := range []string{"ceo@bank.test", "Alice <alice@EXAMPLE.com>", "Herald <noreply@herald.test>", "other@herald.test"} {
		e := herald.Envelope{ID: fmt.Sprint("e", i), CreatedAt: time.Now(), From: from, To: []string{"bob@example.com"}, Subject: "Hi", Text: "x"}
		b, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		fq.put(sqsMessage(fmt.Sprint("m", i), string(b), 1, 1))
	}
	stop := start(t, c)
	waitFor(t, "four deletes", func() bool { return len(fq.deletedReceipts()) == 4 })
	stop()
	mu.Lock()
	slices.Sort(sent)
	if !slices.Equal(sent, []string{"Alice <alice@EXAMPLE.com>", "Herald <noreply@herald.test>"}) {
		t.Errorf("sent from %v", sent)
	}
	mu.Unlock()
	fq.read(func(f *fakeSQS) {
		if len(f.dlq) != 2 {
			t.Fatalf("%d dead letters, want 2", len(f.dlq))
		}
		for _, d := range f.dlq {
			class, reason := attr(d.MessageAttributes, herald.AttrFailureClass), attr(d.MessageAttributes, herald.AttrFailureReason)
			if class != "permanent" || !strings.Contains(reason, "not allowed") || !strings.Contains(reason, "HERALD_ALLOWED_FROM") ||
				strings.Contains(reason, "ceo@") || strings.Contains(reason, "other@") {
				t.Errorf("class %q, reason %q: want permanent, the rule named, the address masked", class, reason)
			}
		}
	})
}

// TestConfigRefusesZeros: the consumer has no defaults of its own; a zero
// is refused, naming what is missing. Regression: a wait time of 0 was
// replaced by 20 s here, silently.
func TestConfigRefusesZeros(t *testing.T) {
	for name, c := range map[string]struct {
		change func(*Config)
		want   string
	}{
		"wait time 0":        {func(c *Config) { c.WaitTime = 0 }, "wait time 0s must be 1 to 20 whole seconds"},
		"wait time 1.5 s":    {func(c *Config) { c.WaitTime = 1500 * time.Millisecond }, "wait time"},
		"no workers":         {func(c *Config) { c.Workers = 0 }, "workers 0"},
		"no pollers":         {func(c *Config) { c.Pollers = 0 }, "pollers 0"},
		"no visibility":      {func(c *Config) { c.Visibility = 0 }, "visibility timeout"},
		"no send timeout":    {func(c *Config) { c.SendTimeout = 0 }, "send timeout 0s"},
		"no linger":          {func(c *Config) { c.BatchLinger = 0 }, "batch linger 0s"},
		"no retry window":    {func(c *Config) { c.RetryWindow = 0 }, "retry window 0s"},
		"no retry base":      {func(c *Config) { c.RetryBase = 0 }, "retry base 0s"},
		"no receive batch":   {func(c *Config) { c.ReceiveBatch = 0 }, "receive batch 0"},
		"delete batch 11":    {func(c *Config) { c.DeleteBatch = 11 }, "delete batch 11"},
		"no allowed senders": {func(c *Config) { c.AllowedFrom = contract.AllowList{} }, "allowed senders"},
		"no queue":           {func(c *Config) { c.QueueURL = "" }, "URLs are required"},
	} {
		cfg := testConfig()
		c.change(&cfg)
		_, err := New(cfg, Deps{SQS: newFakeSQS(), Sender: okSender()})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, c.want)
		}
	}
	if _, err := New(testConfig(), Deps{SQS: newFakeSQS(), Sender: okSender()}); err != nil {
		t.Errorf("the test configuration: %v", err)
	}
}
