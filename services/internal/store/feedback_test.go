package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func testFeedbackID(t *testing.T) string {
	t.Helper()
	ids, _ := NewIDs(bytes.Repeat([]byte("s"), MinSecretBytes))
	id, err := ids.New("svc")
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func bounced(addr string, at time.Time) Recipient {
	return Recipient{Address: addr, Outcome: OutcomeBounced, At: at, Type: "Permanent", SubType: "General", Status: "5.1.1", Diagnostic: "smtp; 550 5.1.1 user unknown"}
}

// recorded is an item as RecordFeedback leaves it, with these recipients.
func recorded(pmid string, rs ...Recipient) map[string]types.AttributeValue {
	it := attrs(attrOwner, "svc", attrProviderID, pmid, attrSentAt, testNow.UnixMilli(), TTLAttribute, testNow.Add(time.Hour).Unix())
	for _, r := range rs {
		it[recipientPrefix+r.Address] = r.value()
	}
	return it
}

// written reads the recipients a write sets, by address.
func written(in *dynamodb.UpdateItemInput) []string {
	var out []string
	for p, name := range in.ExpressionAttributeNames {
		if strings.HasPrefix(p, "#R") {
			v := item(in.ExpressionAttributeValues[":V"+p[2:]].(*types.AttributeValueMemberM).Value)
			out = append(out, strings.TrimPrefix(name, recipientPrefix)+"="+v.str(rOutcome))
		}
	}
	sort.Strings(out)
	return out
}

func TestRecordFeedbackRequest(t *testing.T) {
	id := testFeedbackID(t)
	at := testNow.Add(-time.Minute)
	var got *dynamodb.UpdateItemInput
	db := &fakeDB{update: func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		got = in
		return &dynamodb.UpdateItemOutput{}, nil
	}}
	fb := Feedback{ProviderMessageID: "ses-1", SentAt: at, Recipients: []Recipient{
		{Address: "Bob@Example.ORG", Outcome: OutcomeDelivered, At: testNow, Status: "250"},
		bounced("alice@example.com", testNow),
		// Named twice in one event: the higher outcome is the one written.
		{Address: "alice@example.com", Outcome: OutcomeDelayed, At: testNow},
	}}
	res, err := newTestStore(t, db).RecordFeedback(context.Background(), id, fb)
	if err != nil {
		t.Fatal(err)
	}
	if res.Writes != 1 || len(res.Raised) != 2 || res.OtherSend || res.RecordedMessageID != "ses-1" {
		t.Fatalf("result %+v, want one write raising two recipients", res)
	}
	if w := written(got); fmt.Sprint(w) != "[alice@example.com=bounced bob@example.org=delivered]" {
		t.Errorf("recipients written %v", w)
	}
	upd, cond := deref(got.UpdateExpression), deref(got.ConditionExpression)
	for _, want := range []string{"#pmid = if_not_exists(#pmid, :pmid)", "#sent = if_not_exists(#sent, :sentAt)", "#R0 = :V0", "#R1 = :V1"} {
		if !strings.Contains(upd, want) {
			t.Errorf("update %q lacks %q", upd, want)
		}
	}
	for _, want := range []string{"attribute_exists(#owner)", "#exp > :nowSec", "(attribute_not_exists(#R0) OR #R0.#ORD < :O0)", "(attribute_not_exists(#R1) OR #R1.#ORD < :O1)"} {
		if !strings.Contains(cond, want) {
			t.Errorf("condition %q lacks %q", cond, want)
		}
	}
	// Never the sender's attributes.
	for _, name := range []string{attrStatus, attrLeaseToken, attrLeaseUntil, attrAttempts, attrUpdatedAt, TTLAttribute} {
		if strings.Contains(upd, "#"+name) || strings.Contains(upd, placeholderOf(name)+" =") {
			t.Errorf("update %q writes the sender's %s", upd, name)
		}
	}
	v := item(got.ExpressionAttributeValues)
	if v.str(":pmid") != "ses-1" || v.num(":sentAt") != at.UnixMilli() || v.num(":nowSec") != testNow.Unix() {
		t.Errorf("values %v", got.ExpressionAttributeValues)
	}
	if got.ReturnValues != types.ReturnValueAllOld || got.ReturnValuesOnConditionCheckFailure != types.ReturnValuesOnConditionCheckFailureAllOld {
		t.Errorf("return values %q and %q, want ALL_OLD for both", got.ReturnValues, got.ReturnValuesOnConditionCheckFailure)
	}
}

func placeholderOf(attr string) string {
	for p, name := range attrNames {
		if name == attr {
			return p
		}
	}
	return "#?"
}

func TestRecordFeedbackMerges(t *testing.T) {
	id := testFeedbackID(t)
	alice, bob := "alice@example.com", "bob@example.org"
	complainedAlice := Recipient{Address: alice, Outcome: OutcomeComplained, At: testNow, Type: "abuse"}
	deliveredBob := Recipient{Address: bob, Outcome: OutcomeDelivered, At: testNow}
	cases := []struct {
		name string
		// answers to the writes in turn: the item of a failed condition, or
		// nil for a write that lands.
		answers []map[string]types.AttributeValue
		old     map[string]types.AttributeValue // returned by a write that lands
		event   []Recipient
		writes  []string // recipients of each write
		raised  string
		other   bool
		err     error
	}{
		{name: "both rise", event: []Recipient{bounced(alice, testNow), bounced(bob, testNow)},
			answers: []map[string]types.AttributeValue{nil}, old: recorded("ses-1"),
			writes: []string{"[alice@example.com=bounced bob@example.org=bounced]"}, raised: "alice@example.com bob@example.org"},
		{name: "one already higher: written again without it",
			event:   []Recipient{bounced(alice, testNow), bounced(bob, testNow)},
			answers: []map[string]types.AttributeValue{recorded("ses-1", complainedAlice, deliveredBob), nil},
			writes:  []string{"[alice@example.com=bounced bob@example.org=bounced]", "[bob@example.org=bounced]"}, raised: "bob@example.org"},
		{name: "a repeated event: one failed write, nothing raised",
			event:   []Recipient{deliveredBob},
			answers: []map[string]types.AttributeValue{recorded("ses-1", deliveredBob)},
			writes:  []string{"[bob@example.org=delivered]"}},
		{name: "an older event of the same rank loses to the later one",
			event:   []Recipient{{Address: bob, Outcome: OutcomeDelivered, At: testNow.Add(-time.Second)}},
			answers: []map[string]types.AttributeValue{recorded("ses-1", deliveredBob)},
			writes:  []string{"[bob@example.org=delivered]"}},
		{name: "a send event of another send", event: nil,
			answers: []map[string]types.AttributeValue{nil}, old: recorded("ses-0"),
			writes: []string{"[]"}, other: true},
		{name: "no record", event: []Recipient{deliveredBob}, answers: []map[string]types.AttributeValue{{}},
			writes: []string{"[bob@example.org=delivered]"}, err: ErrNotFound},
		{name: "a record without an owner", event: nil, answers: []map[string]types.AttributeValue{attrs(attrSentAt, 1)},
			writes: []string{"[]"}, err: ErrNotFound},
		{name: "an expired record", event: nil,
			answers: []map[string]types.AttributeValue{attrs(attrOwner, "svc", TTLAttribute, testNow.Unix())},
			writes:  []string{"[]"}, err: ErrNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var writes []string
			db := &fakeDB{update: func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
				n := len(writes)
				writes = append(writes, fmt.Sprint(written(in)))
				if n >= len(tc.answers) {
					t.Fatalf("write %d unexpected: %s", n+1, writes[n])
				}
				if tc.answers[n] != nil {
					return nil, ccf(tc.answers[n])
				}
				return &dynamodb.UpdateItemOutput{Attributes: tc.old}, nil
			}}
			res, err := newTestStore(t, db).RecordFeedback(context.Background(), id, Feedback{ProviderMessageID: "ses-1", SentAt: testNow, Recipients: tc.event})
			if fmt.Sprint(writes) != fmt.Sprint(tc.writes) {
				t.Errorf("writes %v, want %v", writes, tc.writes)
			}
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			var raised []string
			for _, r := range res.Raised {
				raised = append(raised, r.Address)
			}
			if err != nil || strings.Join(raised, " ") != tc.raised || res.OtherSend != tc.other || res.Writes != len(tc.writes) {
				t.Fatalf("result %+v, %v; want raised %q, other send %v, %d writes", res, err, tc.raised, tc.other, len(tc.writes))
			}
		})
	}
}

// Over 25 recipients, the writes take 25 at a time (DynamoDB's 4 KB per
// expression).
func TestRecordFeedbackChunks(t *testing.T) {
	var sizes []int
	db := &fakeDB{update: func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		sizes = append(sizes, len(written(in)))
		if n := len(deref(in.ConditionExpression)); n > 4096 {
			t.Errorf("condition of %d bytes, over DynamoDB's 4 KB", n)
		}
		return &dynamodb.UpdateItemOutput{}, nil
	}}
	var rs []Recipient
	for i := range 60 {
		rs = append(rs, Recipient{Address: fmt.Sprintf("%s%02d@example.com", strings.Repeat("r", 60), i), Outcome: OutcomeDelivered, At: testNow})
	}
	res, err := newTestStore(t, db).RecordFeedback(context.Background(), testFeedbackID(t), Feedback{ProviderMessageID: "ses-1", SentAt: testNow, Recipients: rs})
	if err != nil || fmt.Sprint(sizes) != "[25 25 10]" || len(res.Raised) != 60 {
		t.Fatalf("writes of %v recipients, %d raised, %v; want [25 25 10], 60", sizes, len(res.Raised), err)
	}
}

func TestRecordFeedbackRefusesBadInput(t *testing.T) {
	id := testFeedbackID(t)
	ok := Recipient{Address: "a@example.com", Outcome: OutcomeDelivered, At: testNow}
	with := func(f func(*Feedback)) Feedback {
		fb := Feedback{ProviderMessageID: "ses-1", SentAt: testNow, Recipients: []Recipient{ok}}
		f(&fb)
		return fb
	}
	many := make([]Recipient, MaxFeedbackRecipients+1)
	for i := range many {
		many[i] = ok
	}
	s := newTestStore(t, &fakeDB{})
	for name, tc := range map[string]struct {
		id string
		fb Feedback
	}{
		"bad id":            {strings.ToUpper(id), with(func(*Feedback) {})},
		"no message id":     {id, with(func(f *Feedback) { f.ProviderMessageID = "" })},
		"no send time":      {id, with(func(f *Feedback) { f.SentAt = time.Time{} })},
		"no event time":     {id, with(func(f *Feedback) { f.Recipients[0].At = time.Time{} })},
		"unknown outcome":   {id, with(func(f *Feedback) { f.Recipients[0].Outcome = "opened" })},
		"display name":      {id, with(func(f *Feedback) { f.Recipients[0].Address = "A <a@example.com>" })},
		"no address":        {id, with(func(f *Feedback) { f.Recipients[0].Address = "" })},
		"not an address":    {id, with(func(f *Feedback) { f.Recipients[0].Address = "example.com" })},
		"too many":          {id, with(func(f *Feedback) { f.Recipients = many })},
		"address not UTF-8": {id, with(func(f *Feedback) { f.Recipients[0].Address = "\xff@example.com" })},
	} {
		if _, err := s.RecordFeedback(context.Background(), tc.id, tc.fb); !errors.Is(err, ErrInvalidFeedback) {
			t.Errorf("%s: %v, want ErrInvalidFeedback", name, err)
		}
	}
	if ops := s.db.(*fakeDB).ops(); ops != "" {
		t.Errorf("bad input reached the table: %s", ops)
	}
}

func TestRecordFeedbackCutsDetails(t *testing.T) {
	var got *dynamodb.UpdateItemInput
	db := &fakeDB{update: func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		got = in
		return nil, errThrottled
	}}
	long := strings.Repeat("é", MaxDiagnosticBytes)
	r := bounced("a@example.com", testNow)
	r.Diagnostic, r.SubType = long, strings.Repeat("s", 100)
	_, err := newTestStore(t, db).RecordFeedback(context.Background(), testFeedbackID(t), Feedback{ProviderMessageID: "p", SentAt: testNow, Recipients: []Recipient{r}})
	if !Unavailable(err) {
		t.Fatalf("throttled write: %v, want an error Unavailable recognises", err)
	}
	v := item(got.ExpressionAttributeValues[":V0"].(*types.AttributeValueMemberM).Value)
	if d := v.str(rDiagnostic); len(d) > MaxDiagnosticBytes || !strings.HasPrefix(long, d) || len(v.str(rSubType)) != MaxDetailBytes {
		t.Errorf("diagnostic of %d bytes, subtype of %d; want at most %d and %d", len(d), len(v.str(rSubType)), MaxDiagnosticBytes, MaxDetailBytes)
	}
}

func TestOutcomeOrder(t *testing.T) {
	at := testNow
	delayed := Recipient{Address: "a@x.org", Outcome: OutcomeDelayed, At: at.Add(time.Hour)}
	delivered := Recipient{Address: "a@x.org", Outcome: OutcomeDelivered, At: at}
	later := delivered
	later.At = at.Add(time.Millisecond)
	b1, b2 := bounced("a@x.org", at), bounced("a@x.org", at)
	b2.Diagnostic = "smtp; 550 mailbox gone"
	rejected := Recipient{Address: "a@x.org", Outcome: OutcomeRejected, At: at.Add(time.Second), Type: "Reject"}
	complained := Recipient{Address: "a@x.org", Outcome: OutcomeComplained, At: at.Add(-time.Hour)}
	for _, tc := range []struct {
		name     string
		new, old Recipient
		want     bool
	}{
		{"delivery over a later delay", delivered, delayed, true},
		{"a delay never over a delivery", delayed, delivered, false},
		{"the later of two deliveries", later, delivered, true},
		{"the same event", delivered, delivered, false},
		{"a rejection over an earlier bounce (same rank)", rejected, b1, true},
		{"a complaint over a later rejection", complained, rejected, true},
	} {
		if got := tc.new.Supersedes(tc.old); got != tc.want {
			t.Errorf("%s: Supersedes = %v, want %v", tc.name, got, tc.want)
		}
	}
	// Alike but for the details: exactly one way round.
	if b1.Supersedes(b2) == b2.Supersedes(b1) {
		t.Error("two bounces of one time with other details are not ordered")
	}
	if !b1.PermanentFailure() || !rejected.PermanentFailure() || delivered.PermanentFailure() || complained.PermanentFailure() {
		t.Error("PermanentFailure: want a permanent bounce and a rejection only")
	}
	if Outcome("opened").Rank() != 0 {
		t.Error("an unknown outcome has a rank")
	}
}

func TestGetShowsRecipients(t *testing.T) {
	id := testFeedbackID(t)
	complained := Recipient{Address: "b@example.org", Outcome: OutcomeComplained, At: testNow, Type: "abuse"}
	b := bounced("a@example.com", testNow.Add(time.Second))
	it := recorded("ses-1", complained, b)
	it[attrStatus] = str(string(StateSent))
	db := &fakeDB{get: func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
		return &dynamodb.GetItemOutput{Item: it}, nil
	}}
	st, err := newTestStore(t, db).Get(context.Background(), id, "svc")
	if err != nil {
		t.Fatal(err)
	}
	b.At = b.At.UTC()
	complained.At = complained.At.UTC()
	if want := fmt.Sprint([]Recipient{b, complained}); fmt.Sprint(st.Recipients) != want || st.State != StateSent {
		t.Fatalf("recipients %v (state %s)\nwant       %v", st.Recipients, st.State, want)
	}
}
