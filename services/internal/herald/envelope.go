// Package herald holds what both Herald services share: the queue envelope and
// its validation, the entry-point shape (process.go), AWS client setup,
// logging and metrics. Their configuration is services/contract's.
package herald

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"herald/services/contract"
	"herald/services/mailaddr"
)

// EnvelopeVersion is the version of the queue message this code writes and reads.
const EnvelopeVersion = 1

// Limits shared by the API (which rejects) and the sender (which dead-letters).
const (
	// MaxRecipients is SES's limit on To+Cc+Bcc for one message.
	MaxRecipients = 50
	// MaxSubjectBytes keeps subjects well inside SES's header limits.
	MaxSubjectBytes = 998
	// MaxMetadataEntries and the lengths below bound the free-form metadata.
	MaxMetadataEntries  = 20
	MaxMetadataKeyLen   = 64
	MaxMetadataValueLen = 256
	// MaxDelay is SQS's largest DelaySeconds.
	MaxDelay = contract.SQSMaxDelay
)

// Message attributes the sender sets on a message it moves to the dead-letter queue.
const (
	AttrFailureClass    = "herald.failure.class"
	AttrFailureReason   = "herald.failure.reason"
	AttrSourceMessageID = "herald.source.messageId"
	// AttrFailureAttempts is how many times the message was tried (Number).
	AttrFailureAttempts = "herald.failure.attempts"
	// AttrFailureFirstAttempt is when it was first received, RFC 3339 in UTC
	// with milliseconds (SQS's ApproximateFirstReceiveTimestamp).
	AttrFailureFirstAttempt = "herald.failure.firstAttempt"
)

// TimeFormatMillis is how time attributes are written: RFC 3339 with
// milliseconds.
const TimeFormatMillis = "2006-01-02T15:04:05.000Z07:00"

// Message attributes the sender sets on the copy it re-queues after a
// transient failure: the attempts so far, when the first was made (RFC 3339,
// UTC, milliseconds) and the last attempt's class and reason. They carry a
// message's retry budget from copy to copy.
const (
	AttrRetryAttempts     = "herald.retry.attempts"
	AttrRetryFirstAttempt = "herald.retry.firstAttempt"
	AttrRetryLastError    = "herald.retry.lastError"
)

// Envelope is the one queue message format, written by the notification API
// and read by the email sender. Field names are the wire format: change them
// only with a new version.
type Envelope struct {
	V         int               `json:"v"`
	ID        string            `json:"id"`
	CreatedAt time.Time         `json:"createdAt"`
	KeyID     string            `json:"keyId,omitempty"`
	From      string            `json:"from"`
	ReplyTo   string            `json:"replyTo,omitempty"`
	To        []string          `json:"to,omitempty"`
	Cc        []string          `json:"cc,omitempty"`
	Bcc       []string          `json:"bcc,omitempty"`
	Subject   string            `json:"subject"`
	Text      string            `json:"text,omitempty"`
	HTML      string            `json:"html,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
}

// FieldError names one invalid field by its JSON name and says what is wrong.
type FieldError struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

func (e FieldError) Error() string { return e.Field + ": " + e.Detail }

// FieldErrors is every problem found in one message.
type FieldErrors []FieldError

func (fe FieldErrors) Error() string {
	parts := make([]string, len(fe))
	for i, e := range fe {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

// Recipients is the number of addresses in To, Cc and Bcc together.
func (e *Envelope) Recipients() int { return len(e.To) + len(e.Cc) + len(e.Bcc) }

// Validate checks the content rules both services rely on: recipients present
// and within the SES limit, every address as SES accepts it (mailaddr.Check;
// mailaddr.CheckSender for from and replyTo), no control character in any header
// value or metadata (mailaddr.CheckText), a subject and a body. It does not check the sender allow-list,
// which is the API's policy.
func (e *Envelope) Validate() FieldErrors {
	var errs FieldErrors
	add := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
	}
	checkList := func(field string, addrs []string) {
		for i, a := range addrs {
			if err := mailaddr.Check(a); err != nil {
				add(fmt.Sprintf("%s[%d]", field, i), "%v", err)
			}
		}
	}
	n := e.Recipients()
	switch {
	case n == 0:
		add("to", "at least one recipient is required in to, cc or bcc")
	case n > MaxRecipients:
		add("to", "%d recipients in to, cc and bcc together; at most %d", n, MaxRecipients)
	}
	checkList("to", e.To)
	checkList("cc", e.Cc)
	checkList("bcc", e.Bcc)
	if e.From == "" {
		add("from", "a sender address is required")
	} else if err := mailaddr.CheckSender(e.From); err != nil {
		add("from", "%v", err)
	}
	if e.ReplyTo != "" {
		if err := mailaddr.CheckSender(e.ReplyTo); err != nil {
			add("replyTo", "%v", err)
		}
	}
	switch {
	case strings.TrimSpace(e.Subject) == "":
		add("subject", "a subject is required")
	case mailaddr.CheckText(e.Subject) != nil:
		add("subject", "%v", mailaddr.CheckText(e.Subject))
	case len(e.Subject) > MaxSubjectBytes:
		add("subject", "%d bytes; at most %d", len(e.Subject), MaxSubjectBytes)
	}
	if e.Text == "" && e.HTML == "" {
		add("text", "text or html is required")
	}
	if len(e.Metadata) > MaxMetadataEntries {
		add("metadata", "%d entries; at most %d", len(e.Metadata), MaxMetadataEntries)
	}
	for k, v := range e.Metadata {
		switch {
		case k == "" || len(k) > MaxMetadataKeyLen:
			add("metadata", "key %q must be 1 to %d bytes", truncate(k, 32), MaxMetadataKeyLen)
		case len(v) > MaxMetadataValueLen:
			add("metadata."+k, "value is %d bytes; at most %d", len(v), MaxMetadataValueLen)
		case mailaddr.CheckText(k+v) != nil:
			add("metadata."+k, "%v", mailaddr.CheckText(k+v))
		}
	}
	return errs
}

// Marshal encodes the envelope for the queue, setting the version.
func (e *Envelope) Marshal() ([]byte, error) {
	e.V = EnvelopeVersion
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Bodies are HTML: keep <, > and & as they are; the queue is not a web page.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, fmt.Errorf("encode envelope %s: %w", e.ID, err)
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// ErrUnreadable marks a queue message that is not a valid envelope. Such a
// message can never be sent, so the sender dead-letters it at once.
var ErrUnreadable = errors.New("unreadable envelope")

// DecodeEnvelope reads a queue message strictly: known version, no unknown
// fields, id present, content valid. Any failure wraps ErrUnreadable.
func DecodeEnvelope(body []byte) (Envelope, error) {
	var probe struct {
		V *int `json:"v"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return Envelope{}, fmt.Errorf("%w: %v", ErrUnreadable, err)
	}
	if probe.V == nil {
		return Envelope{}, fmt.Errorf("%w: no version field", ErrUnreadable)
	}
	if *probe.V != EnvelopeVersion {
		return Envelope{}, fmt.Errorf("%w: version %d, this sender reads %d", ErrUnreadable, *probe.V, EnvelopeVersion)
	}
	var e Envelope
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Envelope{}, fmt.Errorf("%w: %v", ErrUnreadable, err)
	}
	if dec.More() {
		return Envelope{}, fmt.Errorf("%w: data after the envelope", ErrUnreadable)
	}
	if e.ID == "" {
		return Envelope{}, fmt.Errorf("%w: no id", ErrUnreadable)
	}
	if errs := e.Validate(); len(errs) > 0 {
		return e, fmt.Errorf("%w: %v", ErrUnreadable, errs)
	}
	return e, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// NewID returns a UUIDv7 (RFC 9562): time-ordered, so ids sort by acceptance,
// with 74 random bits.
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[6:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on supported platforms
	}
	ms := uint64(time.Now().UnixMilli())
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	b[6] = 0x70 | b[6]&0x0f
	b[8] = 0x80 | b[8]&0x3f
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
