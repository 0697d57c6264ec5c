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
		t, err := time.Parse(herald.TimeFormatMillis, v)
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
		window, s.attempts, s.first.UTC().Format(herald.TimeFormatMillis), nonEmpty(s.lastError, "unknown")))}
}

// attributes are the herald.retry.* attributes of the state.
func (s retryState) attributes() map[string]types.MessageAttributeValue {
	if s.attempts == 0 {
		return map[string]types.MessageAttributeValue{}
	}
	return map[string]types.MessageAttributeValue{
		herald.AttrRetryAttempts:     numberAttr(s.attempts),
		herald.AttrRetryFirstAttempt: stringAttr(s.first.UTC().Format(herald.TimeFormatMillis)),
		herald.AttrRetryLastError:    stringAttr(nonEmpty(s.lastError, "unknown")),
	}
}

func stringAttr(v string) types.MessageAttributeValue {
	return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
}

func numberAttr(n int) types.MessageAttributeValue {
	return types.MessageAttributeValue{DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(n))}
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

// deadLetterAttributes are a dead letter's: the failure's class and reason,
// the attempts over all copies (an expired message's failed ones; otherwise
// those and the attempt that decided) and when the first was made, the
// source message id, and the original's own.
func deadLetterAttributes(m *message, f transport.Failure) map[string]types.MessageAttributeValue {
	attempts, first := m.retry.attempts, m.retry.first
	if f.Class != transport.Expired {
		attempts++
	}
	if first.IsZero() {
		first = m.received
	}
	return withOriginal(map[string]types.MessageAttributeValue{
		herald.AttrFailureClass:        stringAttr(string(f.Class)),
		herald.AttrFailureReason:       stringAttr(nonEmpty(f.Reason, "unknown")),
		herald.AttrFailureAttempts:     numberAttr(attempts),
		herald.AttrFailureFirstAttempt: stringAttr(first.UTC().Format(herald.TimeFormatMillis)),
		herald.AttrSourceMessageID:     stringAttr(m.id),
	}, m.MessageAttributes)
}
