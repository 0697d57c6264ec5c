package sqslocal

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/Admiral-Piett/goaws/app/models"
)

// StatsPath is where the emulator answers GET with its Stats as JSON. It is
// not an SQS action, so reading it is not counted.
const StatsPath = "/_herald/stats"

// Stats counts the SQS requests the emulator served, by action, since it
// started: what SQS would bill. Benchmarks read it before and after a run
// and report the difference.
type Stats struct {
	Actions map[string]ActionStats `json:"actions"`
	// Queues holds each queue's messages now, by queue name.
	Queues map[string]QueueDepth `json:"queues"`
}

// ActionStats counts one action's requests.
type ActionStats struct {
	// Requests is every request with this action, counted on arrival (so a
	// long poll still waiting is in it).
	Requests int64 `json:"requests"`
	// InFlight requests have arrived and not been answered yet.
	InFlight int64 `json:"inFlight"`
	// Errors are answers with an HTTP status of 400 or more.
	Errors int64 `json:"errors"`
	// Entries is the entries of the batch calls (SendMessageBatch,
	// DeleteMessageBatch, ChangeMessageVisibilityBatch) answered so far; 1
	// per request for the single-message calls.
	Entries int64 `json:"entries"`
	// Messages is the messages ReceiveMessage handed out.
	Messages int64 `json:"messages"`
	// Empty counts ReceiveMessage answers without a message.
	Empty int64 `json:"empty"`
}

// QueueDepth is a queue's messages: Visible can be received, Hidden are in
// flight (received, not yet deleted) or delayed.
type QueueDepth struct {
	Visible int `json:"visible"`
	Hidden  int `json:"hidden"`
}

// counter is the middleware that keeps Stats.
type counter struct {
	mu      sync.Mutex
	actions map[string]*ActionStats
}

func newCounter() *counter { return &counter{actions: map[string]*ActionStats{}} }

// Snapshot returns the counts so far and the queues' depths.
func (c *counter) Snapshot() Stats {
	s := Stats{Actions: map[string]ActionStats{}, Queues: queueDepths()}
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, a := range c.actions {
		s.Actions[name] = *a
	}
	return s
}

func (c *counter) update(action string, f func(*ActionStats)) {
	c.mu.Lock()
	a := c.actions[action]
	if a == nil {
		a = &ActionStats{}
		c.actions[action] = a
	}
	f(a)
	c.mu.Unlock()
}

// wrap counts every SQS request that next serves and answers StatsPath.
func (c *counter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == StatsPath && r.Method == http.MethodGet {
			b, err := json.Marshal(c.Snapshot())
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write(b)
			return
		}
		action := requestAction(r)
		entries := int64(1)
		if strings.HasSuffix(action, "Batch") {
			// Read the entries from the body and put it back for goaws.
			body, err := io.ReadAll(r.Body)
			r.Body.Close()
			if err != nil {
				http.Error(w, "read request: "+err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			var in struct{ Entries []json.RawMessage }
			json.Unmarshal(body, &in)
			entries = int64(len(in.Entries))
		}
		c.update(action, func(a *ActionStats) { a.Requests++; a.InFlight++ })
		rec := &recorder{ResponseWriter: w, status: http.StatusOK, keep: action == "ReceiveMessage"}
		defer func() {
			c.update(action, func(a *ActionStats) {
				a.InFlight--
				if rec.status >= 400 {
					a.Errors++
					return
				}
				a.Entries += entries
				if rec.keep {
					var out struct{ Messages []json.RawMessage }
					json.Unmarshal(rec.body.Bytes(), &out)
					a.Messages += int64(len(out.Messages))
					if len(out.Messages) == 0 {
						a.Empty++
					}
				}
			})
		}()
		next.ServeHTTP(rec, r)
	})
}

// requestAction names the SQS action of a JSON-protocol request (header
// X-Amz-Target: AmazonSQS.<Action>) or a query-protocol one (Action=).
func requestAction(r *http.Request) string {
	if t := r.Header.Get("X-Amz-Target"); t != "" {
		if _, a, ok := strings.Cut(t, "."); ok {
			return a
		}
		return t
	}
	if a := r.URL.Query().Get("Action"); a != "" {
		return a
	}
	return "other"
}

// recorder notes the status of an answer and, when keep is set, its body.
type recorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	keep        bool
	body        bytes.Buffer
}

func (r *recorder) WriteHeader(status int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = status, true
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wroteHeader = true
	if r.keep {
		r.body.Write(p)
	}
	return r.ResponseWriter.Write(p)
}

// queueDepths reads every queue's depth from goaws's state.
func queueDepths() map[string]QueueDepth {
	models.SyncQueues.RLock()
	defer models.SyncQueues.RUnlock()
	out := map[string]QueueDepth{}
	names := make([]string, 0, len(models.SyncQueues.Queues))
	for name := range models.SyncQueues.Queues {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		q := models.SyncQueues.Queues[name]
		var d QueueDepth
		for i := range q.Messages {
			m := &q.Messages[i]
			if m.ReceiptHandle != "" || !m.IsReadyForReceipt() {
				d.Hidden++
			} else {
				d.Visible++
			}
		}
		out[name] = d
	}
	return out
}
