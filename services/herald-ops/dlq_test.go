package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"herald/services/internal/herald"
)

var dlqEnv = map[string]string{"HERALD_DLQ_URL": testDLQURL, "HERALD_QUEUE_URL": testQueueURL}

func envelope(id string, from string, to ...string) string {
	b, _ := json.Marshal(herald.Envelope{V: 1, ID: id, CreatedAt: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), KeyID: "team-a", From: from, To: to, Subject: "Your invoice for alice@example.org", Text: "secret body"})
	return string(b)
}

func stringAttr(v string) types.MessageAttributeValue {
	return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
}

// threeDeadLetters: one the sender dead-lettered (its attributes), one SQS
// moved after maxReceiveCount (no Herald attributes), one unreadable.
func threeDeadLetters() *fakeSQS {
	return &fakeSQS{dlq: []*fakeMessage{
		{Message: types.Message{MessageId: aws.String("m-1"), Body: aws.String(envelope("n-1", "Billing <billing@example.net>", "alice@example.org", "bob@example.org")),
			MessageAttributes: map[string]types.MessageAttributeValue{
				herald.AttrFailureClass:        stringAttr("permanent"),
				herald.AttrFailureReason:       stringAttr("MessageRejected: Email address is not verified (carol@example.net)"),
				herald.AttrFailureAttempts:     {DataType: aws.String("Number"), StringValue: aws.String("1")},
				herald.AttrFailureFirstAttempt: stringAttr("2026-03-01T09:00:01.250Z"),
			}}},
		{Message: types.Message{MessageId: aws.String("m-2"), Body: aws.String(envelope("n-2", "noreply@example.com", "dave@example.org")),
			Attributes: map[string]string{"ApproximateReceiveCount": "6", "ApproximateFirstReceiveTimestamp": fmt.Sprint(time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC).UnixMilli())}}},
		{Message: types.Message{MessageId: aws.String("m-3"), Body: aws.String("not json"),
			MessageAttributes: map[string]types.MessageAttributeValue{herald.AttrFailureClass: stringAttr("unreadable"), herald.AttrFailureReason: stringAttr("not an envelope")}}},
	}}
}

// dlq list shows each dead letter's class, reason, first attempt and
// attempts, with every address masked as the logs mask them and no subject
// or body; afterwards every peeked message is visible again.
func TestDLQList(t *testing.T) {
	for _, format := range []string{"table", "json"} {
		t.Run(format, func(t *testing.T) {
			f := threeDeadLetters()
			args := []string{"dlq", "list"}
			if format == "json" {
				args = append(args, "-json")
			}
			out, err := runWith(t, &fakeClients{sqsFake: f}, dlqEnv, args...)
			if err != nil {
				t.Fatal(err)
			}
			for _, secret := range []string{"alice@", "bob@", "billing@", "carol@", "dave@", "invoice", "secret body"} {
				if strings.Contains(out, secret) {
					t.Errorf("output shows %q:\n%s", secret, out)
				}
			}
			if format == "table" {
				for _, want := range []string{"b***@example.net", "a***@example.org +1", "c***@example.net", "permanent", "max-receives", "unreadable", "2026-03-01T09:00:01Z", "2026-03-01T08:00:00Z", "3 visible, 0 in flight; showing 3"} {
					if !strings.Contains(out, want) {
						t.Errorf("table lacks %q:\n%s", want, out)
					}
				}
			} else {
				var l dlqListing
				if err := json.Unmarshal([]byte(out), &l); err != nil {
					t.Fatalf("%v:\n%s", err, out)
				}
				if l.Queue != testDLQURL || l.Visible != 3 || len(l.Messages) != 3 {
					t.Fatalf("listing %+v", l)
				}
				want := []deadLetter{
					{MessageID: "m-1", Notification: "n-1", Class: "permanent", Reason: "MessageRejected: Email address is not verified (c***@example.net)",
						FirstAttempt: time.Date(2026, 3, 1, 9, 0, 1, 250e6, time.UTC), Attempts: 1, From: "b***@example.net", To: []string{"a***@example.org", "b***@example.org"}, Recipients: 2},
					{MessageID: "m-2", Notification: "n-2", Class: classMaxReceives, FirstAttempt: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC), Attempts: 5, From: "n***@example.com", To: []string{"d***@example.org"}, Recipients: 1},
					{MessageID: "m-3", Class: "unreadable", Reason: "not an envelope"},
				}
				for i, w := range want {
					g := l.Messages[i]
					if g.MessageID != w.MessageID || g.Notification != w.Notification || g.Class != w.Class || !g.FirstAttempt.Equal(w.FirstAttempt) ||
						g.Attempts != w.Attempts || g.From != w.From || strings.Join(g.To, ",") != strings.Join(w.To, ",") || g.Recipients != w.Recipients {
						t.Errorf("message %d:\n got %+v\nwant %+v", i, g, w)
					}
					if w.Reason != "" && g.Reason != w.Reason {
						t.Errorf("message %d: reason %q, want %q", i, g.Reason, w.Reason)
					}
				}
				if !strings.Contains(l.Messages[1].Reason, "received 5 times") {
					t.Errorf("max-receives reason %q", l.Messages[1].Reason)
				}
			}
			// Released: each received handle made visible again, none hidden.
			if len(f.released) != 3 {
				t.Errorf("released %v, want the 3 peeked handles", f.released)
			}
			for _, m := range f.dlq {
				if m.hidden {
					t.Errorf("%s left hidden", aws.ToString(m.MessageId))
				}
			}
		})
	}
}

// -max bounds the peek; a failed receive still releases what was peeked.
func TestDLQListBoundsAndFailure(t *testing.T) {
	f := threeDeadLetters()
	for range 20 {
		f.dlq = append(f.dlq, &fakeMessage{Message: types.Message{MessageId: aws.String(fmt.Sprintf("x-%d", len(f.dlq))), Body: aws.String("{}")}})
	}
	out, err := runWith(t, &fakeClients{sqsFake: f}, dlqEnv, "dlq", "list", "-max", "12", "-json")
	var l dlqListing
	if err != nil || json.Unmarshal([]byte(out), &l) != nil || len(l.Messages) != 12 || l.Visible != 23 {
		t.Fatalf("-max 12: %v, %d messages of %d", err, len(l.Messages), l.Visible)
	}

	// The first receive works, the second fails.
	f = threeDeadLetters()
	_, err = runWith(t, &fakeClients{sqsFake: &failingAfter{fakeSQS: f, after: 1}}, dlqEnv, "dlq", "list", "-max", "2")
	if err == nil || !strings.Contains(err.Error(), "peek the dead-letter queue") {
		t.Fatalf("receive failure: %v", err)
	}
	for _, m := range f.dlq {
		if m.hidden {
			t.Errorf("%s left hidden after a failed listing", aws.ToString(m.MessageId))
		}
	}

	for _, bad := range [][]string{{"-max", "0"}, {"-max", "1001"}, {"-peek", "0s"}} {
		if _, err := runWith(t, &fakeClients{sqsFake: threeDeadLetters()}, dlqEnv, append([]string{"dlq", "list"}, bad...)...); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// failingAfter receives one message at a time, and fails after some calls.
type failingAfter struct {
	*fakeSQS
	after, calls int
}

func (f *failingAfter) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, o ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	f.calls++
	if f.calls > f.after {
		return nil, errors.New("connection reset")
	}
	in.MaxNumberOfMessages = 1
	return f.fakeSQS.ReceiveMessage(ctx, in, o...)
}

// dlq redrive starts one SQS move task from the DLQ to the queue (named:
// the sender's dead letters have no SQS source), follows it with a line per
// change, and ends with the task: nil when COMPLETED, an error otherwise.
func TestDLQRedrive(t *testing.T) {
	cases := []struct {
		name      string
		args      []string
		before    []types.ListMessageMoveTasksResultEntry   // latest task before the start
		steps     [][]types.ListMessageMoveTasksResultEntry // after the start
		wantStart bool
		wantRate  int32
		wantErr   string
		wantOut   []string
	}{
		{
			name:      "completes",
			args:      []string{"-rate", "7"},
			steps:     [][]types.ListMessageMoveTasksResultEntry{{task("RUNNING", 0, 3)}, {task("RUNNING", 2, 3)}, {task("RUNNING", 2, 3)}, {task("COMPLETED", 3, 3)}},
			wantStart: true, wantRate: 7,
			wantOut: []string{"moving about 3 messages", "RUNNING: 0 of 3 moved (0%)", "RUNNING: 2 of 3 moved (66%)", "COMPLETED: 3 of 3 moved (100%)", "at most 7 a second"},
		},
		{
			name:      "rate left to SQS",
			steps:     [][]types.ListMessageMoveTasksResultEntry{{task("COMPLETED", 3, 3)}},
			wantStart: true,
			wantOut:   []string{"at the rate SQS chooses", "COMPLETED: 3 of 3"},
		},
		{
			name: "fails",
			steps: [][]types.ListMessageMoveTasksResultEntry{{task("RUNNING", 1, 3)}, {func() types.ListMessageMoveTasksResultEntry {
				e := task("FAILED", 1, 3)
				e.FailureReason = aws.String("AWS.SimpleQueueService.NonExistentQueue")
				return e
			}()}},
			wantStart: true, wantErr: "failed: AWS.SimpleQueueService.NonExistentQueue",
		},
		{
			name:      "cancelled by someone",
			steps:     [][]types.ListMessageMoveTasksResultEntry{{task("CANCELLED", 1, 3)}},
			wantStart: true, wantErr: "cancelled",
		},
		{
			name:   "a task already runs",
			before: []types.ListMessageMoveTasksResultEntry{task("RUNNING", 1, 3)},
			steps:  [][]types.ListMessageMoveTasksResultEntry{{task("RUNNING", 1, 3)}}, wantErr: "already RUNNING",
		},
		{
			name:    "dry run",
			args:    []string{"-dry-run", "-rate", "50"},
			before:  []types.ListMessageMoveTasksResultEntry{task("COMPLETED", 9, 9)},
			wantOut: []string{"dry run: would move the 3 visible messages of " + testDLQARN + " to " + testQueueARN + ", at most 50 a second", "last task: COMPLETED: 9 of 9"},
		},
		{name: "rate too high", args: []string{"-rate", "501"}, wantErr: "-rate 501"},
		{name: "rate negative", args: []string{"-rate", "-1"}, wantErr: "-rate -1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := threeDeadLetters()
			f.before, f.tasks = tc.before, tc.steps
			out, err := runWith(t, &fakeClients{sqsFake: f}, dlqEnv, append([]string{"dlq", "redrive", "-every", "1ms"}, tc.args...)...)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q\n%s", err, tc.wantErr, out)
			}
			if got := len(f.starts) == 1; got != tc.wantStart || len(f.starts) > 1 {
				t.Fatalf("%d tasks started, want start %v", len(f.starts), tc.wantStart)
			}
			if tc.wantStart {
				in := f.starts[0]
				if aws.ToString(in.SourceArn) != testDLQARN || aws.ToString(in.DestinationArn) != testQueueARN || aws.ToInt32(in.MaxNumberOfMessagesPerSecond) != tc.wantRate {
					t.Errorf("started source %s destination %s rate %d", aws.ToString(in.SourceArn), aws.ToString(in.DestinationArn), aws.ToInt32(in.MaxNumberOfMessagesPerSecond))
				}
				if tc.wantRate == 0 && in.MaxNumberOfMessagesPerSecond != nil {
					t.Error("a rate was sent where SQS should choose")
				}
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Count(out, "RUNNING: 2 of 3") > 1 {
				t.Errorf("an unchanged progress line printed twice:\n%s", out)
			}
		})
	}
}

// dlq status lists the recent tasks; dlq cancel cancels the running one
// and refuses when none runs.
func TestDLQStatusAndCancel(t *testing.T) {
	f := threeDeadLetters()
	f.before = []types.ListMessageMoveTasksResultEntry{task("RUNNING", 4, 9), task("COMPLETED", 2, 2)}
	out, err := runWith(t, &fakeClients{sqsFake: f}, dlqEnv, "dlq", "status")
	if err != nil || !strings.Contains(out, "2 recent move tasks") || !strings.Contains(out, "RUNNING: 4 of 9") || !strings.Contains(out, "COMPLETED: 2 of 2") {
		t.Fatalf("status: %v\n%s", err, out)
	}
	out, err = runWith(t, &fakeClients{sqsFake: f}, dlqEnv, "dlq", "cancel")
	if err != nil || len(f.cancels) != 1 || f.cancels[0] != "handle-1" || !strings.Contains(out, "4 messages were moved") {
		t.Fatalf("cancel: %v %v\n%s", err, f.cancels, out)
	}
	f.before = []types.ListMessageMoveTasksResultEntry{task("COMPLETED", 2, 2)}
	if _, err := runWith(t, &fakeClients{sqsFake: f}, dlqEnv, "dlq", "cancel"); err == nil || !strings.Contains(err.Error(), "no running move task") || len(f.cancels) != 1 {
		t.Errorf("cancel without a running task: %v, %d cancels", err, len(f.cancels))
	}
}
