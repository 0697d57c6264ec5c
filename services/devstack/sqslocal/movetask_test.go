package sqslocal

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	smithy "github.com/aws/smithy-go"
)

// moveFixture is an emulator with a work queue, its dead-letter queue and
// an unrelated queue, and the ARNs of the three.
type moveFixture struct {
	s                         *Server
	c                         *sqs.Client
	work, dlq, other          string // URLs
	workARN, dlqARN, otherARN string
}

func startMoveFixture(t *testing.T) *moveFixture {
	t.Helper()
	s, err := Start(Config{Queues: []Queue{
		{Name: "work", DeadLetter: "work-dlq", MaxReceiveCount: 5},
		{Name: "work-dlq"},
		{Name: "elsewhere"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	f := &moveFixture{s: s, c: client(s.Endpoint), work: s.QueueURL("work"), dlq: s.QueueURL("work-dlq"), other: s.QueueURL("elsewhere")}
	f.workARN, f.dlqARN, f.otherARN = f.arn(t, f.work), f.arn(t, f.dlq), f.arn(t, f.other)
	return f
}

func (f *moveFixture) arn(t *testing.T, url string) string {
	t.Helper()
	out, err := f.c.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Attributes[string(types.QueueAttributeNameQueueArn)]
}

// deadLetter puts n messages, each with an attribute, in the DLQ.
func (f *moveFixture) deadLetter(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		_, err := f.c.SendMessage(context.Background(), &sqs.SendMessageInput{
			QueueUrl: aws.String(f.dlq), MessageBody: aws.String(fmt.Sprintf("m%02d", i)),
			MessageAttributes: map[string]types.MessageAttributeValue{
				"herald.failure.class": {DataType: aws.String("String"), StringValue: aws.String(fmt.Sprintf("class-%d", i))},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// drain receives and deletes everything in a queue: body -> attribute, and
// the message ids seen.
func (f *moveFixture) drain(t *testing.T, url string) (map[string]string, []string) {
	t.Helper()
	ctx := context.Background()
	got := map[string]string{}
	var ids []string
	for range 100 {
		out, err := f.c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, MessageAttributeNames: []string{"All"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			return got, ids
		}
		for _, m := range out.Messages {
			if _, dup := got[aws.ToString(m.Body)]; dup {
				t.Errorf("%s twice in %s", aws.ToString(m.Body), url)
			}
			got[aws.ToString(m.Body)] = aws.ToString(m.MessageAttributes["herald.failure.class"].StringValue)
			ids = append(ids, aws.ToString(m.MessageId))
			if _, err := f.c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Fatalf("%s did not drain", url)
	return nil, nil
}

// waitTask polls ListMessageMoveTasks until the latest task is no longer
// RUNNING or CANCELLING, and returns it.
func (f *moveFixture) waitTask(t *testing.T, timeout time.Duration) types.ListMessageMoveTasksResultEntry {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, err := f.c.ListMessageMoveTasks(context.Background(), &sqs.ListMessageMoveTasksInput{SourceArn: aws.String(f.dlqARN)})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Results) != 1 {
			t.Fatalf("%d results, want the latest task only", len(out.Results))
		}
		r := out.Results[0]
		if s := aws.ToString(r.Status); s != MoveRunning && s != MoveCancelling {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("task still %s after %s: %+v", aws.ToString(r.Status), timeout, r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Given dead letters with attributes, a task without a destination moves
// every one to the DLQ's redrive source once, with body and attributes, as
// new messages; the DLQ ends empty and the task COMPLETED with its counts.
func TestMoveTaskRedrivesToTheSourceQueue(t *testing.T) {
	f := startMoveFixture(t)
	const n = 25
	f.deadLetter(t, n)
	// Some of the ids in the DLQ, peeked and released at once.
	peek, err := f.c.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(f.dlq), MaxNumberOfMessages: 10})
	if err != nil || len(peek.Messages) == 0 {
		t.Fatalf("peek: %v", err)
	}
	var dlqIDs []string
	for _, m := range peek.Messages {
		dlqIDs = append(dlqIDs, aws.ToString(m.MessageId))
		if _, err := f.c.ChangeMessageVisibility(context.Background(), &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(f.dlq), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0}); err != nil {
			t.Fatal(err)
		}
	}

	before := f.s.Stats().Actions
	out, err := f.c.StartMessageMoveTask(context.Background(), &sqs.StartMessageMoveTaskInput{SourceArn: aws.String(f.dlqARN)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(out.TaskHandle) == "" {
		t.Fatal("no task handle")
	}
	r := f.waitTask(t, 20*time.Second)
	if aws.ToString(r.Status) != MoveCompleted || r.ApproximateNumberOfMessagesMoved != n || aws.ToInt64(r.ApproximateNumberOfMessagesToMove) != n {
		t.Fatalf("task %+v, want COMPLETED with %d moved of %d", r, n, n)
	}
	if r.TaskHandle != nil || r.DestinationArn != nil || r.MaxNumberOfMessagesPerSecond != nil || r.FailureReason != nil {
		t.Errorf("finished task lists handle %v, destination %v, rate %v, failure %v; want none", r.TaskHandle, r.DestinationArn, r.MaxNumberOfMessagesPerSecond, r.FailureReason)
	}
	if aws.ToString(r.SourceArn) != f.dlqARN || r.StartedTimestamp == 0 {
		t.Errorf("task source %q started %d", aws.ToString(r.SourceArn), r.StartedTimestamp)
	}

	moved, ids := f.drain(t, f.work)
	if len(moved) != n {
		t.Fatalf("%d messages in the source queue, want %d", len(moved), n)
	}
	for i := range n {
		if got := moved[fmt.Sprintf("m%02d", i)]; got != fmt.Sprintf("class-%d", i) {
			t.Errorf("m%02d: attribute %q, want class-%d", i, got, i)
		}
	}
	for _, old := range dlqIDs {
		for _, id := range ids {
			if id == old {
				t.Errorf("message id %s kept; redriven messages are new messages", id)
			}
		}
	}
	if left, _ := f.drain(t, f.dlq); len(left) != 0 {
		t.Errorf("%d messages left in the DLQ", len(left))
	}
	// The task is one billed call; its moves are not requests to the endpoint.
	after := f.s.Stats().Actions
	if d := after["StartMessageMoveTask"].Requests - before["StartMessageMoveTask"].Requests; d != 1 {
		t.Errorf("StartMessageMoveTask counted %d times, want 1", d)
	}
	if d := after["SendMessageBatch"].Requests - before["SendMessageBatch"].Requests; d != 0 {
		t.Errorf("the task's own sends were counted as %d requests", d)
	}
}

// A task with a rate and a destination runs slowly enough to be seen
// RUNNING (with its handle, rate and destination), refuses a second task on
// the same source, and stops when cancelled, with every message either
// moved once or still in the DLQ.
func TestMoveTaskRateCancelAndOneAtATime(t *testing.T) {
	f := startMoveFixture(t)
	const n = 10
	f.deadLetter(t, n)
	ctx := context.Background()
	start, err := f.c.StartMessageMoveTask(ctx, &sqs.StartMessageMoveTaskInput{
		SourceArn: aws.String(f.dlqARN), DestinationArn: aws.String(f.otherARN), MaxNumberOfMessagesPerSecond: aws.Int32(1),
	})
	if err != nil {
		t.Fatal(err)
	}
	list, err := f.c.ListMessageMoveTasks(ctx, &sqs.ListMessageMoveTasksInput{SourceArn: aws.String(f.dlqARN)})
	if err != nil {
		t.Fatal(err)
	}
	// At one message a second, ten take nine seconds: this is still running.
	r := list.Results[0]
	if aws.ToString(r.Status) != MoveRunning || aws.ToString(r.TaskHandle) != aws.ToString(start.TaskHandle) ||
		aws.ToInt32(r.MaxNumberOfMessagesPerSecond) != 1 || aws.ToString(r.DestinationArn) != f.otherARN {
		t.Fatalf("running task listed as %+v", r)
	}
	_, err = f.c.StartMessageMoveTask(ctx, &sqs.StartMessageMoveTaskInput{SourceArn: aws.String(f.dlqARN)})
	if code := errorCode(err); code != "InvalidParameterValue" {
		t.Errorf("second task on a running source: %v (code %q), want InvalidParameterValue", err, code)
	}
	if _, err := f.c.CancelMessageMoveTask(ctx, &sqs.CancelMessageMoveTaskInput{TaskHandle: start.TaskHandle}); err != nil {
		t.Fatal(err)
	}
	r = f.waitTask(t, 20*time.Second)
	if aws.ToString(r.Status) != MoveCancelled || r.ApproximateNumberOfMessagesMoved >= n {
		t.Fatalf("cancelled task %+v, want CANCELLED before all %d moved", r, n)
	}
	moved, _ := f.drain(t, f.other)
	left, _ := f.drain(t, f.dlq)
	if int64(len(moved)) != r.ApproximateNumberOfMessagesMoved || len(moved)+len(left) != n {
		t.Errorf("%d moved (task says %d), %d left in the DLQ; want them to add up to %d", len(moved), r.ApproximateNumberOfMessagesMoved, len(left), n)
	}
	for body := range moved {
		if _, twice := left[body]; twice {
			t.Errorf("%s both moved and left", body)
		}
	}
	if _, err := f.c.CancelMessageMoveTask(ctx, &sqs.CancelMessageMoveTaskInput{TaskHandle: start.TaskHandle}); errorCode(err) != "InvalidParameterValue" {
		t.Errorf("cancel of a cancelled task: %v, want InvalidParameterValue", err)
	}
	// A finished task frees the source for the next; both are listed, newest first.
	if _, err := f.c.StartMessageMoveTask(ctx, &sqs.StartMessageMoveTaskInput{SourceArn: aws.String(f.dlqARN)}); err != nil {
		t.Fatalf("a new task after the cancelled one: %v", err)
	}
	f.waitTask(t, 20*time.Second)
	all, err := f.c.ListMessageMoveTasks(ctx, &sqs.ListMessageMoveTasksInput{SourceArn: aws.String(f.dlqARN), MaxResults: aws.Int32(10)})
	if err != nil {
		t.Fatal(err)
	}
	var statuses []string
	for _, r := range all.Results {
		statuses = append(statuses, aws.ToString(r.Status))
	}
	if fmt.Sprint(statuses) != "[COMPLETED CANCELLED]" {
		t.Errorf("tasks listed %v, want [COMPLETED CANCELLED]", statuses)
	}
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// Bad requests get the SQS error the API reference names.
func TestMoveTaskErrors(t *testing.T) {
	f := startMoveFixture(t)
	ctx := context.Background()
	missing := "arn:aws:sqs:local:" + AccountID + ":missing"
	garbage := "bm90IGEgaGFuZGxl" // base64, not a task handle
	unknown := "eyJ0YXNrSWQiOiJub3BlIiwic291cmNlQXJuIjoieCJ9"
	cases := []struct {
		name string
		call func() error
		want string
	}{
		{"start: unknown source", func() error {
			_, err := f.c.StartMessageMoveTask(ctx, &sqs.StartMessageMoveTaskInput{SourceArn: aws.String(missing)})
			return err
		}, "ResourceNotFoundException"},
		{"start: source is no dead-letter queue", func() error {
			_, err := f.c.StartMessageMoveTask(ctx, &sqs.StartMessageMoveTaskInput{SourceArn: aws.String(f.workARN)})
			return err
		}, "InvalidParameterValue"},
		{"start: unknown destination", func() error {
			_, err := f.c.StartMessageMoveTask(ctx, &sqs.StartMessageMoveTaskInput{SourceArn: aws.String(f.dlqARN), DestinationArn: aws.String(missing)})
			return err
		}, "ResourceNotFoundException"},
		{"start: rate 0", func() error {
			_, err := f.c.StartMessageMoveTask(ctx, &sqs.StartMessageMoveTaskInput{SourceArn: aws.String(f.dlqARN), MaxNumberOfMessagesPerSecond: aws.Int32(0)})
			return err
		}, "InvalidParameterValue"},
		{"start: rate 501", func() error {
			_, err := f.c.StartMessageMoveTask(ctx, &sqs.StartMessageMoveTaskInput{SourceArn: aws.String(f.dlqARN), MaxNumberOfMessagesPerSecond: aws.Int32(501)})
			return err
		}, "InvalidParameterValue"},
		{"list: unknown source", func() error {
			_, err := f.c.ListMessageMoveTasks(ctx, &sqs.ListMessageMoveTasksInput{SourceArn: aws.String(missing)})
			return err
		}, "ResourceNotFoundException"},
		{"list: MaxResults 11", func() error {
			_, err := f.c.ListMessageMoveTasks(ctx, &sqs.ListMessageMoveTasksInput{SourceArn: aws.String(f.dlqARN), MaxResults: aws.Int32(11)})
			return err
		}, "InvalidParameterValue"},
		{"cancel: not a handle", func() error {
			_, err := f.c.CancelMessageMoveTask(ctx, &sqs.CancelMessageMoveTaskInput{TaskHandle: aws.String(garbage)})
			return err
		}, "InvalidParameterValue"},
		{"cancel: unknown task", func() error {
			_, err := f.c.CancelMessageMoveTask(ctx, &sqs.CancelMessageMoveTaskInput{TaskHandle: aws.String(unknown)})
			return err
		}, "ResourceNotFoundException"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if code := errorCode(err); code != tc.want {
				t.Errorf("error %v (code %q), want %s", err, code, tc.want)
			}
		})
	}
	// The SDK types the modelled one.
	_, err := f.c.StartMessageMoveTask(ctx, &sqs.StartMessageMoveTaskInput{SourceArn: aws.String(missing)})
	var notFound *types.ResourceNotFoundException
	if !errors.As(err, &notFound) {
		t.Errorf("unknown source: %T %v, want *types.ResourceNotFoundException", err, err)
	}
	// A source without tasks lists none; nothing was started by the errors.
	out, err := f.c.ListMessageMoveTasks(ctx, &sqs.ListMessageMoveTasksInput{SourceArn: aws.String(f.dlqARN), MaxResults: aws.Int32(10)})
	if err != nil || len(out.Results) != 0 {
		t.Errorf("tasks after refused starts: %v %+v", err, out)
	}
	// An empty DLQ completes at once with nothing to move.
	if _, err := f.c.StartMessageMoveTask(ctx, &sqs.StartMessageMoveTaskInput{SourceArn: aws.String(f.dlqARN)}); err != nil {
		t.Fatal(err)
	}
	if r := f.waitTask(t, 10*time.Second); aws.ToString(r.Status) != MoveCompleted || r.ApproximateNumberOfMessagesMoved != 0 || aws.ToInt64(r.ApproximateNumberOfMessagesToMove) != 0 {
		t.Errorf("task on an empty DLQ: %+v", r)
	}
}
