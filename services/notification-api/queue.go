package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// sqsMaxBatch is the most entries one SendMessageBatch takes.
const sqsMaxBatch = 10

// sqsAPI is the part of the SQS client the API uses, so tests can put in
// fakes and integration tests the emulator.
type sqsAPI interface {
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

// message is one encoded envelope ready for the queue.
type message struct {
	body  string
	delay int32 // SQS DelaySeconds
}

// result is the outcome of one message: the SQS message id, or why it is not
// on the queue.
type result struct {
	messageID string
	err       *enqueueError
}

// enqueueError says what to answer for a message that is not known to be
// on the queue.
type enqueueError struct {
	status int    // HTTP status for the client
	reason string // Rejected metric reason
	detail string // safe to show the client
	err    error  // the cause, for logs
	// unknown: the message may be on the queue (SQS gave no clear answer);
	// otherwise it is not.
	unknown bool
}

func (e *enqueueError) Error() string {
	if e.err != nil {
		return e.detail + ": " + e.err.Error()
	}
	return e.detail
}

func (e *enqueueError) Unwrap() error { return e.err }

func errUnavailable(err error) *enqueueError {
	return &enqueueError{status: http.StatusServiceUnavailable, reason: "unavailable",
		detail: "the queue cannot be reached now; nothing was queued, retry later", err: err}
}

// errUnknown is a message SQS may or may not have queued: sending it again
// could queue it twice, so it is not sent again. A retry with the same
// Idempotency-Key carries the same notification id, which the sender
// sends once.
func errUnknown(err error) *enqueueError {
	return &enqueueError{status: http.StatusServiceUnavailable, reason: "unknown", unknown: true,
		detail: "the queue gave no clear answer: the notification may or may not be queued; " +
			"a retry with the same Idempotency-Key is safe, a retry without one may send it twice", err: err}
}

// detailKeyed is the unknown outcome's detail for a request with a key.
const detailUnknownKeyed = "the queue gave no clear answer: the notification may or may not be queued; " +
	"retrying with the same Idempotency-Key is safe (it carries the same id, which is sent once)"

func errQueue(err error) *enqueueError {
	return &enqueueError{status: http.StatusInternalServerError, reason: "queue",
		detail: "the queue refused the message; nothing was queued", err: err}
}

// throttlingCodes are SQS error codes that mean "later", like a 5xx.
var throttlingCodes = map[string]bool{
	"RequestThrottled": true, "ThrottlingException": true, "Throttling": true,
	"KmsThrottled": true, "KMS.ThrottlingException": true, "ServiceUnavailable": true,
}

// classify turns an SQS call error (after the SDK's own retries) into an
// answer. A request that may have reached SQS and got no answer (a
// deadline, a timeout, a connection lost mid-call) has an unknown outcome:
// 503, saying so. Without a connection (refused, no route) the queue is
// unreachable: 503, nothing queued. A 5xx or throttling response is too.
// Any other response is a refusal (permissions, missing queue, bad
// request) that retrying will not fix: 500.
func classify(err error) *enqueueError {
	if errors.Is(err, context.Canceled) {
		e := errUnknown(err)
		e.reason = "canceled"
		return e
	}
	// The SDK wraps a failed send in a response error of status 0.
	var sendErr *smithyhttp.RequestSendError
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &sendErr) || !errors.As(err, &re) || re.HTTPStatusCode() == 0 {
		if mayHaveArrived(err) {
			return errUnknown(err)
		}
		return errUnavailable(err)
	}
	var apiErr smithy.APIError
	code := ""
	if errors.As(err, &apiErr) {
		code = apiErr.ErrorCode()
	}
	if re.HTTPStatusCode() >= 500 || re.HTTPStatusCode() == http.StatusTooManyRequests || throttlingCodes[code] {
		return errUnavailable(err)
	}
	return errQueue(err)
}

// classifyEntry turns one failed SendMessageBatch entry into an answer.
// SenderFault=false is SQS's own failure (retried once by sendBatch);
// SenderFault=true is about the message itself.
func classifyEntry(f types.BatchResultErrorEntry) *enqueueError {
	code := aws.ToString(f.Code)
	err := fmt.Errorf("batch entry failed: %s: %s", code, aws.ToString(f.Message))
	switch {
	case !f.SenderFault:
		return errUnavailable(err)
	case code == "InvalidMessageContents":
		return &enqueueError{status: http.StatusBadRequest, reason: "validation",
			detail: "the queue does not accept the message's characters", err: err}
	case strings.Contains(code, "TooLong"):
		return &enqueueError{status: http.StatusRequestEntityTooLarge, reason: "size",
			detail: "the queue refused the message as too large", err: err}
	default:
		return errQueue(err)
	}
}

// queue sends encoded envelopes to one SQS queue.
type queue struct {
	api sqsAPI
	url string
	// maxBatchBytes is the SendMessageBatch payload limit (the sum of the
	// bodies), the same number as the largest single message.
	maxBatchBytes int
}

func (q *queue) sendOne(ctx context.Context, m message) result {
	out, err := q.api.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:     aws.String(q.url),
		MessageBody:  aws.String(m.body),
		DelaySeconds: m.delay,
	})
	if err != nil {
		return result{err: classify(err)}
	}
	return result{messageID: aws.ToString(out.MessageId)}
}

// sendBatch sends up to ten messages (whose bodies fit the batch payload
// limit) in one SendMessageBatch, and returns one result per message, in
// order. Entries SQS failed on its side are sent once more; a message that SQS
// did not report as successful is never reported as queued, and one it did
// not report at all is not sent again (its outcome is unknown).
func (q *queue) sendBatch(ctx context.Context, msgs []message) []result {
	results := make([]result, len(msgs))
	pending := make([]int, len(msgs))
	for i := range msgs {
		pending[i] = i
	}
	for attempt := 0; attempt < 2 && len(pending) > 0; attempt++ {
		entries := make([]types.SendMessageBatchRequestEntry, len(pending))
		for j, i := range pending {
			entries[j] = types.SendMessageBatchRequestEntry{
				Id:           aws.String(strconv.Itoa(i)),
				MessageBody:  aws.String(msgs[i].body),
				DelaySeconds: msgs[i].delay,
			}
		}
		out, err := q.api.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(q.url), Entries: entries})
		if err != nil {
			// The SDK has already retried the call itself.
			e := classify(err)
			for _, i := range pending {
				results[i] = result{err: e}
			}
			return results
		}
		const (
			unknown = iota
			sent
			failed
		)
		state := map[int]int{}
		for _, i := range pending {
			state[i] = unknown
		}
		for _, s := range out.Successful {
			i, ok := entryIndex(s.Id, state)
			if !ok {
				continue
			}
			state[i] = sent
			results[i] = result{messageID: aws.ToString(s.MessageId)}
		}
		var retry []int
		for _, f := range out.Failed {
			i, ok := entryIndex(f.Id, state)
			if !ok || state[i] == sent {
				continue
			}
			state[i] = failed
			results[i] = result{err: classifyEntry(f)}
			if !f.SenderFault {
				retry = append(retry, i)
			}
		}
		for _, i := range pending {
			if state[i] == unknown {
				// Not sent again: it may be on the queue.
				results[i] = result{err: errUnknown(errors.New("SendMessageBatch reported neither success nor failure for the entry"))}
			}
		}
		pending = retry
	}
	return results
}

// mayHaveArrived reports whether a call that got no answer may still have
// reached SQS: anything but a failure to connect.
func mayHaveArrived(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	var sendErr *smithyhttp.RequestSendError
	return errors.As(err, &sendErr) || errors.Is(err, context.DeadlineExceeded)
}

func entryIndex(id *string, state map[int]int) (int, bool) {
	i, err := strconv.Atoi(aws.ToString(id))
	if err != nil {
		return 0, false
	}
	_, ok := state[i]
	return i, ok
}

// chunks splits messages into SendMessageBatch calls: at most ten each, and
// at most maxBatchBytes of bodies each. It returns index ranges [lo, hi).
func chunks(msgs []message, maxBatchBytes int) [][2]int {
	var out [][2]int
	lo, size := 0, 0
	for i, m := range msgs {
		if i > lo && (i-lo == sqsMaxBatch || size+len(m.body) > maxBatchBytes) {
			out = append(out, [2]int{lo, i})
			lo, size = i, 0
		}
		size += len(m.body)
	}
	if lo < len(msgs) {
		out = append(out, [2]int{lo, len(msgs)})
	}
	return out
}
