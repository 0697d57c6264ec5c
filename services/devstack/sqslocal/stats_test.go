package sqslocal

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// TestStatsCountRequestsByAction: every SQS call is counted by action, with
// batch entries, received messages and empty receives, and the counts are
// served at StatsPath.
func TestStatsCountRequestsByAction(t *testing.T) {
	s, err := Start(Config{Queues: []Queue{{Name: "counted"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	c := client(s.Endpoint)
	url := aws.String(s.QueueURL("counted"))
	var entries []types.SendMessageBatchRequestEntry
	for i := range 7 {
		entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), MessageBody: aws.String("m")})
	}
	if _, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: url, Entries: entries}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: url, MessageBody: aws.String("m")}); err != nil {
		t.Fatal(err)
	}
	got, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url, MaxNumberOfMessages: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Messages) != 8 {
		t.Fatalf("received %d, want 8", len(got.Messages))
	}
	if _, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url, MaxNumberOfMessages: 10}); err != nil {
		t.Fatal(err)
	}
	var dels []types.DeleteMessageBatchRequestEntry
	for i, m := range got.Messages[:5] {
		dels = append(dels, types.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle})
	}
	if _, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: url, Entries: dels}); err != nil {
		t.Fatal(err)
	}

	resp, err := http.Get(s.Endpoint + StatsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	want := map[string]ActionStats{
		"SendMessageBatch":   {Requests: 1, Entries: 7},
		"SendMessage":        {Requests: 1, Entries: 1},
		"ReceiveMessage":     {Requests: 2, Entries: 2, Messages: 8, Empty: 1},
		"DeleteMessageBatch": {Requests: 1, Entries: 5},
	}
	for name, w := range want {
		if g := st.Actions[name]; g != w {
			t.Errorf("%s: %+v, want %+v", name, g, w)
		}
	}
	if len(st.Actions) != len(want) {
		t.Errorf("actions %v, want only %d", st.Actions, len(want))
	}
	if d := st.Queues["counted"]; d != (QueueDepth{Visible: 0, Hidden: 3}) {
		t.Errorf("queue depth %+v, want 3 in flight", d)
	}
	if s.Stats().Actions["SendMessage"].Requests != 1 {
		t.Errorf("Server.Stats disagrees with %s", StatsPath)
	}
}
