package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"regexp"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"herald/services/internal/herald"
	"herald/services/mailaddr"
)

// sqsAPI is what herald-ops asks of SQS.
type sqsAPI interface {
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	StartMessageMoveTask(ctx context.Context, in *sqs.StartMessageMoveTaskInput, optFns ...func(*sqs.Options)) (*sqs.StartMessageMoveTaskOutput, error)
	ListMessageMoveTasks(ctx context.Context, in *sqs.ListMessageMoveTasksInput, optFns ...func(*sqs.Options)) (*sqs.ListMessageMoveTasksOutput, error)
	CancelMessageMoveTask(ctx context.Context, in *sqs.CancelMessageMoveTaskInput, optFns ...func(*sqs.Options)) (*sqs.CancelMessageMoveTaskOutput, error)
}

// classMaxReceives is the class dlq list gives a message SQS moved itself
// after the queue's maxReceiveCount receives (it carries no Herald failure
// attributes): transient failures that never cleared, or a sender that
// crashed or stalled while handling it.
const classMaxReceives = "max-receives"

// deadLetter is one dead-lettered message as dlq list shows it. Addresses
// are masked as the services' logs mask them; no subject or body.
type deadLetter struct {
	MessageID    string    `json:"messageId"`
	Notification string    `json:"notificationId,omitempty"`
	Class        string    `json:"class"`
	Reason       string    `json:"reason"`
	FirstAttempt time.Time `json:"firstAttempt,omitzero"`
	Attempts     int       `json:"attempts"`
	CreatedAt    time.Time `json:"createdAt,omitzero"`
	From         string    `json:"from,omitempty"`
	To           []string  `json:"to,omitempty"`
	Recipients   int       `json:"recipients"`
	KeyID        string    `json:"keyId,omitempty"`
}

// dlqListing is dlq list's JSON output.
type dlqListing struct {
	Queue string `json:"queue"`
	// Approximate counts from SQS before the peek.
	Visible  int          `json:"visible"`
	InFlight int          `json:"inFlight"`
	Messages []deadLetter `json:"messages"`
}

func dlqListFlags(fs *flag.FlagSet) func(context.Context, *invocation, []string) error {
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	most := fs.Int("max", 100, "most messages to show (1 to 1000)")
	peek := fs.Duration("peek", 20*time.Second, "how long the peeked messages stay hidden at most (they are released at once after the listing)")
	return func(ctx context.Context, e *invocation, _ []string) error {
		if *most < 1 || *most > 1000 {
			return fmt.Errorf("-max %d: must be 1 to 1000", *most)
		}
		if *peek < time.Second || *peek > 5*time.Minute {
			return fmt.Errorf("-peek %s: must be 1s to 5m", *peek)
		}
		if err := e.need("dlq-url"); err != nil {
			return err
		}
		c, err := e.clients.sqs(ctx, &e.target)
		if err != nil {
			return err
		}
		listing, err := listDeadLetters(ctx, c, e.dlqURL, *most, *peek)
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(listing)
		}
		return printDeadLetters(e, listing)
	}
}

// listDeadLetters receives up to most messages from the DLQ, hidden for at
// most peek, and makes each visible again at once: the queue is as it was,
// apart from the receive counts.
func listDeadLetters(ctx context.Context, c sqsAPI, dlqURL string, most int, peek time.Duration) (dlqListing, error) {
	out := dlqListing{Queue: dlqURL, Messages: []deadLetter{}}
	var err error
	if out.Visible, out.InFlight, err = depth(ctx, c, dlqURL); err != nil {
		return out, err
	}
	var handles []string
	defer func() {
		// Release even when the listing failed half way, on a context of
		// its own so Ctrl-C does not leave messages hidden.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, h := range handles {
			c.ChangeMessageVisibility(rctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(dlqURL), ReceiptHandle: aws.String(h), VisibilityTimeout: 0})
		}
	}()
	seen := map[string]bool{}
	for len(out.Messages) < most {
		res, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:              aws.String(dlqURL),
			MaxNumberOfMessages:   int32(min(10, most-len(out.Messages))),
			VisibilityTimeout:     int32(peek / time.Second),
			WaitTimeSeconds:       1, // reaches every SQS server, unlike a short poll
			MessageAttributeNames: []string{"All"},
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{
				types.MessageSystemAttributeNameApproximateReceiveCount,
				types.MessageSystemAttributeNameApproximateFirstReceiveTimestamp,
			},
		})
		if err != nil {
			return out, fmt.Errorf("peek the dead-letter queue: %w", err)
		}
		if len(res.Messages) == 0 {
			break
		}
		for _, m := range res.Messages {
			handles = append(handles, aws.ToString(m.ReceiptHandle))
			if id := aws.ToString(m.MessageId); !seen[id] {
				seen[id] = true
				out.Messages = append(out.Messages, describe(m))
			}
		}
	}
	return out, nil
}

// depth reads a queue's visible and in-flight messages.
func depth(ctx context.Context, c sqsAPI, url string) (visible, inFlight int, err error) {
	res, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		return 0, 0, fmt.Errorf("read the depth of %s: %w", url, err)
	}
	visible, _ = strconv.Atoi(res.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
	inFlight, _ = strconv.Atoi(res.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return visible, inFlight, nil
}

// describe turns one received dead letter into what dlq list shows.
func describe(m types.Message) deadLetter {
	attr := func(name string) string { return aws.ToString(m.MessageAttributes[name].StringValue) }
	d := deadLetter{MessageID: aws.ToString(m.MessageId), Class: attr(herald.AttrFailureClass), Reason: maskAddresses(attr(herald.AttrFailureReason))}
	receives, _ := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	if d.Class == "" {
		// SQS moved it after maxReceiveCount receives: its own counts are
		// the history (this peek excluded; earlier peeks are in them).
		d.Class = classMaxReceives
		d.Attempts = max(receives-1, 0)
		d.Reason = fmt.Sprintf("received %d times without being deleted (the queue's maxReceiveCount): a sender that crashed, hung or stopped while it held the message each time (transient failures are retried as copies and never count here)", d.Attempts)
		if ms, err := strconv.ParseInt(m.Attributes[string(types.MessageSystemAttributeNameApproximateFirstReceiveTimestamp)], 10, 64); err == nil && ms > 0 {
			d.FirstAttempt = time.UnixMilli(ms).UTC()
		}
	} else {
		d.Attempts, _ = strconv.Atoi(attr(herald.AttrFailureAttempts))
		d.FirstAttempt, _ = time.Parse(herald.TimeFormatMillis, attr(herald.AttrFailureFirstAttempt))
	}
	var env herald.Envelope
	if json.Unmarshal([]byte(aws.ToString(m.Body)), &env) == nil {
		d.Notification, d.CreatedAt, d.KeyID = env.ID, env.CreatedAt, env.KeyID
		if env.From != "" {
			d.From = mailaddr.Mask(env.From)
		}
		for _, list := range [][]string{env.To, env.Cc, env.Bcc} {
			for _, a := range list {
				d.To = append(d.To, mailaddr.Mask(a))
			}
		}
		d.Recipients = env.Recipients()
	}
	return d
}

// addressLike finds what could be an address in free text.
var addressLike = regexp.MustCompile(`[^\s<>"',;:()\[\]]+@[^\s<>"',;:()\[\]]+`)

// maskAddresses masks every address-like word of a reason as the logs do;
// the sender keeps addresses out of reasons, this keeps it so.
func maskAddresses(s string) string {
	return addressLike.ReplaceAllStringFunc(s, mailaddr.Mask)
}

func printDeadLetters(e *invocation, l dlqListing) error {
	fmt.Fprintf(e.stdout, "%s: %d visible, %d in flight; showing %d\n", l.Queue, l.Visible, l.InFlight, len(l.Messages))
	if len(l.Messages) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NOTIFICATION\tCLASS\tATTEMPTS\tFIRST ATTEMPT\tFROM\tTO\tREASON")
	for _, d := range l.Messages {
		to := "-"
		if len(d.To) > 0 {
			to = d.To[0]
			if len(d.To) > 1 {
				to += fmt.Sprintf(" +%d", len(d.To)-1)
			}
		}
		first := "-"
		if !d.FirstAttempt.IsZero() {
			first = d.FirstAttempt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", orDash(d.Notification), d.Class, d.Attempts, first, orDash(d.From), to, orDash(d.Reason))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// queueARN reads a queue's ARN.
func queueARN(ctx context.Context, c sqsAPI, url string) (string, error) {
	res, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", fmt.Errorf("read the ARN of %s: %w", url, err)
	}
	arn := res.Attributes[string(types.QueueAttributeNameQueueArn)]
	if arn == "" {
		return "", fmt.Errorf("%s has no QueueArn attribute", url)
	}
	return arn, nil
}

// latestTask is the most recent move task of the DLQ, nil if none.
func latestTask(ctx context.Context, c sqsAPI, dlqARN string) (*types.ListMessageMoveTasksResultEntry, error) {
	res, err := c.ListMessageMoveTasks(ctx, &sqs.ListMessageMoveTasksInput{SourceArn: aws.String(dlqARN), MaxResults: aws.Int32(1)})
	if err != nil {
		return nil, fmt.Errorf("list the move tasks of %s: %w", dlqARN, err)
	}
	if len(res.Results) == 0 {
		return nil, nil
	}
	return &res.Results[0], nil
}

// taskLine is one progress line of a move task.
func taskLine(t *types.ListMessageMoveTasksResultEntry) string {
	moved, toMove := t.ApproximateNumberOfMessagesMoved, aws.ToInt64(t.ApproximateNumberOfMessagesToMove)
	line := fmt.Sprintf("%s: %d of %d moved", aws.ToString(t.Status), moved, toMove)
	if toMove > 0 {
		line += fmt.Sprintf(" (%d%%)", moved*100/toMove)
	}
	if r := aws.ToInt32(t.MaxNumberOfMessagesPerSecond); r > 0 {
		line += fmt.Sprintf(", at most %d/s", r)
	}
	if t.StartedTimestamp > 0 {
		line += ", started " + time.UnixMilli(t.StartedTimestamp).UTC().Format(time.RFC3339)
	}
	if f := aws.ToString(t.FailureReason); f != "" {
		line += ", failure: " + f
	}
	return line
}

func active(status string) bool { return status == "RUNNING" || status == "CANCELLING" }

// maxMoveRate is SQS's upper bound for MaxNumberOfMessagesPerSecond.
const maxMoveRate = 500

func dlqRedriveFlags(fs *flag.FlagSet) func(context.Context, *invocation, []string) error {
	rate := fs.Int("rate", 0, fmt.Sprintf("most messages moved per second, 1 to %d (default: SQS chooses by the backlog)", maxMoveRate))
	dryRun := fs.Bool("dry-run", false, "say what would be moved where, and start nothing")
	timeout := fs.Duration("timeout", time.Hour, "stop following the task after this long (the task goes on)")
	return func(ctx context.Context, e *invocation, _ []string) error {
		if *rate < 0 || *rate > maxMoveRate {
			return fmt.Errorf("-rate %d: must be 1 to %d, or 0 to let SQS choose", *rate, maxMoveRate)
		}
		if *timeout <= 0 {
			return fmt.Errorf("-timeout %s must be positive", *timeout)
		}
		if err := e.need("dlq-url", "queue-url"); err != nil {
			return err
		}
		c, err := e.clients.sqs(ctx, &e.target)
		if err != nil {
			return err
		}
		return redrive(ctx, e, c, *rate, *dryRun, *timeout)
	}
}

// redrive starts a move task from the DLQ to the queue and follows it until
// it ends. The destination is always named: SQS returns a message to "its
// source" only when SQS itself moved it there, and the sender moves
// permanent failures to the DLQ with SendMessage.
func redrive(ctx context.Context, e *invocation, c sqsAPI, rate int, dryRun bool, timeout time.Duration) error {
	dlqARN, err := queueARN(ctx, c, e.dlqURL)
	if err != nil {
		return err
	}
	queueARN, err := queueARN(ctx, c, e.queueURL)
	if err != nil {
		return err
	}
	visible, inFlight, err := depth(ctx, c, e.dlqURL)
	if err != nil {
		return err
	}
	prev, err := latestTask(ctx, c, dlqARN)
	if err != nil {
		return err
	}
	pace := "at the rate SQS chooses"
	if rate > 0 {
		pace = fmt.Sprintf("at most %d a second", rate)
	}
	if prev != nil && active(aws.ToString(prev.Status)) {
		return fmt.Errorf("a move task of %s is already %s (%s); follow it with dlq status, or stop it with dlq cancel", dlqARN, aws.ToString(prev.Status), taskLine(prev))
	}
	if dryRun {
		fmt.Fprintf(e.stdout, "dry run: would move the %d visible messages of %s to %s, %s (%d more in flight stay)\n", visible, dlqARN, queueARN, pace, inFlight)
		if prev != nil {
			fmt.Fprintln(e.stdout, "last task:", taskLine(prev))
		}
		return nil
	}
	in := &sqs.StartMessageMoveTaskInput{SourceArn: aws.String(dlqARN), DestinationArn: aws.String(queueARN)}
	if rate > 0 {
		in.MaxNumberOfMessagesPerSecond = aws.Int32(int32(rate))
	}
	started, err := c.StartMessageMoveTask(ctx, in)
	if err != nil {
		return fmt.Errorf("start the move task: %w", err)
	}
	handle := aws.ToString(started.TaskHandle)
	fmt.Fprintf(e.stdout, "moving about %d messages from %s to %s, %s\n", visible, dlqARN, queueARN, pace)
	return follow(ctx, e, c, dlqARN, handle, timeout)
}

// follow polls the DLQ's latest move task (ours: only one runs per queue,
// and a task lists its handle while it runs) and prints a line when its
// progress changes, until it ends or timeout passes.
func follow(ctx context.Context, e *invocation, c sqsAPI, dlqARN, handle string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		t, err := latestTask(ctx, c, dlqARN)
		if err != nil {
			return err
		}
		if t == nil {
			return fmt.Errorf("the move task of %s is not listed", dlqARN)
		}
		if h := aws.ToString(t.TaskHandle); h != "" && h != handle {
			return fmt.Errorf("another move task of %s is running (%s)", dlqARN, taskLine(t))
		}
		if line := taskLine(t); line != last {
			fmt.Fprintln(e.stdout, line)
			last = line
		}
		switch s := aws.ToString(t.Status); s {
		case "COMPLETED":
			return nil
		case "FAILED":
			return fmt.Errorf("the move task failed: %s; what moved is on the queue, the rest is still in the DLQ", aws.ToString(t.FailureReason))
		case "CANCELLED":
			return errors.New("the move task was cancelled; what moved is on the queue, the rest is still in the DLQ")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the move task still runs after %s; it goes on without us (dlq status follows it)", timeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped following; the move task goes on (dlq status, dlq cancel): %w", ctx.Err())
		case <-time.After(e.every):
		}
	}
}

// dlqClient is the SQS client and the DLQ's ARN, for the commands that
// work on the DLQ's move tasks.
func dlqClient(ctx context.Context, e *invocation) (sqsAPI, string, error) {
	if err := e.need("dlq-url"); err != nil {
		return nil, "", err
	}
	c, err := e.clients.sqs(ctx, &e.target)
	if err != nil {
		return nil, "", err
	}
	arn, err := queueARN(ctx, c, e.dlqURL)
	return c, arn, err
}

func dlqStatusFlags(fs *flag.FlagSet) func(context.Context, *invocation, []string) error {
	return func(ctx context.Context, e *invocation, _ []string) error {
		c, dlqARN, err := dlqClient(ctx, e)
		if err != nil {
			return err
		}
		visible, inFlight, err := depth(ctx, c, e.dlqURL)
		if err != nil {
			return err
		}
		res, err := c.ListMessageMoveTasks(ctx, &sqs.ListMessageMoveTasksInput{SourceArn: aws.String(dlqARN), MaxResults: aws.Int32(10)})
		if err != nil {
			return fmt.Errorf("list the move tasks of %s: %w", dlqARN, err)
		}
		fmt.Fprintf(e.stdout, "%s: %d visible, %d in flight; %d recent move tasks\n", dlqARN, visible, inFlight, len(res.Results))
		for i := range res.Results {
			fmt.Fprintln(e.stdout, "  "+taskLine(&res.Results[i]))
		}
		return nil
	}
}

func dlqCancelFlags(fs *flag.FlagSet) func(context.Context, *invocation, []string) error {
	return func(ctx context.Context, e *invocation, _ []string) error {
		c, dlqARN, err := dlqClient(ctx, e)
		if err != nil {
			return err
		}
		t, err := latestTask(ctx, c, dlqARN)
		if err != nil {
			return err
		}
		if t == nil || aws.ToString(t.Status) != "RUNNING" || aws.ToString(t.TaskHandle) == "" {
			line := "none"
			if t != nil {
				line = taskLine(t)
			}
			return fmt.Errorf("no running move task of %s to cancel (latest: %s)", dlqARN, line)
		}
		res, err := c.CancelMessageMoveTask(ctx, &sqs.CancelMessageMoveTaskInput{TaskHandle: t.TaskHandle})
		if err != nil {
			return fmt.Errorf("cancel the move task: %w", err)
		}
		fmt.Fprintf(e.stdout, "cancelling; %d messages were moved\n", res.ApproximateNumberOfMessagesMoved)
		return nil
	}
}
