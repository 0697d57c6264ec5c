package feedback_test

// The feedback loop on the local emulators, in this process: a send as the
// sender makes it (claimed in the store, SendEmail with the notification
// tag, MarkSent) through the SES gate, which plays SES's mailbox simulator
// and publishes the events in their SNS envelope to a feedback queue in the
// SQS emulator (goaws); the consumer and processor apply them to the store
// on dynalite. The emulator behind the gate is a stand-in that accepts
// every send: what SES does after accepting is the gate's.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"herald/services/contract"
	"herald/services/devstack/dynamolocal"
	"herald/services/devstack/sesgate"
	"herald/services/devstack/sqslocal"
	"herald/services/email-sender/feedback"
	"herald/services/email-sender/feedback/sestag"
	"herald/services/email-sender/transport"
	"herald/services/internal/herald"
	"herald/services/internal/store"
)

const (
	configSet = "herald"
	topicARN  = "arn:aws:sns:us-east-1:" + sqslocal.AccountID + ":herald-feedback"
	scope     = "svc"
)

type pipeline struct {
	sqs     *sqs.Client
	queue   string
	dlq     string
	gate    *sesgate.Server
	ses     *sesv2.Client
	store   *store.Store
	ids     *store.IDs
	stopped chan struct{}
	stop    context.CancelFunc
}

func startPipeline(t *testing.T) *pipeline {
	t.Helper()
	q, err := sqslocal.Start(sqslocal.Config{Queues: []sqslocal.Queue{
		{Name: "herald-feedback", VisibilityTimeout: 30, DeadLetter: "herald-feedback-dlq", MaxReceiveCount: 5},
		{Name: "herald-feedback-dlq"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })

	root, _ := filepath.Abs("../../..")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dyn, err := dynamolocal.Start(ctx, dynamolocal.Config{Root: root})
	if errors.Is(err, dynamolocal.ErrNotInstalled) {
		t.Skipf("skipped: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dyn.Close() })
	if err := dyn.CreateTable(ctx, dynamolocal.Table{Name: "herald-state", PartitionKey: store.KeyAttribute, TTLAttribute: store.TTLAttribute}); err != nil {
		t.Fatal(err)
	}
	ids, err := store.NewIDs([]byte(strings.Repeat("s", store.MinSecretBytes)))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.New(dyn.Client(), store.Config{Table: "herald-state", IdempotencyTTL: 24 * time.Hour, StatusTTL: 18 * 24 * time.Hour, IDs: ids, Clock: time.Now})
	if err != nil {
		t.Fatal(err)
	}

	// The SES emulator's stand-in: every send accepted.
	var n atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"MessageId":"local-%d"}`, n.Add(1))
	}))
	t.Cleanup(up.Close)
	gate, err := sesgate.Start("127.0.0.1:0", sesgate.Config{
		Upstream: up.URL, MaxSendRate: 1000, Verified: []string{"example.com"},
		SuppressedReasons: []string{sesgate.ReasonBounce, sesgate.ReasonComplaint},
		ConfigurationSets: []sesgate.ConfigurationSet{{Name: configSet, Events: &sesgate.EventDestination{
			EventTypes: contract.SESEventTypes(), TopicARN: topicARN, SQSEndpoint: q.Endpoint, QueueURL: q.QueueURL("herald-feedback"),
		}}},
		Mailboxes: map[string]sesgate.Mailbox{"gone@example.org": sesgate.MailboxBounce},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gate.Close() })

	creds := credentials.NewStaticCredentialsProvider("local", "local", "")
	return &pipeline{
		sqs:   sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(q.Endpoint), Credentials: creds}),
		queue: q.QueueURL("herald-feedback"), dlq: q.QueueURL("herald-feedback-dlq"),
		gate:  gate,
		ses:   sesv2.New(sesv2.Options{Region: "us-east-1", BaseEndpoint: aws.String(gate.URL), Credentials: creds}),
		store: st, ids: ids,
	}
}

// startConsumer runs the feedback consumer until the test ends.
func (p *pipeline) startConsumer(t *testing.T) {
	t.Helper()
	proc, err := feedback.NewProcessor(p.store, feedback.ProcessorConfig{TopicARN: topicARN, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := feedback.NewConsumer(feedback.ConsumerConfig{
		QueueURL: p.queue, DeadLetterURL: p.dlq, Pollers: 2, WaitTime: time.Second, Visibility: 30 * time.Second,
		ProcessTimeout: 5 * time.Second, RetryBase: 100 * time.Millisecond, RetryMax: time.Second,
	}, p.sqs, proc, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.stop, p.stopped = cancel, make(chan struct{})
	go func() {
		defer close(p.stopped)
		c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.stopped
	})
}

// send sends one notification as the sender does, tagged as the wiring
// step's transport will tag it, and returns its id.
func (p *pipeline) send(t *testing.T, to ...string) string {
	t.Helper()
	ctx := context.Background()
	id, err := p.ids.New(scope)
	if err != nil {
		t.Fatal(err)
	}
	claim, err := p.store.Claim(ctx, id, scope, time.Minute)
	if err != nil || claim.Outcome != store.Claimed {
		t.Fatalf("claim: %+v, %v", claim, err)
	}
	env := &herald.Envelope{ID: id, KeyID: scope, From: "Herald <noreply@example.com>", To: to, Subject: "Your receipt", Text: "Thanks.",
		Metadata: map[string]string{"team": "billing"}}
	in := transport.SendEmailInput(env, configSet)
	in.EmailTags = sestag.WithNotificationTag(in.EmailTags, env.ID) // the transport's line (FEEDBACK.md)
	out, err := p.ses.SendEmail(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.store.MarkSent(ctx, claim.Lease, aws.ToString(out.MessageId), time.Now()); err != nil {
		t.Fatal(err)
	}
	return id
}

// outcomes polls the notification's status until each recipient has the
// outcome wanted (within 30 s) and returns it.
func (p *pipeline) outcomes(t *testing.T, id string, want map[string]store.Outcome) store.Status {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := p.store.Get(context.Background(), id, scope)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]store.Outcome{}
		for _, r := range st.Recipients {
			got[r.Address] = r.Outcome
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("notification %s: outcomes %v after 30 s, want %v", id, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// drain receives every message of queue (waiting for n) and deletes them.
func (p *pipeline) drain(t *testing.T, queue string, n int) []types.Message {
	t.Helper()
	var got []types.Message
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d messages on %s after 30 s, want %d", len(got), queue, n)
		}
		out, err := p.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(queue), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			if _, err := p.sqs.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(queue), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
		got = append(got, out.Messages...)
	}
	return got
}

func TestFeedbackLoopOnEmulators(t *testing.T) {
	if testing.Short() {
		t.Skip("starts goaws and dynalite")
	}
	p := startPipeline(t)
	simulator := func(local string) string { return local + "@" + sesgate.SimulatorDomain }
	all := []string{simulator("success"), simulator("bounce"), simulator("ooto"), simulator("complaint"), simulator("suppressionlist")}
	want := map[string]store.Outcome{
		simulator("success"): store.OutcomeDelivered, simulator("bounce"): store.OutcomeBounced, simulator("ooto"): store.OutcomeDelivered,
		simulator("complaint"): store.OutcomeComplained, simulator("suppressionlist"): store.OutcomeBounced,
	}

	// Given the events of one send to every simulator address, taken off
	// the queue before any consumer ran, when they are put back in reverse
	// order and then again (every event twice), then the outcomes are those
	// of the events in their order.
	first := p.send(t, all...)
	// Send, Delivery (success, ooto, complaint), a Bounce of each kind
	// (bounce@, suppressionlist@), Complaint.
	events := p.drain(t, p.queue, 5)
	for round := range 2 {
		for i := len(events) - 1; i >= 0; i-- {
			if _, err := p.sqs.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(p.queue), MessageBody: events[i].Body}); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	p.startConsumer(t)
	st := p.outcomes(t, first, want)
	for _, r := range st.Recipients {
		switch r.Address {
		case simulator("bounce"):
			if r.Type != "Permanent" || r.SubType != "General" || r.Status != "5.1.1" || r.Diagnostic != "smtp; 550 5.1.1 user unknown" {
				t.Errorf("bounce@: %+v", r)
			}
		case simulator("suppressionlist"):
			if !r.PermanentFailure() || r.SubType != "Suppressed" {
				t.Errorf("suppressionlist@: %+v", r)
			}
		case simulator("complaint"):
			if r.Type != "abuse" {
				t.Errorf("complaint@: %+v", r)
			}
		}
	}
	if st.State != store.StateSent || st.ProviderMessageID == "" {
		t.Errorf("status %+v, want sent", st)
	}
	t.Run("each simulator address alone", func(t *testing.T) {
		for _, addr := range all {
			id := p.send(t, addr)
			p.outcomes(t, id, map[string]store.Outcome{addr: want[addr]})
		}
		if r := p.gate.AutoReplies(); len(r) != 2 { // ooto@, in both sends
			t.Errorf("automatic replies %+v, want 2", r)
		}
	})
	t.Run("a bounce, then a send to the suppressed address", func(t *testing.T) {
		bounced := p.send(t, "gone@example.org")
		st := p.outcomes(t, bounced, map[string]store.Outcome{"gone@example.org": store.OutcomeBounced})
		if st.Recipients[0].SubType != "General" {
			t.Fatalf("first send: %+v", st.Recipients[0])
		}
		again := p.send(t, "gone@example.org")
		st = p.outcomes(t, again, map[string]store.Outcome{"gone@example.org": store.OutcomeBounced})
		r := st.Recipients[0]
		if !r.PermanentFailure() || r.SubType != "OnAccountSuppressionList" || !strings.Contains(r.Diagnostic, "suppression list for your account") {
			t.Fatalf("second send: %+v, want a permanent failure for the suppression list", r)
		}
		sends := p.gate.Sends()
		last := sends[len(sends)-1]
		if last.MessageID != st.ProviderMessageID || fmt.Sprint(last.NotSent) != "[gone@example.org]" {
			t.Fatalf("the gate's record of the second send %+v: want it not sent", last)
		}
	})
	t.Run("events the processor cannot apply go to the DLQ with the reason", func(t *testing.T) {
		ctx := context.Background()
		// An id never claimed, and a send without the tag.
		unknown, _ := p.ids.New(scope)
		in := transport.SendEmailInput(&herald.Envelope{From: "noreply@example.com", To: []string{"a@example.com"}, Subject: "s", Text: "t"}, configSet)
		in.EmailTags = sestag.WithNotificationTag(nil, unknown)
		if _, err := p.ses.SendEmail(ctx, in); err != nil {
			t.Fatal(err)
		}
		in.EmailTags = nil
		if _, err := p.ses.SendEmail(ctx, in); err != nil {
			t.Fatal(err)
		}
		dead := p.drain(t, p.dlq, 4) // Send and Delivery of each
		kinds := map[string]int{}
		for _, m := range dead {
			kind := aws.ToString(m.MessageAttributes[herald.AttrFailureClass].StringValue)
			kinds[kind]++
			if aws.ToString(m.MessageAttributes[herald.AttrFailureReason].StringValue) == "" {
				t.Errorf("a dead letter without its reason: %v", m.MessageAttributes)
			}
			if _, err := feedback.Parse([]byte(aws.ToString(m.Body)), topicARN); kind == feedback.KindUnknown && err != nil {
				t.Errorf("the dead letter is not the event as it came: %v", err)
			}
		}
		if kinds[feedback.KindUnknown] != 2 || kinds[feedback.KindUntagged] != 2 {
			t.Fatalf("dead letters by kind %v, want 2 unknown-notification and 2 untagged", kinds)
		}
	})
	if st := p.gate.Stats(); st.EventErrors != 0 {
		t.Errorf("gate stats %+v: events not published", st)
	}
}
