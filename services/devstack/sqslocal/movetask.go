package sqslocal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/Admiral-Piett/goaws/app/models"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	smithy "github.com/aws/smithy-go"
)

// Message move tasks (dead-letter queue redrive): StartMessageMoveTask,
// ListMessageMoveTasks and CancelMessageMoveTask, which goaws v0.5.4 does
// not have, served over the JSON protocol as the SQS API reference describes
// them:
//
//   - the source must be a queue another queue names as its dead-letter
//     queue (InvalidParameterValue otherwise), and exist
//     (ResourceNotFoundException); so must DestinationArn when given;
//   - one active task per source (InvalidParameterValue);
//   - MaxNumberOfMessagesPerSecond 1 to 500; left out, the task moves as fast
//     as it can;
//   - ApproximateNumberOfMessagesToMove is the source's visible messages when
//     the task starts; the task ends COMPLETED when it moved that many or the
//     source has none left, FAILED (with FailureReason) when a call to the
//     queues fails, CANCELLED after CancelMessageMoveTask (CANCELLING until
//     the batch in hand is done);
//   - ListMessageMoveTasks gives the most recent tasks of a source, newest
//     first (MaxResults 1 by default, at most 10), the TaskHandle only while
//     a task runs;
//   - moved messages keep their body and message attributes and are new
//     messages in the destination (new message id, receive count 0), as SQS
//     documents for redrive.
//
// Moving is what SQS does: receive a batch from the source, send it to the
// destination, delete it from the source. A task without DestinationArn
// moves to the source's redrive source queue; SQS returns each message to
// the queue it came from, which goaws does not record, so with more than one
// redrive source the task fails and asks for a DestinationArn.
//
// The tasks use goaws through its handler in this process, not through the
// listener, so Stats do not count their calls (SQS bills the task, not its
// moves).

// Task statuses, as ListMessageMoveTasks reports them.
const (
	MoveRunning    = "RUNNING"
	MoveCompleted  = "COMPLETED"
	MoveCancelling = "CANCELLING"
	MoveCancelled  = "CANCELLED"
	MoveFailed     = "FAILED"
)

const (
	maxMoveRate     = 500 // MaxNumberOfMessagesPerSecond's upper bound
	maxListedTasks  = 10  // ListMessageMoveTasks' MaxResults upper bound
	moveBatch       = 10  // messages per receive, send and delete
	moveVisibility  = 30  // seconds a batch in hand stays hidden in the source
	moveCallTimeout = 10 * time.Second
	sqsTargetPrefix = "AmazonSQS."
	jsonContentType = "application/x-amz-json-1.0"
	zeroRequestID   = "00000000-0000-0000-0000-000000000000"
)

// moveTask is one task and its progress.
type moveTask struct {
	id, handle          string
	source, destination string // ARNs; destination "" when not given
	rate                int    // 0 when not given
	started             time.Time
	toMove              int64
	sourceURL, destURL  string
	mu                  sync.Mutex
	status, failure     string
	moved               int64
	cancel              context.CancelFunc
	noDestination       bool
}

func (t *moveTask) snapshot() (status, failure string, moved int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.status, t.failure, t.moved
}

// mover keeps the tasks and runs them.
type mover struct {
	sqs *sqs.Client // goaws, in process

	mu      sync.Mutex
	bySrc   map[string][]*moveTask // newest first, at most maxListedTasks
	byID    map[string]*moveTask
	ctx     context.Context
	stop    context.CancelFunc
	running sync.WaitGroup
}

func newMover(goaws http.Handler) *mover {
	ctx, stop := context.WithCancel(context.Background())
	return &mover{
		sqs: sqs.New(sqs.Options{
			Region:       "us-east-1",
			BaseEndpoint: aws.String("http://sqslocal.invalid"),
			Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
			HTTPClient:   inProcess{goaws},
		}),
		bySrc: map[string][]*moveTask{},
		byID:  map[string]*moveTask{},
		ctx:   ctx,
		stop:  stop,
	}
}

// close stops every running task and waits for them. Under mu, so a start
// in progress either sees the stop or is counted before the wait.
func (mv *mover) close() {
	mv.mu.Lock()
	mv.stop()
	mv.mu.Unlock()
	mv.running.Wait()
}

// inProcess is an SDK HTTP client that hands each request to a handler in
// this process.
type inProcess struct{ h http.Handler }

func (c inProcess) Do(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	rec := &bufferedResponse{header: http.Header{}, status: http.StatusOK}
	c.h.ServeHTTP(rec, req)
	return &http.Response{
		StatusCode:    rec.status,
		Status:        strconv.Itoa(rec.status) + " " + http.StatusText(rec.status),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        rec.header,
		Body:          io.NopCloser(bytes.NewReader(rec.body.Bytes())),
		ContentLength: int64(rec.body.Len()),
		Request:       req,
	}, nil
}

// wrap serves the three move-task actions and hands everything else on.
func (mv *mover) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var serve func([]byte) (any, *apiError)
		switch r.Header.Get("X-Amz-Target") {
		case sqsTargetPrefix + "StartMessageMoveTask":
			serve = mv.start
		case sqsTargetPrefix + "ListMessageMoveTasks":
			serve = mv.list
		case sqsTargetPrefix + "CancelMessageMoveTask":
			serve = mv.cancelTask
		default:
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			writeAPIError(w, &apiError{status: http.StatusBadRequest, typ: "InvalidParameterValue", query: "InvalidParameterValue", message: "read request: " + err.Error()})
			return
		}
		out, apiErr := serve(body)
		if apiErr != nil {
			writeAPIError(w, apiErr)
			return
		}
		writeJSON(w, out)
	})
}

// writeJSON answers 200 with v as an SQS JSON-protocol result.
func writeJSON(w http.ResponseWriter, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", jsonContentType)
	w.Header().Set("x-amzn-RequestId", zeroRequestID)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// apiError is an SQS JSON-protocol error: the shape name in __type (the
// SDK's error type), the query-compatible code in x-amzn-query-error (the
// SDK's ErrorCode for shapes it does not model).
type apiError struct {
	status  int
	typ     string
	query   string
	message string
}

func invalidParameter(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "InvalidParameterValueException", query: "InvalidParameterValue", message: fmt.Sprintf(format, args...)}
}

func resourceNotFound(message string) *apiError {
	return &apiError{status: http.StatusNotFound, typ: "ResourceNotFoundException", query: "ResourceNotFoundException", message: message}
}

func writeAPIError(w http.ResponseWriter, e *apiError) {
	b, _ := json.Marshal(map[string]string{"__type": "com.amazonaws.sqs#" + e.typ, "message": e.message})
	w.Header().Set("Content-Type", jsonContentType)
	w.Header().Set("x-amzn-RequestId", zeroRequestID)
	w.Header().Set("x-amzn-query-error", e.query+";Sender")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(e.status)
	w.Write(b)
}

// decodeInput reads a JSON request into v; unknown members are refused as
// SQS refuses them.
func decodeInput(body []byte, v any) *apiError {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalidParameter("malformed request: %v", err)
	}
	return nil
}

// queueByARN finds a goaws queue by its ARN: its name and URL, and the URLs
// of the queues that name it as their dead-letter queue.
func queueByARN(arn string) (name, url string, sources []string, ok bool) {
	models.SyncQueues.RLock()
	defer models.SyncQueues.RUnlock()
	var q *models.Queue
	for _, c := range models.SyncQueues.Queues {
		if c.Arn == arn {
			q = c
			break
		}
	}
	if q == nil {
		return "", "", nil, false
	}
	for _, c := range models.SyncQueues.Queues {
		if c.DeadLetterQueue == q {
			sources = append(sources, c.URL)
		}
	}
	return q.Name, q.URL, sources, true
}

// visibleMessages counts what ReceiveMessage could hand out of a queue now.
func visibleMessages(name string) int64 {
	models.SyncQueues.RLock()
	defer models.SyncQueues.RUnlock()
	q := models.SyncQueues.Queues[name]
	if q == nil {
		return 0
	}
	var n int64
	for i := range q.Messages {
		if q.Messages[i].ReceiptHandle == "" && q.Messages[i].IsReadyForReceipt() {
			n++
		}
	}
	return n
}

func (mv *mover) start(body []byte) (any, *apiError) {
	var in struct {
		SourceArn                    string
		DestinationArn               *string
		MaxNumberOfMessagesPerSecond *int
	}
	if err := decodeInput(body, &in); err != nil {
		return nil, err
	}
	if in.SourceArn == "" {
		return nil, invalidParameter("The request must contain the parameter SourceArn.")
	}
	rate := 0
	if in.MaxNumberOfMessagesPerSecond != nil {
		rate = *in.MaxNumberOfMessagesPerSecond
		if rate < 1 || rate > maxMoveRate {
			return nil, invalidParameter("Value %d for parameter MaxNumberOfMessagesPerSecond is invalid. Reason: must be between 1 and %d.", rate, maxMoveRate)
		}
	}
	srcName, srcURL, sources, ok := queueByARN(in.SourceArn)
	if !ok {
		return nil, resourceNotFound("The resource that you specified for the SourceArn parameter doesn't exist.")
	}
	if len(sources) == 0 {
		return nil, invalidParameter("Source queue must be configured as a Dead Letter Queue.")
	}
	t := &moveTask{source: in.SourceArn, rate: rate, sourceURL: srcURL, started: time.Now(), status: MoveRunning}
	if in.DestinationArn != nil && *in.DestinationArn != "" {
		_, destURL, _, ok := queueByARN(*in.DestinationArn)
		if !ok {
			return nil, resourceNotFound("The resource that you specified for the DestinationArn parameter doesn't exist.")
		}
		t.destination, t.destURL = *in.DestinationArn, destURL
	} else if len(sources) == 1 {
		t.destURL = sources[0]
	} else {
		t.noDestination = true
	}
	var raw [16]byte
	rand.Read(raw[:])
	t.id = hex.EncodeToString(raw[:])
	handle, _ := json.Marshal(map[string]string{"taskId": t.id, "sourceArn": t.source})
	t.handle = base64.StdEncoding.EncodeToString(handle)

	mv.mu.Lock()
	defer mv.mu.Unlock()
	if mv.ctx.Err() != nil {
		return nil, &apiError{status: http.StatusServiceUnavailable, typ: "RequestThrottled", query: "RequestThrottled", message: "the emulator is shutting down"}
	}
	for _, other := range mv.bySrc[t.source] {
		if s, _, _ := other.snapshot(); s == MoveRunning || s == MoveCancelling {
			return nil, invalidParameter("There is already a task running. Only one active task is allowed for a source queue arn at a given time.")
		}
	}
	t.toMove = visibleMessages(srcName)
	ctx, cancel := context.WithCancel(mv.ctx)
	t.cancel = cancel
	list := append([]*moveTask{t}, mv.bySrc[t.source]...)
	if len(list) > maxListedTasks {
		for _, old := range list[maxListedTasks:] {
			delete(mv.byID, old.id)
		}
		list = list[:maxListedTasks]
	}
	mv.bySrc[t.source] = list
	mv.byID[t.id] = t
	mv.running.Go(func() { mv.run(ctx, t) })
	return map[string]string{"TaskHandle": t.handle}, nil
}

// listEntry is one ListMessageMoveTasksResultEntry.
type listEntry struct {
	TaskHandle                        string `json:",omitempty"`
	Status                            string
	SourceArn                         string
	DestinationArn                    string `json:",omitempty"`
	MaxNumberOfMessagesPerSecond      *int   `json:",omitempty"`
	ApproximateNumberOfMessagesMoved  int64
	ApproximateNumberOfMessagesToMove int64
	FailureReason                     string `json:",omitempty"`
	StartedTimestamp                  int64
}

func (mv *mover) list(body []byte) (any, *apiError) {
	var in struct {
		SourceArn  string
		MaxResults *int
	}
	if err := decodeInput(body, &in); err != nil {
		return nil, err
	}
	if in.SourceArn == "" {
		return nil, invalidParameter("The request must contain the parameter SourceArn.")
	}
	max := 1
	if in.MaxResults != nil {
		max = *in.MaxResults
		if max < 1 || max > maxListedTasks {
			return nil, invalidParameter("Value %d for parameter MaxResults is invalid. Reason: must be between 1 and %d.", max, maxListedTasks)
		}
	}
	if _, _, _, ok := queueByARN(in.SourceArn); !ok {
		return nil, resourceNotFound("The resource that you specified for the SourceArn parameter doesn't exist.")
	}
	mv.mu.Lock()
	tasks := mv.bySrc[in.SourceArn]
	if len(tasks) > max {
		tasks = tasks[:max]
	}
	tasks = append([]*moveTask(nil), tasks...)
	mv.mu.Unlock()
	results := []listEntry{}
	for _, t := range tasks {
		status, failure, moved := t.snapshot()
		e := listEntry{
			Status:                            status,
			SourceArn:                         t.source,
			DestinationArn:                    t.destination,
			ApproximateNumberOfMessagesMoved:  moved,
			ApproximateNumberOfMessagesToMove: t.toMove,
			StartedTimestamp:                  t.started.UnixMilli(),
		}
		if status == MoveRunning {
			e.TaskHandle = t.handle
		}
		if t.rate > 0 {
			rate := t.rate
			e.MaxNumberOfMessagesPerSecond = &rate
		}
		if status == MoveFailed {
			e.FailureReason = failure
		}
		results = append(results, e)
	}
	return map[string][]listEntry{"Results": results}, nil
}

func (mv *mover) cancelTask(body []byte) (any, *apiError) {
	var in struct{ TaskHandle string }
	if err := decodeInput(body, &in); err != nil {
		return nil, err
	}
	if in.TaskHandle == "" {
		return nil, invalidParameter("The request must contain the parameter TaskHandle.")
	}
	var h struct {
		TaskID string `json:"taskId"`
	}
	raw, err := base64.StdEncoding.DecodeString(in.TaskHandle)
	if err != nil || json.Unmarshal(raw, &h) != nil || h.TaskID == "" {
		return nil, invalidParameter("Value %s for parameter TaskHandle is invalid.", in.TaskHandle)
	}
	mv.mu.Lock()
	t := mv.byID[h.TaskID]
	mv.mu.Unlock()
	if t == nil {
		return nil, resourceNotFound("Task does not exist.")
	}
	t.mu.Lock()
	if t.status != MoveRunning {
		status := t.status
		t.mu.Unlock()
		return nil, invalidParameter("Only a task in status RUNNING can be cancelled; this one is %s.", status)
	}
	t.status = MoveCancelling
	moved := t.moved
	t.mu.Unlock()
	t.cancel()
	return map[string]int64{"ApproximateNumberOfMessagesMoved": moved}, nil
}

// run moves the task's messages: receive a batch from the source, send it
// to the destination, delete it from the source, at most rate a second.
func (mv *mover) run(ctx context.Context, t *moveTask) {
	finish := func(status, failure string) {
		t.mu.Lock()
		if t.status == MoveCancelling {
			status, failure = MoveCancelled, ""
		}
		t.status, t.failure = status, failure
		t.mu.Unlock()
		t.cancel()
	}
	if t.noDestination {
		finish(MoveFailed, "the source is the dead-letter queue of more than one queue and this emulator does not record where each message came from: give DestinationArn")
		return
	}
	var moved int64
	for moved < t.toMove {
		if ctx.Err() != nil {
			finish(MoveCancelled, "")
			return
		}
		n := min(int64(moveBatch), t.toMove-moved)
		if t.rate > 0 {
			n = min(n, int64(t.rate))
			// Pace: message k may leave no earlier than k/rate after the start.
			due := t.started.Add(time.Duration(float64(moved) / float64(t.rate) * float64(time.Second)))
			if wait := time.Until(due); wait > 0 {
				select {
				case <-ctx.Done():
					finish(MoveCancelled, "")
					return
				case <-time.After(wait):
				}
			}
		}
		got, err := mv.moveBatch(ctx, t, int32(n))
		moved += int64(got)
		t.mu.Lock()
		t.moved = moved
		t.mu.Unlock()
		if err != nil {
			if ctx.Err() != nil {
				finish(MoveCancelled, "")
				return
			}
			finish(MoveFailed, failureReason(err))
			return
		}
		if got == 0 {
			break // the source is empty: nothing left to move
		}
	}
	finish(MoveCompleted, "")
}

// moveBatch moves up to n messages and returns how many it moved.
func (mv *mover) moveBatch(ctx context.Context, t *moveTask, n int32) (int, error) {
	// The batch in hand is finished even when the task is cancelled, so a
	// message is never left sent but not deleted.
	call, cancel := context.WithTimeout(context.WithoutCancel(ctx), moveCallTimeout)
	defer cancel()
	out, err := mv.sqs.ReceiveMessage(call, &sqs.ReceiveMessageInput{
		QueueUrl:              aws.String(t.sourceURL),
		MaxNumberOfMessages:   n,
		VisibilityTimeout:     moveVisibility,
		MessageAttributeNames: []string{"All"},
	})
	if err != nil {
		return 0, fmt.Errorf("receive from the source: %w", err)
	}
	if len(out.Messages) == 0 {
		return 0, nil
	}
	send := &sqs.SendMessageBatchInput{QueueUrl: aws.String(t.destURL)}
	del := &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(t.sourceURL)}
	for i, m := range out.Messages {
		id := strconv.Itoa(i)
		send.Entries = append(send.Entries, types.SendMessageBatchRequestEntry{Id: aws.String(id), MessageBody: m.Body, MessageAttributes: m.MessageAttributes})
		del.Entries = append(del.Entries, types.DeleteMessageBatchRequestEntry{Id: aws.String(id), ReceiptHandle: m.ReceiptHandle})
	}
	sent, err := mv.sqs.SendMessageBatch(call, send)
	if err != nil {
		return 0, fmt.Errorf("send to the destination: %w", err)
	}
	if len(sent.Failed) > 0 {
		// What was not sent stays in the source (its visibility runs out).
		keep := map[string]bool{}
		for _, f := range sent.Failed {
			keep[aws.ToString(f.Id)] = true
		}
		var entries []types.DeleteMessageBatchRequestEntry
		for _, e := range del.Entries {
			if !keep[aws.ToString(e.Id)] {
				entries = append(entries, e)
			}
		}
		del.Entries = entries
	}
	if len(del.Entries) > 0 {
		if _, err := mv.sqs.DeleteMessageBatch(call, del); err != nil {
			return 0, fmt.Errorf("delete from the source: %w", err)
		}
	}
	if len(sent.Failed) > 0 {
		return len(del.Entries), fmt.Errorf("send to the destination: %s: %s", aws.ToString(sent.Failed[0].Code), aws.ToString(sent.Failed[0].Message))
	}
	return len(del.Entries), nil
}

// failureReason names a failed call as SQS does in FailureReason: by its
// error code.
func failureReason(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode() + ": " + err.Error()
	}
	return err.Error()
}
