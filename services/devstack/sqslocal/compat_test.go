package sqslocal

import (
	"context"
	"fmt"
	"testing"

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
