package feedback

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"herald/services/contract"
	"herald/services/internal/store"
)

// The wire format, as AWS documents it:
//
//   - the SNS envelope SNS puts around each message it delivers to an SQS
//     queue when raw message delivery is off ("HTTP/HTTPS notification JSON
//     format", https://docs.aws.amazon.com/sns/latest/dg/http-notification-json.html;
//     SQS subscribers get the same document);
//   - inside it, as the string Message, the SES event record of event
//     publishing ("Contents of event data that Amazon SES publishes to
//     Amazon SNS", https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-contents.html,
//     and its examples page, event-publishing-retrieving-sns-examples.html).
//
// Parsing is strict where the processor depends on a field (a missing
// message id, tag, recipient or time, an unknown event type: a permanent
// failure, for the DLQ) and lenient about fields it does not read, which AWS
// may add at any time.

// snsEnvelope is the part of the SNS notification the processor reads.
type snsEnvelope struct {
	Type      string
	MessageId string
	TopicArn  string
	Message   *string
	Timestamp string
}

// sesEvent is the part of an SES event record the processor reads.
type sesEvent struct {
	EventType string `json:"eventType"`
	// NotificationType is set instead of eventType in the notifications an
	// identity sends without event publishing: not Herald's set-up.
	NotificationType string `json:"notificationType"`
	Mail             struct {
		Timestamp   string              `json:"timestamp"`
		MessageID   string              `json:"messageId"`
		Destination []string            `json:"destination"`
		Tags        map[string][]string `json:"tags"`
	} `json:"mail"`
	Bounce *struct {
		BounceType        string `json:"bounceType"`
		BounceSubType     string `json:"bounceSubType"`
		BouncedRecipients []struct {
			EmailAddress   string `json:"emailAddress"`
			Status         string `json:"status"`
			DiagnosticCode string `json:"diagnosticCode"`
		} `json:"bouncedRecipients"`
		Timestamp string `json:"timestamp"`
	} `json:"bounce"`
	Complaint *struct {
		ComplainedRecipients []struct {
			EmailAddress string `json:"emailAddress"`
		} `json:"complainedRecipients"`
		Timestamp             string  `json:"timestamp"`
		ComplaintSubType      *string `json:"complaintSubType"`
		ComplaintFeedbackType string  `json:"complaintFeedbackType"`
	} `json:"complaint"`
	Delivery *struct {
		Timestamp    string   `json:"timestamp"`
		Recipients   []string `json:"recipients"`
		SMTPResponse string   `json:"smtpResponse"`
	} `json:"delivery"`
	Reject *struct {
		Reason string `json:"reason"`
	} `json:"reject"`
	Failure *struct {
		ErrorMessage string `json:"errorMessage"`
		TemplateName string `json:"templateName"`
	} `json:"failure"`
	DeliveryDelay *struct {
		DelayType         string `json:"delayType"`
		DelayedRecipients []struct {
			EmailAddress   string `json:"emailAddress"`
			Status         string `json:"status"`
			DiagnosticCode string `json:"diagnosticCode"`
		} `json:"delayedRecipients"`
		Timestamp string `json:"timestamp"`
	} `json:"deliveryDelay"`
}

// The eventType values of the event types Herald publishes (contract.SESEventTypes).
const (
	EventSend             = "Send"
	EventDelivery         = "Delivery"
	EventBounce           = "Bounce"
	EventComplaint        = "Complaint"
	EventReject           = "Reject"
	EventRenderingFailure = "Rendering Failure"
	EventDeliveryDelay    = "DeliveryDelay"
)

// Event is one SES event, read.
type Event struct {
	// Type is the eventType (EventSend ...).
	Type string
	// SNSMessageID and TopicARN are the envelope's.
	SNSMessageID, TopicARN string
	// NotificationID is the value of the contract.SESNotificationTag tag.
	NotificationID string
	// Feedback is what the event says, for the store.
	Feedback store.Feedback
}

// Malformed is a message that cannot be processed as it is, whatever is
// tried again: it goes to the feedback DLQ with Reason. Kind names the sort
// of fault for the DeadLettered metric.
type Malformed struct {
	Kind   string
	Reason string
}

func (m *Malformed) Error() string { return "feedback: " + m.Reason }

// Kinds of Malformed.
const (
	KindNotSNS          = "not-sns"
	KindNotSES          = "not-ses"
	KindUnknownType     = "unknown-event-type"
	KindUntagged        = "untagged"
	KindUnknown         = "unknown-notification"
	KindForeignTopic    = "foreign-topic"
	KindMissingField    = "missing-field"
	KindBadValue        = "bad-value"
	KindOversizedRecord = "oversized"
)

func malformed(kind, format string, args ...any) error {
	return &Malformed{Kind: kind, Reason: fmt.Sprintf(format, args...)}
}

// maxBody bounds a message: SQS's 256 KB.
const maxBody = 256 << 10

// Parse reads an SQS message body: an SNS notification from topicARN ("":
// any topic) around an SES event. Every error is *Malformed.
func Parse(body []byte, topicARN string) (Event, error) {
	if len(body) > maxBody {
		return Event{}, malformed(KindOversizedRecord, "the message is %d bytes, over SQS's %d", len(body), maxBody)
	}
	var env snsEnvelope
	if err := decodeObject(body, &env); err != nil {
		return Event{}, malformed(KindNotSNS, "the message is not an SNS notification: %v", err)
	}
	switch {
	case env.Type == "" && env.Message == nil:
		if bytes.Contains(body, []byte(`"eventType"`)) {
			return Event{}, malformed(KindNotSNS, "the message is an SES event without its SNS envelope: turn raw message delivery off on the subscription")
		}
		return Event{}, malformed(KindNotSNS, "the message is not an SNS notification (no Type, no Message)")
	case env.Type != "Notification":
		return Event{}, malformed(KindNotSNS, "SNS message type %q, want Notification", env.Type)
	case env.MessageId == "" || env.TopicArn == "" || env.Message == nil:
		return Event{}, malformed(KindMissingField, "the SNS notification lacks MessageId, TopicArn or Message")
	case topicARN != "" && env.TopicArn != topicARN:
		return Event{}, malformed(KindForeignTopic, "the notification is from topic %s, not %s", env.TopicArn, topicARN)
	}
	if _, err := parseTime("the SNS Timestamp", env.Timestamp); err != nil {
		return Event{}, err
	}
	var ev sesEvent
	if err := decodeObject([]byte(*env.Message), &ev); err != nil {
		return Event{}, malformed(KindNotSES, "the SNS Message is not an SES event: %v", err)
	}
	out := Event{Type: ev.EventType, SNSMessageID: env.MessageId, TopicARN: env.TopicArn}
	if ev.EventType == "" {
		if ev.NotificationType != "" {
			return Event{}, malformed(KindNotSES, "an identity notification (%s) instead of an event-publishing record: Herald reads its configuration set's event destination", ev.NotificationType)
		}
		return Event{}, malformed(KindNotSES, "the SES record has no eventType")
	}
	m := ev.Mail
	if m.MessageID == "" {
		return Event{}, malformed(KindMissingField, "%s event without mail.messageId", ev.EventType)
	}
	sentAt, err := parseTime("mail.timestamp", m.Timestamp)
	if err != nil {
		return Event{}, err
	}
	ids := m.Tags[contract.SESNotificationTag]
	switch {
	case len(ids) == 0:
		return Event{}, malformed(KindUntagged, "%s event of SES message %s has no %s tag: not sent by Herald, or by a sender without the tag", ev.EventType, m.MessageID, contract.SESNotificationTag)
	case len(ids) > 1 || !validID(ids[0]):
		return Event{}, malformed(KindBadValue, "%s event of SES message %s: tag %s %q is not one notification id", ev.EventType, m.MessageID, contract.SESNotificationTag, ids)
	}
	out.NotificationID = ids[0]
	out.Feedback = store.Feedback{ProviderMessageID: m.MessageID, SentAt: sentAt}
	rs, err := ev.recipients(sentAt)
	if err != nil {
		return Event{}, err
	}
	if len(rs) > store.MaxFeedbackRecipients {
		return Event{}, malformed(KindOversizedRecord, "%s event names %d recipients, over %d", ev.EventType, len(rs), store.MaxFeedbackRecipients)
	}
	out.Feedback.Recipients = rs
	return out, nil
}

// recipients are the outcomes of the event, per recipient.
func (ev *sesEvent) recipients(sentAt time.Time) ([]store.Recipient, error) {
	var out []store.Recipient
	missing := func(field string) error {
		return malformed(KindMissingField, "%s event without %s", ev.EventType, field)
	}
	// each adds the recipients of the event's object obj (absent: an
	// error); ts is the time of its events, n their number and r gives the
	// i-th one's address and outcome. Each is called only when obj is there.
	each := func(obj string, present bool, ts func() (time.Time, error), n func() int, r func(i int) (string, store.Recipient)) error {
		if !present {
			return missing(obj)
		}
		if n() == 0 {
			return missing(obj + " recipients")
		}
		at, err := ts()
		if err != nil {
			return err
		}
		for i := range n() {
			addr, rec := r(i)
			a, err := bare(addr)
			if err != nil {
				return malformed(KindBadValue, "%s event: a recipient address does not parse: %v", ev.EventType, err)
			}
			rec.Address, rec.At = a, at
			out = append(out, rec)
		}
		return nil
	}
	// Message-level events have no time of their own: the send's.
	atSend := func() (time.Time, error) { return sentAt, nil }
	var err error
	switch ev.EventType {
	case EventSend:
	case EventDelivery:
		d := ev.Delivery
		err = each("delivery", d != nil, func() (time.Time, error) { return parseTime("delivery.timestamp", d.Timestamp) },
			func() int { return len(d.Recipients) },
			func(i int) (string, store.Recipient) {
				return d.Recipients[i], store.Recipient{Outcome: store.OutcomeDelivered, Diagnostic: d.SMTPResponse}
			})
	case EventBounce:
		b := ev.Bounce
		if b != nil && b.BounceType == "" {
			return nil, missing("bounce.bounceType")
		}
		err = each("bounce", b != nil, func() (time.Time, error) { return parseTime("bounce.timestamp", b.Timestamp) },
			func() int { return len(b.BouncedRecipients) },
			func(i int) (string, store.Recipient) {
				r := b.BouncedRecipients[i]
				return r.EmailAddress, store.Recipient{Outcome: store.OutcomeBounced, Type: b.BounceType, SubType: b.BounceSubType,
					Status: r.Status, Diagnostic: r.DiagnosticCode}
			})
	case EventComplaint:
		c := ev.Complaint
		err = each("complaint", c != nil, func() (time.Time, error) { return parseTime("complaint.timestamp", c.Timestamp) },
			func() int { return len(c.ComplainedRecipients) },
			func(i int) (string, store.Recipient) {
				sub := ""
				if c.ComplaintSubType != nil {
					sub = *c.ComplaintSubType
				}
				return c.ComplainedRecipients[i].EmailAddress, store.Recipient{Outcome: store.OutcomeComplained, Type: c.ComplaintFeedbackType, SubType: sub}
			})
	case EventDeliveryDelay:
		d := ev.DeliveryDelay
		err = each("deliveryDelay", d != nil, func() (time.Time, error) { return parseTime("deliveryDelay.timestamp", d.Timestamp) },
			func() int { return len(d.DelayedRecipients) },
			func(i int) (string, store.Recipient) {
				r := d.DelayedRecipients[i]
				return r.EmailAddress, store.Recipient{Outcome: store.OutcomeDelayed, Type: d.DelayType, Status: r.Status, Diagnostic: r.DiagnosticCode}
			})
	case EventReject:
		dest := ev.Mail.Destination
		err = each("reject", ev.Reject != nil, atSend, func() int { return len(dest) }, func(i int) (string, store.Recipient) {
			return dest[i], store.Recipient{Outcome: store.OutcomeRejected, Type: "Reject", Diagnostic: ev.Reject.Reason}
		})
	case EventRenderingFailure:
		dest, f := ev.Mail.Destination, ev.Failure
		err = each("failure", f != nil, atSend, func() int { return len(dest) }, func(i int) (string, store.Recipient) {
			return dest[i], store.Recipient{Outcome: store.OutcomeRejected, Type: "RenderingFailure",
				Diagnostic: strings.TrimSpace(f.TemplateName + ": " + f.ErrorMessage)}
		})
	default:
		return nil, malformed(KindUnknownType, "event type %q is not one Herald publishes (%s)", ev.EventType, strings.Join(contract.SESEventTypes(), ", "))
	}
	return out, err
}

// decodeObject decodes one JSON object and nothing after it.
func decodeObject(b []byte, v any) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return errors.New("not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON object")
	}
	return nil
}

// parseTime reads an ISO 8601 time as SES and SNS write it
// (2017-08-05T00:41:02.669Z; an offset also occurs).
func parseTime(field, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, malformed(KindMissingField, "%s is missing", field)
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, malformed(KindBadValue, "%s %q is not an ISO 8601 time", field, v)
	}
	return t.UTC(), nil
}

// bare is the address without its display name ("Name <a@b>" occurs in
// bouncedRecipients).
func bare(addr string) (string, error) {
	a, err := mail.ParseAddress(addr)
	if err != nil {
		return "", err
	}
	return strings.ToLower(a.Address), nil
}

// validID: a notification id as the store takes it (a lowercase UUID; the
// store checks the version).
func validID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i, c := range id {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case !('0' <= c && c <= '9' || 'a' <= c && c <= 'f'):
			return false
		}
	}
	return true
}
