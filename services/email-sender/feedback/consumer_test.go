package feedback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"herald/services/internal/herald"
)

// fakeSQS hands out the batches a test queues, then long-polls until the
// context ends; it records what the consumer does with each message.
type fakeSQS struct {
	batches chan []types.Message
	failDLQ bool

	mu         sync.Mutex
	receives   []time.Time
	receiveErr []error // answered in turn, before the batches
	deleted    []string
	dead       []*sqs.SendMessageInput
	visibility map[string]int32
}

func newFakeSQS(batches ...[]types.Message) *fakeSQS {
	f := &fakeSQS{batches: make(chan []types.Message, len(batches)), visibility: map[string]int32{}}
	for _, b := range batches {
		f.batches <- b
	}
	return f
}

func (f *fakeSQS) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	f.mu.Lock()
	f.receives = append(f.receives, time.Now())
	if len(f.receiveErr) > 0 {
		err := f.receiveErr[0]
		f.receiveErr = f.receiveErr[1:]
		f.mu.Unlock()
		return nil, err
	}
	f.mu.Unlock()
	if in.MaxNumberOfMessages != 10 || in.WaitTimeSeconds != 1 || in.VisibilityTimeout != 30 {
		return nil, fmt.Errorf("receive of %d, wait %d, visibility %d", in.MaxNumberOfMessages, in.WaitTimeSeconds, in.VisibilityTimeout)
	}
	select {
	case b := <-f.batches:
		return &sqs.ReceiveMessageOutput{Messages: b}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (f *fakeSQS) DeleteMessageBatch(_ context.Context, in *sqs.DeleteMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range in.Entries {
		f.deleted = append(f.deleted, aws.ToString(e.ReceiptHandle))
	}
	return &sqs.DeleteMessageBatchOutput{}, nil
}

func (f *fakeSQS) ChangeMessageVisibility(_ context.Context, in *sqs.ChangeMessageVisibilityInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.visibility[aws.ToString(in.ReceiptHandle)] = in.VisibilityTimeout
	return &sqs.ChangeMessageVisibilityOutput{}, nil
}

func (f *fakeSQS) SendMessage(_ context.Context, in *sqs.SendMessageInput, _ ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failDLQ {
		return nil, errors.New("DLQ unreachable")
	}
	f.dead = append(f.dead, in)
	return &sqs.SendMessageOutput{MessageId: aws.String("dlq-1")}, nil
}

// settled is how many messages were deleted or made visible later.
func (f *fakeSQS) settled() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.deleted) + len(f.visibility)
}

// handlerFunc answers by the message body: "ok", "bad", "down" (the store
// unavailable) or "slow".
type handlerFunc func(ctx context.Context, body []byte) (Result, error)

func (h handlerFunc) Process(ctx context.Context, body []byte) (Result, error) { return h(ctx, body) }

var byBody = handlerFunc(func(ctx context.Context, body []byte) (Result, error) {
	switch string(body) {
	case "ok":
		return Result{}, nil
	case "bad":
		return Result{}, &Malformed{Kind: KindUntagged, Reason: "no tag"}
	case "down":
		return Result{}, fmt.Errorf("feedback: %w", context.DeadlineExceeded)
	}
	return Result{}, fmt.Errorf("unexpected body %q", body)
})

func msg(handle, body string, receives int) types.Message {
	return types.Message{MessageId: aws.String("m-" + handle), ReceiptHandle: aws.String(handle), Body: aws.String(body),
		Attributes: map[string]string{"ApproximateReceiveCount": fmt.Sprint(receives)}}
}

func testConsumerConfig() ConsumerConfig {
	return ConsumerConfig{QueueURL: "q", DeadLetterURL: "dlq", Pollers: 1, WaitTime: time.Second, Visibility: 30 * time.Second,
		ProcessTimeout: time.Second, RetryBase: 100 * time.Millisecond, RetryMax: 800 * time.Millisecond}
}

// run runs a consumer until until() holds (or 10 s pass), then stops it.
func run(t *testing.T, c *Consumer, until func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !until() {
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatal("the consumer did not get there within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestConsumerSettlesABatch(t *testing.T) {
	q := newFakeSQS(
		[]types.Message{msg("1", "ok", 1), msg("2", "bad", 1), msg("3", "down", 3), msg("4", "ok", 1)},
		[]types.Message{msg("5", "ok", 1)},
	)
	metrics := herald.NewMetrics(&strings.Builder{}, "test", "email-sender")
	c, err := NewConsumer(testConsumerConfig(), q, byBody, slog.New(slog.DiscardHandler), metrics)
	if err != nil {
		t.Fatal(err)
	}
	c.rnd = func(n int64) int64 { return n - 1 } // backoffs at their ceiling
	start := time.Now()
	run(t, c, func() bool { return q.settled() == 5 })

	sort.Strings(q.deleted)
	if fmt.Sprint(q.deleted) != "[1 2 4 5]" {
		t.Errorf("deleted %v, want the processed and the dead-lettered", q.deleted)
	}
	// The third receive of a failed event: 100 ms doubled twice.
	if v, ok := q.visibility["3"]; !ok || v != 1 {
		t.Errorf("visibility of the failed event %d (set %v), want 1 s (400 ms rounded up)", v, ok)
	}
	if len(q.dead) != 1 || aws.ToString(q.dead[0].QueueUrl) != "dlq" || aws.ToString(q.dead[0].MessageBody) != "bad" ||
		aws.ToString(q.dead[0].MessageAttributes[herald.AttrFailureClass].StringValue) != KindUntagged ||
		aws.ToString(q.dead[0].MessageAttributes[herald.AttrFailureReason].StringValue) != "no tag" ||
		aws.ToString(q.dead[0].MessageAttributes[herald.AttrSourceMessageID].StringValue) != "m-2" {
		t.Errorf("dead-lettered %+v", q.dead)
	}
	// The store was down: the poller paused (100 ms, the first failure)
	// before receiving the second batch.
	q.mu.Lock()
	second := q.receives[1]
	q.mu.Unlock()
	if second.Sub(start) < 100*time.Millisecond {
		t.Errorf("the second receive came %s after the start, before the pause of 100 ms", second.Sub(start))
	}
	if got := metrics.Totals(); got[MetricDeadLettered.Name] != 1 || got[MetricRetried.Name] != 1 {
		t.Errorf("counts %v", got)
	}
}

// A DLQ that cannot be reached keeps the event on the queue: nothing is
// deleted that was not moved.
func TestConsumerKeepsWhatItCannotDeadLetter(t *testing.T) {
	q := newFakeSQS([]types.Message{msg("1", "bad", 1), msg("2", "ok", 1)})
	q.failDLQ = true
	c, _ := NewConsumer(testConsumerConfig(), q, byBody, slog.New(slog.DiscardHandler), nil)
	run(t, c, func() bool { return q.settled() == 1 })
	if fmt.Sprint(q.deleted) != "[2]" {
		t.Fatalf("deleted %v, want only the processed event", q.deleted)
	}
}

// Failed receives are retried after a backoff; the consumer goes on.
func TestConsumerRetriesReceives(t *testing.T) {
	q := newFakeSQS([]types.Message{msg("1", "ok", 1)})
	q.receiveErr = []error{errors.New("connection refused"), errors.New("connection refused")}
	c, _ := NewConsumer(testConsumerConfig(), q, byBody, slog.New(slog.DiscardHandler), nil)
	c.rnd = func(n int64) int64 { return n - 1 }
	start := time.Now()
	run(t, c, func() bool { return q.settled() == 1 })
	// 100 ms, then 200 ms.
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("processed %s after two failed receives, before their backoffs (300 ms)", d)
	}
}

// A batch in progress when Run's context ends finishes and is deleted.
func TestConsumerFinishesTheBatchAtShutdown(t *testing.T) {
	q := newFakeSQS([]types.Message{msg("1", "ok", 1)})
	started, release := make(chan struct{}), make(chan struct{})
	h := handlerFunc(func(ctx context.Context, body []byte) (Result, error) {
		close(started)
		<-release
		return Result{}, ctx.Err()
	})
	c, _ := NewConsumer(testConsumerConfig(), q, h, slog.New(slog.DiscardHandler), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-started
	cancel()
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(q.deleted) != "[1]" {
		t.Fatalf("deleted %v, want the event processed during the shutdown", q.deleted)
	}
}

func TestConsumerConfig(t *testing.T) {
	for name, change := range map[string]func(*ConsumerConfig){
		"no queue":              func(c *ConsumerConfig) { c.QueueURL = "" },
		"no DLQ":                func(c *ConsumerConfig) { c.DeadLetterURL = "" },
		"no pollers":            func(c *ConsumerConfig) { c.Pollers = 0 },
		"wait over 20 s":        func(c *ConsumerConfig) { c.WaitTime = 21 * time.Second },
		"wait not whole":        func(c *ConsumerConfig) { c.WaitTime = 1500 * time.Millisecond },
		"visibility too short":  func(c *ConsumerConfig) { c.Visibility = 2 * time.Second },
		"no process timeout":    func(c *ConsumerConfig) { c.ProcessTimeout = 0 },
		"retry base over max":   func(c *ConsumerConfig) { c.RetryBase = time.Hour },
		"retry max over 12 h":   func(c *ConsumerConfig) { c.RetryMax = 13 * time.Hour },
		"retry base not set":    func(c *ConsumerConfig) { c.RetryBase = 0 },
		"visibility over 12 h":  func(c *ConsumerConfig) { c.Visibility = 13 * time.Hour },
		"more than 100 pollers": func(c *ConsumerConfig) { c.Pollers = 101 },
	} {
		cfg := testConsumerConfig()
		change(&cfg)
		if _, err := NewConsumer(cfg, newFakeSQS(), byBody, slog.Default(), nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewConsumer(testConsumerConfig(), newFakeSQS(), byBody, slog.Default(), nil); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}
