package sqslocal

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// TestSendMessageBatchThroughTheSDK: the SDK reads every entry of a
// SendMessageBatch as successful (goaws's own answer has no Successful list),
// and each message is on the queue once.
func TestSendMessageBatchThroughTheSDK(t *testing.T) {
	s, err := Start(Config{Queues: []Queue{{Name: "batch"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	c := client(s.Endpoint)
	url := aws.String(s.QueueURL("batch"))
	var entries []types.SendMessageBatchRequestEntry
	for i := range 10 {
		entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), MessageBody: aws.String(fmt.Sprintf("m%d", i))})
	}
	out, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: url, Entries: entries})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Successful) != 10 || len(out.Failed) != 0 {
		t.Fatalf("%d successful, %d failed; want 10, 0", len(out.Successful), len(out.Failed))
	}
	seen := map[string]bool{}
	for _, e := range out.Successful {
		if aws.ToString(e.MessageId) == "" || seen[aws.ToString(e.Id)] {
			t.Errorf("entry %+v", e)
		}
		seen[aws.ToString(e.Id)] = true
	}
	got := 0
	for range 5 {
		r, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url, MaxNumberOfMessages: 10})
		if err != nil {
			t.Fatal(err)
		}
		got += len(r.Messages)
		if got >= 10 && len(r.Messages) == 0 {
			break
		}
	}
	if got != 10 {
		t.Errorf("%d messages on the queue, want 10", got)
	}
	// Other calls pass through untouched.
	if _, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: url}); err != nil {
		t.Errorf("GetQueueAttributes: %v", err)
	}
}

// TestReceiveAttributesAsSQS: each receive of a message counts
// (ApproximateReceiveCount 1, 2, ...), SentTimestamp is when it was sent,
// not when it was received, and ApproximateFirstReceiveTimestamp stays the
// first receive's; the count moves with the message to the dead-letter
// queue. goaws alone reports 1, the receive time and the latest receive.
func TestReceiveAttributesAsSQS(t *testing.T) {
	s, err := Start(Config{Queues: []Queue{{Name: "q", DeadLetter: "dlq", MaxReceiveCount: 2}, {Name: "dlq"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	c := client(s.Endpoint)
	q, dlq := aws.String(s.QueueURL("q")), aws.String(s.QueueURL("dlq"))
	sent := time.Now()
	// Delayed, so that it is received a second or more after it was sent.
	if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q, MessageBody: aws.String("m"), DelaySeconds: 1}); err != nil {
		t.Fatal(err)
	}
	receive := func(url *string) types.Message {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url, WaitTimeSeconds: 1, VisibilityTimeout: 30,
				MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll}})
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Messages) == 1 {
				return out.Messages[0]
			}
		}
		t.Fatal("no message")
		return types.Message{}
	}
	attr := func(m types.Message, name types.MessageSystemAttributeName) int64 {
		n, _ := strconv.ParseInt(m.Attributes[string(name)], 10, 64)
		return n
	}
	release := func(m types.Message) {
		t.Helper()
		if _, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: q, ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0}); err != nil {
			t.Fatal(err)
		}
	}
	first := receive(q)
	if time.Since(sent) < time.Second {
		t.Fatal("received before its delay")
	}
	release(first)
	second := receive(q)
	if got := attr(first, types.MessageSystemAttributeNameApproximateReceiveCount); got != 1 {
		t.Errorf("first receive count %d, want 1", got)
	}
	if got := attr(second, types.MessageSystemAttributeNameApproximateReceiveCount); got != 2 {
		t.Errorf("second receive count %d, want 2", got)
	}
	for i, m := range []types.Message{first, second} {
		if st := time.UnixMilli(attr(m, types.MessageSystemAttributeNameSentTimestamp)); st.Sub(sent).Abs() > 500*time.Millisecond {
			t.Errorf("receive %d: SentTimestamp %s, sent at %s", i+1, st, sent)
		}
	}
	firstAt := attr(first, types.MessageSystemAttributeNameApproximateFirstReceiveTimestamp)
	if got := attr(second, types.MessageSystemAttributeNameApproximateFirstReceiveTimestamp); got != firstAt || firstAt == 0 {
		t.Errorf("first receive %d then %d, want the first one's both times", firstAt, got)
	}
	// The second release is the second receive not deleted: MaxReceiveCount.
	release(second)
	dead := receive(dlq)
	if got := attr(dead, types.MessageSystemAttributeNameApproximateReceiveCount); got != 3 || aws.ToString(dead.MessageId) != aws.ToString(first.MessageId) {
		t.Errorf("dead letter %s received %d times, want %s and 3", aws.ToString(dead.MessageId), got, aws.ToString(first.MessageId))
	}
}

// TestChangeMessageVisibilityBatch: the batch call goaws lacks, with SQS's
// answer: every entry successful or failed, and its rules.
func TestChangeMessageVisibilityBatch(t *testing.T) {
	s, err := Start(Config{Queues: []Queue{{Name: "q"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	c := client(s.Endpoint)
	q := aws.String(s.QueueURL("q"))
	for i := range 3 {
		if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q, MessageBody: aws.String(fmt.Sprint("m", i))}); err != nil {
			t.Fatal(err)
		}
	}
	var held []types.Message
	deadline := time.Now().Add(10 * time.Second)
	for len(held) < 3 && time.Now().Before(deadline) {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 60})
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, out.Messages...)
	}
	if len(held) != 3 {
		t.Fatalf("received %d, want 3", len(held))
	}
	entries := []types.ChangeMessageVisibilityBatchRequestEntry{
		{Id: aws.String("a"), ReceiptHandle: held[0].ReceiptHandle, VisibilityTimeout: 0},
		{Id: aws.String("b"), ReceiptHandle: held[1].ReceiptHandle, VisibilityTimeout: 0},
		{Id: aws.String("gone"), ReceiptHandle: aws.String("no-such-receipt"), VisibilityTimeout: 0},
	}
	out, err := c.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: q, Entries: entries})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Successful) != 2 || len(out.Failed) != 1 || aws.ToString(out.Failed[0].Id) != "gone" || !out.Failed[0].SenderFault {
		t.Fatalf("successful %+v, failed %+v", out.Successful, out.Failed)
	}
	// The two released are visible again at once; the third stays hidden.
	back, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q, MaxNumberOfMessages: 10, WaitTimeSeconds: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Messages) != 2 {
		t.Errorf("%d messages visible again, want the 2 released", len(back.Messages))
	}
	for name, bad := range map[string][]types.ChangeMessageVisibilityBatchRequestEntry{
		"EmptyBatchRequest":        {},
		"BatchEntryIdsNotDistinct": {entries[0], entries[0]},
	} {
		if _, err := c.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: q, Entries: bad}); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
