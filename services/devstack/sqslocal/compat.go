package sqslocal

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Admiral-Piett/goaws/app/models"
)

// compat corrects goaws v0.5.4 where its JSON-protocol answers differ from
// SQS's, so that code written for SQS as documented runs against it
// unchanged. Herald's services know nothing of goaws: every quirk they would
// meet is fixed here.
//
//   - SendMessageBatch: goaws writes its query-protocol element names
//     ({"SendMessageBatchResultEntry": [...], "BatchResultErrorEntry":
//     [...]}) where the JSON protocol has {"Successful": [...], "Failed":
//     [...]}. The SDK then sees a batch with neither successes nor failures,
//     and a careful client treats every entry as not sent (and sends it
//     again).
//   - ReceiveMessage: goaws reports ApproximateReceiveCount 1 on every
//     receive (it never counts them), the receive time as SentTimestamp,
//     and the latest receive as ApproximateFirstReceiveTimestamp. Here a
//     message's receives are counted (the count moves with it to the
//     dead-letter queue, as on SQS), SentTimestamp is when it was sent, and
//     the first receive is kept.
//   - ChangeMessageVisibilityBatch: goaws has no such action. It is served
//     here entry by entry through goaws's ChangeMessageVisibility, with
//     SQS's batch rules (1 to 10 entries, distinct ids) and its
//     Successful/Failed answer.
type compat struct {
	next http.Handler

	mu sync.Mutex
	// firstReceive is each received message's first receive, by message id;
	// a delete forgets it.
	firstReceive map[string]time.Time
}

func newCompat(next http.Handler) *compat {
	return &compat{next: next, firstReceive: map[string]time.Time{}}
}

func (c *compat) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Header.Get("X-Amz-Target") {
	case sqsTargetPrefix + "SendMessageBatch":
		c.rewrite(w, r, fixSendMessageBatch)
	case sqsTargetPrefix + "ReceiveMessage":
		c.rewrite(w, r, c.fixReceiveMessage)
	case sqsTargetPrefix + "ChangeMessageVisibilityBatch":
		c.changeVisibilityBatch(w, r)
	case sqsTargetPrefix + "DeleteMessage", sqsTargetPrefix + "DeleteMessageBatch":
		c.forgetDeleted(w, r)
	default:
		c.next.ServeHTTP(w, r)
	}
}

// rewrite serves r through goaws and hands a successful answer's body to fix.
func (c *compat) rewrite(w http.ResponseWriter, r *http.Request, fix func([]byte) []byte) {
	buf := &bufferedResponse{header: http.Header{}, status: http.StatusOK}
	c.next.ServeHTTP(buf, r)
	body := buf.body.Bytes()
	if buf.status == http.StatusOK {
		body = fix(body)
	}
	for k, v := range buf.header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(buf.status)
	w.Write(body)
}

func fixSendMessageBatch(body []byte) []byte {
	var goaws struct {
		Entries []json.RawMessage `json:"SendMessageBatchResultEntry"`
		Errors  []json.RawMessage `json:"BatchResultErrorEntry"`
	}
	if err := json.Unmarshal(body, &goaws); err != nil {
		return body
	}
	fixed, err := json.Marshal(map[string][]json.RawMessage{
		"Successful": append([]json.RawMessage{}, goaws.Entries...),
		"Failed":     append([]json.RawMessage{}, goaws.Errors...),
	})
	if err != nil {
		return body
	}
	return fixed
}

// fixReceiveMessage sets each received message's counts and times from
// goaws's own record of it, and counts this receive.
func (c *compat) fixReceiveMessage(body []byte) []byte {
	var out struct {
		Messages []map[string]json.RawMessage `json:"Messages"`
	}
	if err := json.Unmarshal(body, &out); err != nil || len(out.Messages) == 0 {
		return body
	}
	now := time.Now()
	models.SyncQueues.Lock()
	c.mu.Lock()
	for _, m := range out.Messages {
		var id string
		var attrs map[string]string
		if json.Unmarshal(m["MessageId"], &id) != nil || json.Unmarshal(m["Attributes"], &attrs) != nil || attrs == nil {
			continue
		}
		msg := findMessage(id)
		if msg == nil {
			continue
		}
		msg.NumberOfReceives++
		first, seen := c.firstReceive[id]
		if !seen {
			first = now
			c.firstReceive[id] = now
		}
		attrs["ApproximateReceiveCount"] = strconv.Itoa(msg.NumberOfReceives)
		attrs["SentTimestamp"] = strconv.FormatInt(msg.SentTime.UnixMilli(), 10)
		attrs["ApproximateFirstReceiveTimestamp"] = strconv.FormatInt(first.UnixMilli(), 10)
		m["Attributes"], _ = json.Marshal(attrs)
	}
	c.mu.Unlock()
	models.SyncQueues.Unlock()
	fixed, err := json.Marshal(out)
	if err != nil {
		return body
	}
	return fixed
}

// findMessage is goaws's record of a message, in whichever queue holds it.
// Callers hold models.SyncQueues.
func findMessage(id string) *models.SqsMessage {
	for _, q := range models.SyncQueues.Queues {
		for i := range q.Messages {
			if q.Messages[i].Uuid == id {
				return &q.Messages[i]
			}
		}
	}
	return nil
}

// forgetDeleted serves a delete and forgets the first receive of what it
// deleted: goaws's receipt handles are "<message id>#<random>".
func (c *compat) forgetDeleted(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeAPIError(w, invalidParameter("read request: %v", err))
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var in struct {
		ReceiptHandle string
		Entries       []struct{ ReceiptHandle string }
	}
	if json.Unmarshal(body, &in) == nil {
		c.mu.Lock()
		for _, h := range append([]string{in.ReceiptHandle}, receipts(in.Entries)...) {
			if id, _, ok := strings.Cut(h, "#"); ok {
				delete(c.firstReceive, id)
			}
		}
		c.mu.Unlock()
	}
	c.next.ServeHTTP(w, r)
}

func receipts(entries []struct{ ReceiptHandle string }) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.ReceiptHandle
	}
	return out
}

// visibilityEntry is one entry of ChangeMessageVisibilityBatch.
type visibilityEntry struct {
	Id                string
	ReceiptHandle     string
	VisibilityTimeout int32
}

// batchFailure is a Failed entry of an SQS batch answer.
type batchFailure struct {
	Id          string
	Code        string
	Message     string
	SenderFault bool
}

// changeVisibilityBatch serves ChangeMessageVisibilityBatch through goaws's
// ChangeMessageVisibility, one entry at a time.
func (c *compat) changeVisibilityBatch(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeAPIError(w, invalidParameter("read request: %v", err))
		return
	}
	var in struct {
		QueueUrl string
		Entries  []visibilityEntry
	}
	if apiErr := decodeInput(body, &in); apiErr != nil {
		writeAPIError(w, apiErr)
		return
	}
	switch ids := map[string]bool{}; {
	case len(in.Entries) == 0:
		writeAPIError(w, &apiError{status: http.StatusBadRequest, typ: "EmptyBatchRequest", query: "AWS.SimpleQueueService.EmptyBatchRequest", message: "the batch request contains no entries"})
		return
	case len(in.Entries) > 10:
		writeAPIError(w, &apiError{status: http.StatusBadRequest, typ: "TooManyEntriesInBatchRequest", query: "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", message: "at most 10 entries"})
		return
	default:
		for _, e := range in.Entries {
			if ids[e.Id] {
				writeAPIError(w, &apiError{status: http.StatusBadRequest, typ: "BatchEntryIdsNotDistinct", query: "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", message: "two entries have the id " + e.Id})
				return
			}
			ids[e.Id] = true
		}
	}
	type successful struct{ Id string }
	out := struct {
		Successful []successful
		Failed     []batchFailure
	}{Successful: []successful{}, Failed: []batchFailure{}}
	for _, e := range in.Entries {
		one, _ := json.Marshal(map[string]any{"QueueUrl": in.QueueUrl, "ReceiptHandle": e.ReceiptHandle, "VisibilityTimeout": e.VisibilityTimeout})
		req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, r.URL.String(), bytes.NewReader(one))
		if err != nil {
			out.Failed = append(out.Failed, batchFailure{Id: e.Id, Code: "InternalError", Message: err.Error()})
			continue
		}
		req.Header = r.Header.Clone()
		req.Header.Set("X-Amz-Target", sqsTargetPrefix+"ChangeMessageVisibility")
		rec := &bufferedResponse{header: http.Header{}, status: http.StatusOK}
		c.next.ServeHTTP(rec, req)
		if rec.status == http.StatusOK {
			out.Successful = append(out.Successful, successful{Id: e.Id})
			continue
		}
		// goaws answers a receipt handle it does not hold (deleted, or
		// visible again) with MessageNotInFlight; SQS names it so too.
		out.Failed = append(out.Failed, batchFailure{Id: e.Id, Code: goawsErrorCode(rec.body.Bytes()), Message: "the message is not in flight", SenderFault: true})
	}
	writeJSON(w, out)
}

// goawsErrorCode is the code of a goaws JSON error ({"__type": "...#Code"}
// or {"Code": ...}), "InvalidParameterValue" when it names none.
func goawsErrorCode(body []byte) string {
	var e struct {
		Type string `json:"__type"`
		Code string
	}
	json.Unmarshal(body, &e)
	switch {
	case e.Code != "":
		return e.Code
	case e.Type != "":
		_, code, _ := strings.Cut(e.Type, "#")
		return code
	}
	return "InvalidParameterValue"
}

// bufferedResponse holds a handler's answer so it can be rewritten.
type bufferedResponse struct {
	header      http.Header
	status      int
	wroteHeader bool
	body        bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(status int) {
	if !b.wroteHeader {
		b.status, b.wroteHeader = status, true
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	b.wroteHeader = true
	return b.body.Write(p)
}
