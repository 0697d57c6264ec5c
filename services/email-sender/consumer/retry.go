package consumer

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"herald/services/email-sender/transport"
	"herald/services/internal/herald"
)

// The retry budget of a message is time, not receives: a transient failure
// re-queues the message as a new copy (receive count 1) that carries how
// many attempts were made, when the first one was and the last error, in
// message attributes (herald.retry.*). So SQS's maxReceiveCount is reached
// only by messages that crash or hang the consumer again and again, and a
// message is dead-lettered as expired once the retry window has run out.

// timeLayout is how the first attempt's time is written: RFC 3339 in UTC
// with milliseconds, readable in the console and exact enough for a window.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// retryState is a message's attempt accounting across its copies.
type retryState struct {
	// attempts is how many sends of this message failed, over all copies.
	attempts int
	// first is when the first of them started; zero before any.
	first time.Time
	// lastError is the last failure's class and reason.
	lastError string
}

// readRetryState reads the accounting a re-queued copy carries; a message
// the API queued has none. A malformed value counts as absent: the budget
// then restarts, which retries longer but never loses the message.
func readRetryState(attrs map[string]types.MessageAttributeValue) (retryState, error) {
	var s retryState
	str := func(name string) string { return aws.ToString(attrs[name].StringValue) }
	if v := str(herald.AttrRetryAttempts); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return retryState{}, fmt.Errorf("%s %q is not a count", herald.AttrRetryAttempts, v)
		}
		s.attempts = n
	}
	if v := str(herald.AttrRetryFirstAttempt); v != "" {
		t, err := time.Parse(timeLayout, v)
		if err != nil {
			return retryState{}, fmt.Errorf("%s %q is not a time: %v", herald.AttrRetryFirstAttempt, v, err)
		}
		s.first = t
	}
	s.lastError = str(herald.AttrRetryLastError)
	return s, nil
}

// failed records one more failed attempt that started at start.
func (s *retryState) failed(start time.Time, f transport.Failure) {
	s.attempts++
	if s.first.IsZero() {
		s.first = start
	}
	s.lastError = transport.Sanitize(string(f.Class) + ": " + nonEmpty(f.Reason, "unknown"))
}

// expired reports whether the window, counted from the first attempt, has
// run out at now. A message that never failed has not started its window.
func (s retryState) expired(now time.Time, window time.Duration) bool {
	return !s.first.IsZero() && now.Sub(s.first) >= window
}

// windowEnd is when the window runs out; zero before the first attempt.
func (s retryState) windowEnd(window time.Duration) time.Time {
	if s.first.IsZero() {
		return time.Time{}
	}
	return s.first.Add(window)
}

// expiredFailure is the dead-letter reason of a message whose window ran out.
func (s retryState) expiredFailure(window time.Duration) transport.Failure {
	return transport.Failure{Class: transport.Expired, Reason: transport.Sanitize(fmt.Sprintf(
		"retry window %s ran out after %d attempts since %s; last error: %s",
		window, s.attempts, s.first.UTC().Format(timeLayout), nonEmpty(s.lastError, "unknown")))}
}

// attributes are the herald.retry.* attributes of the state.
func (s retryState) attributes() map[string]types.MessageAttributeValue {
	if s.attempts == 0 {
		return map[string]types.MessageAttributeValue{}
	}
	return map[string]types.MessageAttributeValue{
		herald.AttrRetryAttempts:     stringAttr(strconv.Itoa(s.attempts)),
		herald.AttrRetryFirstAttempt: stringAttr(s.first.UTC().Format(timeLayout)),
		herald.AttrRetryLastError:    stringAttr(nonEmpty(s.lastError, "unknown")),
	}
}

func stringAttr(v string) types.MessageAttributeValue {
	return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
}

// maxAttributes is SQS's limit of message attributes per message.
const maxAttributes = 10

// withOriginal adds the original message's own attributes to Herald's
// (herald.failure.*, herald.retry.* and the source id are always Herald's,
// never copied), by name, as many as fit in SQS's ten.
func withOriginal(attrs, original map[string]types.MessageAttributeValue) map[string]types.MessageAttributeValue {
	names := make([]string, 0, len(original))
	for name := range original {
		if !strings.HasPrefix(name, "herald.failure.") && !strings.HasPrefix(name, "herald.retry.") && name != herald.AttrSourceMessageID {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		if len(attrs) == maxAttributes {
			break
		}
		attrs[name] = original[name]
	}
	return attrs
}

// copyAttributes are the attributes of a re-queued copy: its accounting and
// the original's own.
func copyAttributes(m *message) map[string]types.MessageAttributeValue {
	return withOriginal(m.retry.attributes(), m.MessageAttributes)
}

// deadLetterAttributes are a dead letter's: the failure, the source message
// id, the accounting when there was a failed attempt, and the original's own.
func deadLetterAttributes(m *message, f transport.Failure) map[string]types.MessageAttributeValue {
	attrs := m.retry.attributes()
	attrs[herald.AttrFailureClass] = stringAttr(string(f.Class))
	attrs[herald.AttrFailureReason] = stringAttr(nonEmpty(f.Reason, "unknown"))
	attrs[herald.AttrSourceMessageID] = stringAttr(m.id)
	return withOriginal(attrs, m.MessageAttributes)
}
