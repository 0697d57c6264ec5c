package sqslocal

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"herald/services/internal/herald"
)

// client is an SDK client for the emulator, guarded as the services' are
// (herald.GuardRequestBodies): unguarded, a lost answer makes the SDK retry
// a ReceiveMessage, and what the lost answer handed out stays hidden.
func client(endpoint string) *sqs.Client {
	return sqs.New(sqs.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
		HTTPClient:   herald.GuardRequestBodies(&http.Client{Timeout: 30 * time.Second}),
	})
}

func TestRedriveToDeadLetterQueue(t *testing.T) {
	s, err := Start(Config{Queues: []Queue{
		{Name: "work", VisibilityTimeout: 1, DeadLetter: "work-dlq", MaxReceiveCount: 2},
		{Name: "work-dlq"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	// Given: a second emulator in the same process is refused (global state).
	if _, err := Start(Config{Queues: []Queue{{Name: "other"}}}); err == nil {
		t.Fatal("second Start in one process succeeded")
	}

	ctx := context.Background()
	c := client(s.Endpoint)
	if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(s.QueueURL("work")), MessageBody: aws.String("m1")}); err != nil {
		t.Fatal(err)
	}
	// When: the message is received and never deleted, MaxReceiveCount times.
	// Then: it ends up in the dead-letter queue.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(s.QueueURL("work-dlq")), WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 1 {
			if got := aws.ToString(out.Messages[0].Body); got != "m1" {
				t.Fatalf("dead-lettered body %q, want m1", got)
			}
			return
		}
		if _, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(s.QueueURL("work")), WaitTimeSeconds: 1}); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("message never reached the dead-letter queue")
}

func TestRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"not loopback":      {Addr: "0.0.0.0:0", Queues: []Queue{{Name: "q"}}},
		"no queues":         {},
		"unknown dlq":       {Queues: []Queue{{Name: "q", DeadLetter: "missing", MaxReceiveCount: 3}}},
		"dlq without count": {Queues: []Queue{{Name: "q", DeadLetter: "d"}, {Name: "d"}}},
		"duplicate name":    {Queues: []Queue{{Name: "q"}, {Name: "q"}}},
	} {
		t.Run(name, func(t *testing.T) {
			if s, err := Start(cfg); err == nil {
				s.Close()
				t.Fatal("Start accepted a bad config")
			}
		})
	}
}
