package dynamolocal

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
)

// WriteAnswer is DynamoDB's answer to a write of the keyed path (PutItem,
// UpdateItem, TransactWriteItems, BatchWriteItem) whose condition holds,
// when no return values were asked for (Begin and Complete ask for the old
// item only when the condition fails); false for any other operation.
func WriteAnswer(op string) (string, bool) {
	switch op {
	case "PutItem", "UpdateItem", "TransactWriteItems":
		return `{}`, true
	case "BatchWriteItem":
		return `{"UnprocessedItems":{}}`, true
	}
	return "", false
}

// WritesOK is a DynamoDB endpoint (an http.Handler) that answers each
// write WriteAnswer knows with that answer, at once, with DynamoDB's
// X-Amz-Crc32, and refuses every other request with a ValidationException
// that names it. It stores nothing and checks no condition: it stands for
// DynamoDB only where every write's condition holds (every key new), so
// that a benchmark measures its client and not the store. Stats counts its
// requests by operation, as the proxy's do. Make it with NewWritesOK.
type WritesOK struct {
	mu  sync.Mutex
	ops map[string]OpStats
}

func NewWritesOK() *WritesOK { return &WritesOK{ops: map[string]OpStats{}} }

// Stats counts the requests served, by operation.
func (w *WritesOK) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := Stats{Operations: make(map[string]OpStats, len(w.ops))}
	for op, o := range w.ops {
		s.Operations[op] = o
	}
	return s
}

func (w *WritesOK) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	op, isOp := strings.CutPrefix(r.Header.Get("X-Amz-Target"), targetPrefix)
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	text, known := WriteAnswer(op)
	var a answer
	switch {
	case r.Method != http.MethodPost || !isOp:
		a = awsError(http.StatusBadRequest, "UnknownOperationException", "not a DynamoDB request", nil)
	case err != nil || !json.Valid(body):
		a = awsError(http.StatusBadRequest, "SerializationException", "the request body is not JSON", nil)
	case !known:
		a = awsError(http.StatusBadRequest, "ValidationException", op+" is not served by this writes-ok endpoint: it answers the keyed path's writes only", nil)
	default:
		a = rawAnswer(http.StatusOK, []byte(text))
	}
	w.mu.Lock()
	o := w.ops[op]
	o.Requests++
	if a.status >= 400 {
		o.Errors++
	}
	w.ops[op] = o
	w.mu.Unlock()
	writeAnswer(rw, a)
}
