package consumer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"herald/services/contract"
	"herald/services/internal/herald"
)

// fakeSQS hands out queued messages and records every call.
type fakeSQS struct {
	mu      sync.Mutex
	pending []types.Message
	arrived chan struct{} // closed when pending grows

	receiveErrs []error
	asked       []int32 // MaxNumberOfMessages per receive
	deleteCalls [][]string
	singleDels  []string // DeleteMessage calls
	visibility  []visChange
	batchVis    [][]visChange
	batchVisErr error
	dlq         []*sqs.SendMessageInput
	dlqErr      error
	copies      []*sqs.SendMessageInput // SendMessage to the queue itself: re-queued copies
	copyErr     error
	// requeueCopies puts each copy back on the queue at once (its delay is
	// not waited out), as a new message "copy-<n>".
	requeueCopies bool
	receives      int // ReceiveMessage calls that returned messages or waited
	onVisibility  func(visChange)
}

type visChange struct {
	receipt string
	seconds int32
}

func newFakeSQS() *fakeSQS { return &fakeSQS{arrived: make(chan struct{})} }

func (f *fakeSQS) put(msgs ...types.Message) {
	f.mu.Lock()
	f.pending = append(f.pending, msgs...)
	close(f.arrived)
	f.arrived = make(chan struct{})
	f.mu.Unlock()
}

func (f *fakeSQS) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	f.mu.Lock()
	f.receives++
	f.mu.Unlock()
	// A long poll ends empty after its wait, as SQS's does.
	wait := time.NewTimer(time.Duration(max(in.WaitTimeSeconds, 1)) * time.Second)
	defer wait.Stop()
	for {
		f.mu.Lock()
		if len(f.receiveErrs) > 0 {
			err := f.receiveErrs[0]
			f.receiveErrs = f.receiveErrs[1:]
			f.mu.Unlock()
			return nil, err
		}
		if len(f.pending) > 0 {
			f.asked = append(f.asked, in.MaxNumberOfMessages)
			n := min(len(f.pending), int(in.MaxNumberOfMessages))
			out := append([]types.Message(nil), f.pending[:n]...)
			f.pending = f.pending[n:]
			f.mu.Unlock()
			return &sqs.ReceiveMessageOutput{Messages: out}, nil
		}
		ch := f.arrived
		f.mu.Unlock()
		select {
		case <-ch:
		case <-wait.C:
			return &sqs.ReceiveMessageOutput{}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (f *fakeSQS) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	var receipts []string
	for _, e := range in.Entries {
		receipts = append(receipts, aws.ToString(e.ReceiptHandle))
	}
	f.mu.Lock()
	f.deleteCalls = append(f.deleteCalls, receipts)
	f.mu.Unlock()
	return &sqs.DeleteMessageBatchOutput{}, nil
}

func (f *fakeSQS) DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error) {
	f.mu.Lock()
	f.singleDels = append(f.singleDels, aws.ToString(in.ReceiptHandle))
	f.mu.Unlock()
	return &sqs.DeleteMessageOutput{}, nil
}

func (f *fakeSQS) ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	v := visChange{aws.ToString(in.ReceiptHandle), in.VisibilityTimeout}
	f.mu.Lock()
	f.visibility = append(f.visibility, v)
	hook := f.onVisibility
	f.mu.Unlock()
	if hook != nil {
		hook(v)
	}
	return &sqs.ChangeMessageVisibilityOutput{}, nil
}

func (f *fakeSQS) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.batchVisErr != nil {
		return nil, f.batchVisErr
	}
	var batch []visChange
	for _, e := range in.Entries {
		batch = append(batch, visChange{aws.ToString(e.ReceiptHandle), e.VisibilityTimeout})
	}
	f.batchVis = append(f.batchVis, batch)
	return &sqs.ChangeMessageVisibilityBatchOutput{}, nil
}

func (f *fakeSQS) SendMessage(ctx context.Context, in *sqs.SendMessageInput, _ ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if aws.ToString(in.QueueUrl) == testConfig().QueueURL {
		if f.copyErr != nil {
			return nil, f.copyErr
		}
		f.copies = append(f.copies, in)
		id := "copy-" + strconv.Itoa(len(f.copies))
		if f.requeueCopies {
			f.pending = append(f.pending, types.Message{
				MessageId: aws.String(id), ReceiptHandle: aws.String("rh-" + id + "-1"),
				Body: in.MessageBody, MessageAttributes: in.MessageAttributes,
			})
			close(f.arrived)
			f.arrived = make(chan struct{})
		}
		return &sqs.SendMessageOutput{MessageId: aws.String(id)}, nil
	}
	if f.dlqErr != nil {
		return nil, f.dlqErr
	}
	f.dlq = append(f.dlq, in)
	return &sqs.SendMessageOutput{MessageId: aws.String("dlq-" + strconv.Itoa(len(f.dlq)))}, nil
}

// read runs fn under the fake's lock.
func (f *fakeSQS) read(fn func(f *fakeSQS)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeSQS) copyCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.copies)
}

func (f *fakeSQS) deadLetters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.dlq)
}

func (f *fakeSQS) visibilityChanges() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.visibility)
}

func (f *fakeSQS) deletedReceipts() []string {
	var out []string
	f.read(func(f *fakeSQS) {
		for _, c := range f.deleteCalls {
			out = append(out, c...)
		}
		out = append(out, f.singleDels...)
	})
	return out
}

// senderFunc adapts a function to Sender.
type senderFunc func(ctx context.Context, e *herald.Envelope) (string, error)

func (s senderFunc) Send(ctx context.Context, e *herald.Envelope) (string, error) { return s(ctx, e) }

// failingSender fails every send with err, counting them in sends.
func failingSender(sends *atomic.Int32, err error) Sender {
	return senderFunc(func(context.Context, *herald.Envelope) (string, error) {
		sends.Add(1)
		return "", err
	})
}

func okSender() Sender {
	return senderFunc(func(ctx context.Context, e *herald.Envelope) (string, error) { return "ok-" + e.ID, nil })
}

// envelopeBody is a valid queue message body.
func envelopeBody(t *testing.T, id string) string {
	t.Helper()
	e := herald.Envelope{ID: id, CreatedAt: time.Now(), From: "sender@example.com", To: []string{"alice@example.com"}, Subject: "Hi", Text: "hello"}
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sqsMessage is one delivery of a message; receipt handles differ per delivery.
func sqsMessage(id, body string, receiveCount, delivery int) types.Message {
	return types.Message{
		MessageId:     aws.String(id),
		ReceiptHandle: aws.String(fmt.Sprintf("rh-%s-%d", id, delivery)),
		Body:          aws.String(body),
		Attributes: map[string]string{
			"SentTimestamp":           strconv.FormatInt(time.Now().UnixMilli(), 10),
			"ApproximateReceiveCount": strconv.Itoa(receiveCount),
		},
	}
}

func testConfig() Config {
	allowed, err := contract.ParseAllowList("@example.com,noreply@herald.test")
	if err != nil {
		panic(err)
	}
	return Config{
		QueueURL: "http://sqs.local/000000000000/q", DeadLetterURL: "http://sqs.local/000000000000/dlq",
		AllowedFrom: allowed,
		Pollers:     1, Workers: 4, WaitTime: time.Second, Visibility: 30 * time.Second,
		SendTimeout: 5 * time.Second, RetryBase: time.Second, RetryMax: 15 * time.Minute, RetryWindow: time.Hour,
		ShutdownTimeout: 10 * time.Second, BatchLinger: 10 * time.Millisecond,
		ReceiveBatch: 10, DeleteBatch: 10,
	}
}

// start runs c until the returned stop is called; stop returns Run's error.
func start(t *testing.T, c *Consumer) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var result error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case result = <-done:
			case <-time.After(30 * time.Second):
				result = errors.New("Run did not return within 30 s of its context ending")
			}
		})
		return result
	}
	t.Cleanup(func() { stop() })
	return stop
}

func newConsumer(t *testing.T, cfg Config, d Deps) *Consumer {
	t.Helper()
	c, err := New(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var errBoom = errors.New("boom")

// attr is a message attribute's string value.
func attr(attrs map[string]types.MessageAttributeValue, name string) string {
	return aws.ToString(attrs[name].StringValue)
}

// nopLimiter admits every send at once and ignores feedback.
type nopLimiter struct{}

func (nopLimiter) Wait(context.Context) error { return nil }
func (nopLimiter) Throttled(time.Time)        {}
func (nopLimiter) Succeeded(time.Time)        {}
