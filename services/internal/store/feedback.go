package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// SES feedback (issue 14): what became of a notification for each of its
// recipients, from SES's events. The feedback processor writes attributes of
// its own on the sender's n# item, never the sender's (status, lease,
// attempts), so the two never overwrite each other:
//
//   - sent evidence: providerMessageId and sentAt, each only when absent
//     (any SES event proves that SES accepted the mail, so the next Claim
//     finds it sent: this closes the duplicate window of DESIGN.md as soon
//     as the first event lands);
//   - one top-level attribute per recipient, "r:<address in lower case>", a
//     map (one update cannot create a map and set a key inside it, so each
//     recipient is its own attribute).
//
// A recipient's outcome only moves up a fixed order, and the event's time
// breaks ties, then a digest of the details: the recorded outcome is the
// maximum over every event, the same whatever their order, and a repeated
// event changes nothing. Each write carries, per recipient, the condition
// that its outcome rises; a failed condition returns the item, and the
// write is tried again with the recipients that still rise.

// Outcome is what became of a notification for one recipient.
type Outcome string

// The outcomes, in their order (Rank): a recipient's outcome only rises.
const (
	// OutcomeDelayed: SES could not deliver yet and keeps trying
	// (a DeliveryDelay event).
	OutcomeDelayed Outcome = "delayed"
	// OutcomeDelivered: the recipient's mail server accepted the mail.
	OutcomeDelivered Outcome = "delivered"
	// OutcomeBounced: a bounce (Type: Permanent, Transient or Undetermined,
	// as SES says), including SES's refusal to send to an address on the
	// account's suppression list (SubType OnAccountSuppressionList).
	OutcomeBounced Outcome = "bounced"
	// OutcomeRejected: SES accepted the send and then refused it (Type
	// "Reject": a virus; "RenderingFailure": a template that did not render).
	OutcomeRejected Outcome = "rejected"
	// OutcomeComplained: the recipient marked the mail as spam (or SES
	// refused to send to an address suppressed after a complaint).
	OutcomeComplained Outcome = "complained"
)

// Rank is the outcome's place in the order; 0 for an unknown outcome.
// Delivery beats a delay, a bounce or rejection beats a delivery (a server
// may accept and bounce later), a complaint beats everything: it comes
// after the delivery and it is what the sender must act on.
func (o Outcome) Rank() int {
	switch o {
	case OutcomeDelayed:
		return 1
	case OutcomeDelivered:
		return 2
	case OutcomeBounced, OutcomeRejected:
		return 3
	case OutcomeComplained:
		return 4
	}
	return 0
}

// Limits of the feedback values.
const (
	// MaxDiagnosticBytes bounds a recipient's diagnostic (longer ones are
	// cut at a rune boundary): it keeps an item of a 50-recipient mail under
	// 20 KB.
	MaxDiagnosticBytes = 256
	// MaxDetailBytes bounds a type, subtype or status (longer ones are cut).
	MaxDetailBytes = 64
	// MaxAddressBytes bounds a recipient's address (RFC 5321's path).
	MaxAddressBytes = 254
	// MaxFeedbackRecipients bounds the recipients of one event (SES sends to
	// at most 50 per message).
	MaxFeedbackRecipients = 100
	// recipientsPerWrite keeps each write's expressions far below
	// DynamoDB's 4 KB per expression.
	recipientsPerWrite = 25
)

// recipientPrefix starts the attribute of each recipient's outcome.
const recipientPrefix = "r:"

// Keys of a recipient's map.
const (
	rOutcome    = "outcome"
	rOrder      = "ord" // rank, time and digest, as one string that sorts in their order
	rAt         = "at"  // epoch ms of the event
	rType       = "type"
	rSubType    = "subType"
	rStatus     = "status"
	rDiagnostic = "diagnostic"
)

// Recipient is one recipient's outcome.
type Recipient struct {
	// Address is the recipient's address, bare and in lower case.
	Address string
	Outcome Outcome
	// At is the event's time, to the millisecond.
	At time.Time
	// Type and SubType: a bounce's bounceType and bounceSubType; a
	// complaint's feedback type (abuse ...) and subtype; a delay's
	// delayType; a rejection's kind ("Reject" or "RenderingFailure").
	Type, SubType string
	// Status is the SMTP enhanced status code (5.1.1), when the event has one.
	Status string
	// Diagnostic is the diagnostic code, the reject reason or the rendering
	// error, cut to MaxDiagnosticBytes.
	Diagnostic string
}

// PermanentFailure reports whether the mail will not reach this recipient:
// a permanent bounce (suppressed addresses included) or a rejection.
func (r Recipient) PermanentFailure() bool {
	return r.Outcome == OutcomeRejected || r.Outcome == OutcomeBounced && r.Type == "Permanent"
}

// Feedback is what one SES event says of a notification.
type Feedback struct {
	// ProviderMessageID is SES's message id (the event's mail.messageId)
	// and SentAt when SES accepted the mail (mail.timestamp): sent evidence.
	ProviderMessageID string
	SentAt            time.Time
	// Recipients are the outcomes the event reports; none for a Send event.
	Recipients []Recipient
}

// FeedbackResult is RecordFeedback's result.
type FeedbackResult struct {
	// Raised are the recipients whose outcome this event raised, as
	// recorded; the others already had this outcome or a higher one.
	Raised []Recipient
	// OtherSend: the record names another provider message than the
	// event's: the notification was sent more than once (the duplicate
	// window of DESIGN.md). RecordedMessageID is the record's.
	OtherSend         bool
	RecordedMessageID string
	// Writes is how many UpdateItem requests it took.
	Writes int
}

// ErrInvalidFeedback: RecordFeedback refused its input (a bad id, address,
// outcome or time); trying again cannot help.
var ErrInvalidFeedback = errors.New("store: invalid feedback")

// RecordFeedback applies one SES event to notification id: the sent evidence
// and each recipient's outcome where it rises. It never creates a record:
// ErrNotFound when the notification has none (or it expired), since every
// send is claimed, and so recorded, before SES sees it. One UpdateItem per
// 25 recipients; one more when some recipient already had this outcome or a
// higher one (a repeated or older event, or a race lost to another event).
func (s *Store) RecordFeedback(ctx context.Context, id string, fb Feedback) (FeedbackResult, error) {
	if _, ok := parse(id); !ok {
		return FeedbackResult{}, fmt.Errorf("%w: notification id %q is not a UUIDv7 or v8 in lowercase", ErrInvalidFeedback, id)
	}
	pending, err := checkFeedback(fb)
	if err != nil {
		return FeedbackResult{}, fmt.Errorf("%w for %s: %w", ErrInvalidFeedback, id, err)
	}
	var res FeedbackResult
	noteSend := func(old item) {
		if rec := old.str(attrProviderID); rec != "" {
			res.RecordedMessageID = rec
			res.OtherSend = rec != fb.ProviderMessageID
		} else if res.RecordedMessageID == "" {
			res.RecordedMessageID = fb.ProviderMessageID
		}
	}
	// Each failed write drops at least one recipient (the condition failed
	// because one no longer rises), so this ends within one write per chunk
	// plus one per recipient.
	for first := true; first || len(pending) > 0; first = false {
		chunk := pending[:min(len(pending), recipientsPerWrite)]
		out, err := s.writeFeedback(ctx, id, fb, chunk)
		res.Writes++
		if err == nil {
			noteSend(item(out.Attributes))
			res.Raised = append(res.Raised, chunk...)
			pending = pending[len(chunk):]
			continue
		}
		old, failed := conditionFailed(err)
		if !failed {
			return res, fmt.Errorf("store: feedback for %s: %w", id, err)
		}
		if len(old) == 0 || !old.has(attrOwner) || old.num(TTLAttribute) <= s.cfg.Clock().Unix() {
			return res, fmt.Errorf("feedback for %s: %w", id, ErrNotFound)
		}
		noteSend(old)
		rising := chunk[:0:0]
		for _, r := range chunk {
			if r.order() > recordedOrder(old, r.Address) {
				rising = append(rising, r)
			}
		}
		if len(rising) == len(chunk) {
			return res, fmt.Errorf("store: feedback for %s: the condition failed on a record where every recipient rises", id)
		}
		// The others were at this outcome or higher already: a repeated or
		// older event, or another event that won a race.
		pending = append(rising, pending[len(chunk):]...)
	}
	return res, nil
}

// writeFeedback is one conditional UpdateItem: the sent evidence, and the
// recipients of chunk on the condition that each one rises.
func (s *Store) writeFeedback(ctx context.Context, id string, fb Feedback, chunk []Recipient) (*dynamodb.UpdateItemOutput, error) {
	update := []string{"#pmid = if_not_exists(#pmid, :pmid)", "#sent = if_not_exists(#sent, :sentAt)"}
	cond := []string{"attribute_exists(#owner)", "#exp > :nowSec"}
	extra := map[string]string{}
	values := map[string]types.AttributeValue{
		":pmid": str(fb.ProviderMessageID), ":sentAt": num(fb.SentAt.UnixMilli()),
		":nowSec": num(s.cfg.Clock().Unix()),
	}
	if len(chunk) > 0 {
		extra["#ORD"] = rOrder
	}
	for i, r := range chunk {
		n := strconv.Itoa(i)
		extra["#R"+n] = recipientPrefix + r.Address
		values[":V"+n] = r.value()
		values[":O"+n] = str(r.order())
		update = append(update, "#R"+n+" = :V"+n)
		cond = append(cond, "(attribute_not_exists(#R"+n+") OR #R"+n+".#ORD < :O"+n+")")
	}
	return s.updateNamed(ctx, notificationPK(id), "SET "+strings.Join(update, ", "), strings.Join(cond, " AND "), extra, values, true)
}

// checkFeedback checks fb and returns its recipients in canonical form,
// one per address (the highest when an event names an address twice).
func checkFeedback(fb Feedback) ([]Recipient, error) {
	if err := checkText("provider message id", fb.ProviderMessageID, MaxProviderIDBytes); err != nil {
		return nil, err
	}
	if err := checkTime("the send time", fb.SentAt); err != nil {
		return nil, err
	}
	if len(fb.Recipients) > MaxFeedbackRecipients {
		return nil, fmt.Errorf("%d recipients, over %d", len(fb.Recipients), MaxFeedbackRecipients)
	}
	byAddr := map[string]Recipient{}
	for _, r := range fb.Recipients {
		// Checked before lowering: ToLower would turn invalid bytes into U+FFFD.
		if err := checkText("recipient address", r.Address, MaxAddressBytes); err != nil {
			return nil, err
		}
		r.Address = strings.ToLower(strings.TrimSpace(r.Address))
		if strings.Count(r.Address, "@") != 1 || strings.ContainsAny(r.Address, " <>\"") {
			return nil, fmt.Errorf("recipient address %q is not a bare address", r.Address)
		}
		if r.Outcome.Rank() == 0 {
			return nil, fmt.Errorf("recipient %s: unknown outcome %q", r.Address, r.Outcome)
		}
		if err := checkTime("recipient "+r.Address+": the event time", r.At); err != nil {
			return nil, err
		}
		r.At = time.UnixMilli(r.At.UnixMilli()).UTC()
		r.Type, r.SubType, r.Status = truncate(r.Type, MaxDetailBytes), truncate(r.SubType, MaxDetailBytes), truncate(r.Status, MaxDetailBytes)
		r.Diagnostic = truncate(r.Diagnostic, MaxDiagnosticBytes)
		if prev, ok := byAddr[r.Address]; !ok || r.order() > prev.order() {
			byAddr[r.Address] = r
		}
	}
	out := make([]Recipient, 0, len(byAddr))
	for _, r := range byAddr {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out, nil
}

// checkTime refuses a zero time or one outside 2000 to 2286 (the order
// string holds 13 digits of milliseconds).
func checkTime(what string, t time.Time) error {
	if ms := t.UnixMilli(); ms < 946684800000 || ms > 9999999999999 {
		return fmt.Errorf("%s %s is not a plausible event time", what, t.Format(time.RFC3339Nano))
	}
	return nil
}

// Supersedes reports whether r replaces old as the recorded outcome of its
// recipient: a higher rank, or the same rank and a later event, or the same
// rank and time and the greater digest of the details (so that even events
// alike but for their details end the same in any order). RecordFeedback
// applies this rule in DynamoDB's conditions.
func (r Recipient) Supersedes(old Recipient) bool { return r.order() > old.order() }

// order is the recipient's place in the order as one string that sorts as
// (rank, time, digest of the details): fixed widths, so DynamoDB's byte
// comparison of strings and Go's agree with the tuple's order.
func (r Recipient) order() string {
	sum := sha256.Sum256([]byte(strings.Join([]string{string(r.Outcome), r.Type, r.SubType, r.Status, r.Diagnostic}, "\x00")))
	return fmt.Sprintf("%d/%013d/%s", r.Outcome.Rank(), r.At.UnixMilli(), hex.EncodeToString(sum[:8]))
}

// recordedOrder is the order of the outcome recorded for address; "" (below
// every order) when there is none.
func recordedOrder(it item, address string) string {
	m, _ := it[recipientPrefix+address].(*types.AttributeValueMemberM)
	if m == nil {
		return ""
	}
	return item(m.Value).str(rOrder)
}

// value is the recipient's map as stored; empty details are left out.
func (r Recipient) value() types.AttributeValue {
	m := map[string]types.AttributeValue{
		rOutcome: str(string(r.Outcome)),
		rOrder:   str(r.order()),
		rAt:      num(r.At.UnixMilli()),
	}
	for k, v := range map[string]string{rType: r.Type, rSubType: r.SubType, rStatus: r.Status, rDiagnostic: r.Diagnostic} {
		if v != "" {
			m[k] = str(v)
		}
	}
	return &types.AttributeValueMemberM{Value: m}
}

// recipients reads the recorded outcomes of an item, by address.
func (it item) recipients() []Recipient {
	var out []Recipient
	for name, v := range it {
		addr, ok := strings.CutPrefix(name, recipientPrefix)
		m, isMap := v.(*types.AttributeValueMemberM)
		if !ok || !isMap {
			continue
		}
		r := item(m.Value)
		out = append(out, Recipient{
			Address:    addr,
			Outcome:    Outcome(r.str(rOutcome)),
			At:         r.millis(rAt),
			Type:       r.str(rType),
			SubType:    r.str(rSubType),
			Status:     r.str(rStatus),
			Diagnostic: r.str(rDiagnostic),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out
}
