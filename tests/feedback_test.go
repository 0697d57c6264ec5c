package tests

// Scenarios of SES feedback (issue 14; services/email-sender/feedback,
// FEEDBACK.md) on the local pipeline: the SES gate plays SES's mailbox
// simulator and suppression list and publishes each send's events, in SNS
// envelopes, to the feedback queue; the sender's feedback consumer records
// them on the notification's status in the state store (dynalite).

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"herald/services/devstack"
	"herald/services/devstack/sesgate"
)

// record is a notification's item in the state store, read as it is (the
// test holds no id secret, so store.Get, which checks the id's tag, is not
// the way in): the sender's status and each recipient's outcome.
type record struct {
	item       map[string]types.AttributeValue
	status     string
	sent       bool
	recipients map[string]map[string]string // address -> outcome, type, subType
}

func (r record) String() string {
	addrs := make([]string, 0, len(r.recipients))
	for a := range r.recipients {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	var parts []string
	for _, a := range addrs {
		x := r.recipients[a]
		parts = append(parts, fmt.Sprintf("%s=%s/%s/%s", a, x["outcome"], x["type"], x["subType"]))
	}
	return fmt.Sprintf("status %s sent %v [%s]", r.status, r.sent, strings.Join(parts, " "))
}

func readRecord(s *devstack.Stack, id string) (record, error) {
	out, err := s.Dynamo().Client().GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName:      aws.String(s.StoreTable()),
		Key:            map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "n#" + id}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return record{}, err
	}
	r := record{item: out.Item, recipients: map[string]map[string]string{}}
	for k, v := range out.Item {
		switch {
		case k == "status":
			r.status = v.(*types.AttributeValueMemberS).Value
		case k == "sentAt":
			r.sent = true
		case strings.HasPrefix(k, "r:"):
			m, _ := v.(*types.AttributeValueMemberM)
			if m == nil {
				continue
			}
			fields := map[string]string{}
			for f, fv := range m.Value {
				if sv, ok := fv.(*types.AttributeValueMemberS); ok {
					fields[f] = sv.Value
				}
			}
			r.recipients[strings.TrimPrefix(k, "r:")] = fields
		}
	}
	return r, nil
}

// outcome is what a recipient's status must show.
type outcome struct{ outcome, typ, subType string }

// apiStatus is the answer of GET /api/notifications/{id}.
type apiStatus struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	Recipients []struct {
		Address, Outcome, Type, SubType string
		Permanent                       bool
	} `json:"recipients"`
}

func (st apiStatus) String() string {
	var parts []string
	for _, r := range st.Recipients {
		parts = append(parts, fmt.Sprintf("%s=%s/%s/%s permanent=%v", r.Address, r.Outcome, r.Type, r.SubType, r.Permanent))
	}
	return fmt.Sprintf("%s [%s]", st.Status, strings.Join(parts, " "))
}

// waitStatus polls the API's GET /api/notifications/{id} until the
// notification is sent and its recipient has the outcome wanted, and
// returns the answer.
func waitStatus(t *testing.T, a *api, id, address string, want outcome) apiStatus {
	t.Helper()
	var st apiStatus
	waitFor(t, time.Minute, fmt.Sprintf("%s of %s", want.outcome, address), func() (bool, string) {
		r, err := a.request(context.Background(), http.MethodGet, "/api/notifications/"+id, map[string]string{"Authorization": "Bearer " + a.key}, nil)
		if err != nil || r.Status != http.StatusOK {
			return false, fmt.Sprintf("%v %s", err, r)
		}
		st = apiStatus{}
		if err := json.Unmarshal(r.Body, &st); err != nil {
			return false, err.Error()
		}
		for _, x := range st.Recipients {
			if x.Address == address && st.Status == "sent" && x.Outcome == want.outcome && x.Type == want.typ && x.SubType == want.subType {
				// SES will not deliver it: a bounce (Permanent) or a rejection.
				if x.Permanent != (want.outcome == "bounced" && want.typ == "Permanent") {
					t.Fatalf("%s: permanent %v for %+v", id, x.Permanent, want)
				}
				return true, st.String()
			}
		}
		return false, st.String()
	})
	return st
}

// postTo posts one notification to one address and returns its id.
func postTo(t *testing.T, a *api, l *ledger, i int, to string) (id, subject string) {
	t.Helper()
	n := notification{To: []string{to}, Subject: l.subject(i), Text: "x"}
	return postOne(t, a, l, n, false), n.Subject
}

// Mail to each of SES's mailbox simulator addresses reaches the status SES
// would give it, as the API's GET /api/notifications/{id} shows it; then a hard bounce from a real mailbox puts the address on
// the account's suppression list, and a second send to it is accepted by
// SES, not delivered, and recorded as a permanent failure
// (OnAccountSuppressionList).
func TestFeedbackStatuses(t *testing.T) {
	const gone = "gone@bounces.example.org"
	s := startStack(t, devstack.Config{Mailboxes: map[string]sesgate.Mailbox{gone: sesgate.MailboxBounce}})
	a := newAPI(s)
	l := newLedger("feedback")
	start := time.Now()
	cases := []struct {
		local string
		want  outcome
	}{
		{"success", outcome{"delivered", "", ""}},
		{"bounce", outcome{"bounced", "Permanent", "General"}},
		{"complaint", outcome{"complained", "abuse", ""}},
		{"suppressionlist", outcome{"bounced", "Permanent", "Suppressed"}},
		{"ooto", outcome{"delivered", "", ""}},
	}
	ids := make([]string, len(cases))
	for i, c := range cases {
		ids[i], _ = postTo(t, a, l, i, c.local+"@"+sesgate.SimulatorDomain)
	}
	var seen []string
	for i, c := range cases {
		addr := c.local + "@" + sesgate.SimulatorDomain
		st := waitStatus(t, a, ids[i], addr, c.want)
		seen = append(seen, fmt.Sprintf("%s=%s", c.local, st.Recipients[0].Outcome))
	}
	simulated := time.Since(start)

	// A real mailbox that bounces: the address goes on the suppression list.
	first, _ := postTo(t, a, l, len(cases), gone)
	waitStatus(t, a, first, gone, outcome{"bounced", "Permanent", "General"})
	second, subject := postTo(t, a, l, len(cases)+1, gone)
	r := waitStatus(t, a, second, gone, outcome{"bounced", "Permanent", "OnAccountSuppressionList"})
	var notSent []string
	for _, x := range s.Gate().Sends() {
		if x.Subject == subject {
			notSent = append(notSent, x.NotSent...)
		}
	}
	if len(notSent) != 1 || notSent[0] != gone {
		t.Errorf("the gate's record of the second send: not sent to %v, want [%s]", notSent, gone)
	}
	mails, err := s.Emails(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mails {
		if m.Subject == subject {
			t.Errorf("the send to the suppressed address reached the SES emulator: %+v", m)
		}
	}
	l.waitAllDelivered(t, s, time.Minute)
	waitDrained(t, s, 30*time.Second)
	// The last metrics are written at exit.
	if err := s.Stop(devstack.Sender); err != nil {
		t.Fatal(err)
	}
	m := senderMetrics(t, s)
	l.report(t, s, "SES feedback", start, 0, fmt.Sprintf("simulator %s in %s; bounce then resend: %s; FeedbackEvents %g, Bounced.Permanent %g, Complained %g, Delivered %g",
		strings.Join(seen, " "), simulated.Round(time.Millisecond), r.String(), m["FeedbackEvents"], m["Bounced.Permanent"], m["Complained"], m["Delivered"]))
	// Each outcome counted once per recipient it raised: bounce@,
	// suppressionlist@ and the bouncing mailbox twice; complaint@; success@,
	// ooto@, and complaint@ when its Delivery was applied before its
	// Complaint (SQS keeps no order, and a batch's events are applied at
	// once: a delivery after the complaint raises nothing and is not
	// counted). Every event at least once: 15 (Send for each of 7, Delivery
	// x3, Bounce x4, Complaint).
	if m["Bounced.Permanent"] != 4 || m["Complained"] != 1 || m["Delivered"] < 2 || m["Delivered"] > 3 || m["FeedbackEvents"] < 15 {
		t.Errorf("Bounced.Permanent %g (want 4), Complained %g (1), Delivered %g (2 or 3), FeedbackEvents %g (at least 15)",
			m["Bounced.Permanent"], m["Complained"], m["Delivered"], m["FeedbackEvents"])
	}
	if fb, err := s.QueueDepth(context.Background(), s.FeedbackDLQURL()); err != nil || fb.Total() != 0 {
		t.Errorf("feedback DLQ %+v, %v: every event here is applicable", fb, err)
	}
}

// The events of one send taken off the feedback queue and put back, first
// in order, then reversed and each twice: the notification's record after
// the second pass is the record after the first, attribute for attribute
// (a recipient's outcome only rises, to the same maximum in any order, and
// a repeat changes nothing). The sender is stopped while the test holds the
// events, and the test makes that one send as the sender does
// (devstack.SendAsSender: claim, the transport's request through the SES
// gate, MarkSent): a sender running would take the events before the test
// could.
func TestFeedbackEventsTwiceAndReordered(t *testing.T) {
	s := startStack(t, devstack.Config{})
	ctx := context.Background()
	start := time.Now()
	if err := s.Stop(devstack.Sender); err != nil {
		t.Fatal(err)
	}
	const to = "complaint@" + sesgate.SimulatorDomain
	id, err := s.SendAsSender(ctx, "feedback-replay "+runID(), to)
	if err != nil {
		t.Fatal(err)
	}

	// Send, Delivery, Complaint: the events of the send, off the queue.
	q := s.SQSClient()
	var events []string
	waitFor(t, 30*time.Second, "the send's three events on the feedback queue", func() (bool, string) {
		got, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(s.FeedbackURL()), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			return false, err.Error()
		}
		for _, m := range got.Messages {
			events = append(events, aws.ToString(m.Body))
			if _, err := q.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(s.FeedbackURL()), ReceiptHandle: m.ReceiptHandle}); err != nil {
				return false, err.Error()
			}
		}
		return len(events) >= 3, fmt.Sprintf("%d events", len(events))
	})
	if len(events) != 3 {
		t.Fatalf("%d events, want Send, Delivery and Complaint", len(events))
	}
	// SQS does not keep order; the gate sent them in order, one at a time.
	sort.SliceStable(events, func(i, j int) bool { return eventRank(events[i]) < eventRank(events[j]) })

	apply := func(bodies []string) record {
		t.Helper()
		var entries []sqstypes.SendMessageBatchRequestEntry
		for i, b := range bodies {
			entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), MessageBody: aws.String(b)})
		}
		if out, err := q.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(s.FeedbackURL()), Entries: entries}); err != nil || len(out.Failed) > 0 {
			t.Fatalf("put the events back: %v %+v", err, out)
		}
		if err := s.Restart(ctx, devstack.Sender); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "the events applied (feedback queue empty)", func() (bool, string) {
			d, err := s.QueueDepth(ctx, s.FeedbackURL())
			return err == nil && d.Total() == 0, fmt.Sprintf("%+v %v", d, err)
		})
		if err := s.Stop(devstack.Sender); err != nil {
			t.Fatal(err)
		}
		r, err := readRecord(s, id)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	inOrder := apply(events)
	if got := inOrder.recipients[to]; got["outcome"] != "complained" || !inOrder.sent {
		t.Fatalf("in order: %s, want complained", inOrder)
	}
	var replay []string
	for i := len(events) - 1; i >= 0; i-- {
		replay = append(replay, events[i], events[i])
	}
	again := apply(replay)
	if !reflect.DeepEqual(inOrder.item, again.item) {
		t.Errorf("the record changed with the events reversed and twice:\nin order: %v\nagain:    %v", inOrder.item, again.item)
	}
	if d, err := s.QueueDepth(ctx, s.FeedbackDLQURL()); err != nil || d.Total() != 0 {
		t.Errorf("feedback DLQ %+v, %v", d, err)
	}
	m := senderMetrics(t, s)
	t.Logf("FIGURES SES feedback replay: 3 events applied in order, then 6 (reversed, each twice): record unchanged %v (%s); FeedbackEvents %g, Complained %g (counted once), Delivered %g, elapsed %s",
		reflect.DeepEqual(inOrder.item, again.item), again, m["FeedbackEvents"], m["Complained"], m["Delivered"], time.Since(start).Round(time.Millisecond))
	if m["Complained"] != 1 || m["FeedbackEvents"] != 9 {
		t.Errorf("Complained %g, FeedbackEvents %g: want the complaint counted once, 9 events processed", m["Complained"], m["FeedbackEvents"])
	}
}

// eventRank orders an SNS envelope's SES event as SES sends them.
func eventRank(body string) int {
	for i, typ := range []string{`\"eventType\":\"Send\"`, `\"eventType\":\"Delivery\"`, `\"eventType\":\"Complaint\"`} {
		if strings.Contains(body, typ) {
			return i
		}
	}
	return 99
}
