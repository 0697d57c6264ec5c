package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"herald/services/contract"
	"herald/services/internal/herald"
)

// unavailableRetryAfter is the Retry-After sent with a 503.
const unavailableRetryAfter = 5 * time.Second

// server is the Notification API: its handlers and what they share.
type server struct {
	cfg      config
	log      *slog.Logger
	metrics  *herald.Metrics
	keys     *keyStore
	limiter  *rateLimiter
	enq      *enqueuer
	ready    *readiness
	now      func() time.Time
	draining atomic.Bool

	unauthLog *logSampler // request lines of requests without a valid key
}

// deps are the outside world the server talks to; tests put fakes in.
type deps struct {
	sqs     sqsAPI
	secrets secretsAPI // nil without HERALD_API_KEYS_SECRET_ID
	now     func() time.Time

	// rateBuckets share the per-key rate limit among the tasks; nil
	// without the store (HERALD_STORE_TABLE).
	rateBuckets bucketLeaser
}

func newServer(cfg config, d deps, log *slog.Logger, metrics *herald.Metrics) (*server, error) {
	if d.now == nil {
		d.now = time.Now
	}
	q := &queue{api: d.sqs, url: cfg.QueueURL, maxBatchBytes: cfg.MaxMessageBytes}
	// Each batch of coalesced sends holds at least one request, so the
	// connection cap bounds the batches in flight.
	enq, err := newEnqueuer(q, cfg.BatchLinger, cfg.EnqueueTimeout, cfg.MaxConnections)
	if err != nil {
		return nil, err
	}
	return &server{
		cfg:     cfg,
		log:     log,
		metrics: metrics,
		keys:    newKeyStore(cfg.KeyHashes, cfg.KeysSecretID, d.secrets, log),
		limiter: newRateLimiter(cfg, d.rateBuckets, d.now, metrics, log),
		enq:     enq,
		ready:   &readiness{api: d.sqs, url: cfg.QueueURL, ttl: cfg.ReadyCache, now: d.now},
		now:     d.now,

		unauthLog: newLogSampler(unauthLogRate, unauthLogBurst),
	}, nil
}

// handler routes the API. Unknown paths get 404 and known paths with another
// method 405, both as problem documents.
func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/notifications", s.allow(http.MethodPost, true, s.postNotification))
	mux.Handle("/api/notifications/batch", s.allow(http.MethodPost, true, s.postBatch))
	mux.Handle("/api/openapi.json", s.allow(http.MethodGet, false, s.openAPI))
	mux.Handle("/api", s.allow(http.MethodGet, false, s.live))
	mux.Handle("/healthz", s.allow(http.MethodGet, false, s.live))
	mux.Handle("/readyz", s.allow(http.MethodGet, false, s.readyz))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, newProblem(http.StatusNotFound, "not-found", ""))
	})
	return s.observe(mux)
}

func (s *server) allow(method string, counted bool, h http.HandlerFunc) http.Handler {
	allowed := method
	if method == http.MethodGet {
		allowed = "GET, HEAD"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == method || (method == http.MethodGet && r.Method == http.MethodHead) {
			h(w, r)
			return
		}
		if counted {
			s.reject("method", 1)
		}
		w.Header().Set("Allow", allowed)
		writeProblem(w, newProblem(http.StatusMethodNotAllowed, "method-not-allowed", "use "+allowed))
	})
}

func (s *server) reject(reason string, n int) {
	s.metrics.CountBy(contract.Rejected, reason, float64(n))
}

// --- notifications

func (s *server) postNotification(w http.ResponseWriter, r *http.Request) {
	keyID, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	if d, ok := s.limiter.take(r.Context(), keyID, 1); !ok {
		s.rateLimited(w, d)
		return
	}
	body, ok := s.readJSON(w, r, 2*int64(s.cfg.MaxMessageBytes))
	if !ok {
		return
	}
	var req notificationRequest
	if de := decodeStrict(body, &req); de != nil {
		s.reject(de.reason(), 1)
		writeProblem(w, de.problem())
		return
	}
	p := s.prepare(req, keyID, s.now())
	if p.status != 0 {
		s.refuse(w, p)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.EnqueueTimeout)
	defer cancel()
	start := time.Now()
	res := s.enq.send(ctx, p.msg)
	if res.err != nil {
		s.enqueueFailed(w, r, res.err, 1)
		return
	}
	s.metrics.Observe(contract.EnqueueLatency, time.Since(start))
	s.metrics.Count(contract.Accepted, 1)
	info(r).notificationID = p.id
	writeJSON(w, "application/json", http.StatusAccepted, map[string]string{"id": p.id, "status": "queued"})
}

// refuse answers a request that prepare found invalid or too large.
func (s *server) refuse(w http.ResponseWriter, p prepared) {
	if p.status == http.StatusRequestEntityTooLarge {
		s.reject("size", 1)
		writeProblem(w, newProblem(p.status, "too-large", p.detail))
		return
	}
	s.reject("validation", 1)
	pr := newProblem(http.StatusBadRequest, "validation", p.detail)
	pr.Errors = p.errs
	writeProblem(w, pr)
}

func (s *server) enqueueFailed(w http.ResponseWriter, r *http.Request, e *enqueueError, n int) {
	s.reject(e.reason, n)
	level := slog.LevelWarn
	if e.status == http.StatusInternalServerError {
		level = slog.LevelError
	}
	s.log.LogAttrs(r.Context(), level, "enqueue failed", slog.String("requestId", info(r).requestID),
		slog.Int("status", e.status), slog.String("err", e.Error()))
	kind := map[int]string{
		http.StatusServiceUnavailable:    "unavailable",
		http.StatusBadRequest:            "validation",
		http.StatusRequestEntityTooLarge: "too-large",
	}[e.status]
	if kind == "" {
		kind = "queue-error"
	}
	if e.status == http.StatusServiceUnavailable {
		setRetryAfter(w, unavailableRetryAfter)
	}
	writeProblem(w, newProblem(e.status, kind, e.detail))
}

// batchItem is the result of one notification of a batch.
type batchItem struct {
	Index  int                `json:"index"`
	Status int                `json:"status"`
	ID     string             `json:"id,omitempty"`
	Detail string             `json:"detail,omitempty"`
	Errors herald.FieldErrors `json:"errors,omitempty"`
}

// batchReply answers a batch. When nothing was queued it is also an RFC 9457
// problem document (type, title and detail set).
type batchReply struct {
	Type     string      `json:"type,omitempty"`
	Title    string      `json:"title,omitempty"`
	Status   int         `json:"status"`
	Detail   string      `json:"detail,omitempty"`
	Accepted int         `json:"accepted"`
	Rejected int         `json:"rejected"`
	Results  []batchItem `json:"results"`
}

func (s *server) postBatch(w http.ResponseWriter, r *http.Request) {
	keyID, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	body, ok := s.readJSON(w, r, sqsMaxBatch*int64(s.cfg.MaxMessageBytes))
	if !ok {
		return
	}
	var req batchRequest
	if de := decodeStrict(body, &req); de != nil {
		s.reject(de.reason(), 1)
		writeProblem(w, de.problem())
		return
	}
	n := len(req.Notifications)
	if n == 0 || n > maxBatchItems {
		s.reject("validation", 1)
		de := decodeError{status: http.StatusBadRequest, kind: "validation",
			field: herald.FieldError{Field: "notifications", Detail: fmt.Sprintf("%d notifications; send 1 to %d", n, maxBatchItems)}}
		writeProblem(w, de.problem())
		return
	}
	if d, ok := s.limiter.take(r.Context(), keyID, n); !ok {
		s.rateLimited(w, d)
		return
	}

	items := make([]batchItem, n)
	var msgs []message
	var at []int // index of each message in items
	now := s.now()
	for i, raw := range req.Notifications {
		items[i].Index = i
		var one notificationRequest
		if de := decodeStrict(raw, &one); de != nil {
			s.reject(de.reason(), 1)
			items[i].Status, items[i].Detail, items[i].Errors = http.StatusBadRequest, "the notification is not valid", herald.FieldErrors{de.field}
			continue
		}
		p := s.prepare(one, keyID, now)
		if p.status != 0 {
			s.reject(map[bool]string{true: "size", false: "validation"}[p.status == http.StatusRequestEntityTooLarge], 1)
			items[i].Status, items[i].Detail, items[i].Errors = p.status, p.detail, p.errs
			continue
		}
		items[i].ID = p.id
		msgs = append(msgs, p.msg)
		at = append(at, i)
	}
	if len(msgs) > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.EnqueueTimeout)
		defer cancel()
		start := time.Now()
		for j, res := range s.enq.sendMany(ctx, msgs) {
			it := &items[at[j]]
			if res.err != nil {
				s.reject(res.err.reason, 1)
				s.log.LogAttrs(r.Context(), slog.LevelWarn, "enqueue failed", slog.String("requestId", info(r).requestID),
					slog.Int("index", at[j]), slog.Int("status", res.err.status), slog.String("err", res.err.Error()))
				it.ID, it.Status, it.Detail = "", res.err.status, res.err.detail
				continue
			}
			it.Status = http.StatusAccepted
		}
		s.metrics.Observe(contract.EnqueueLatency, time.Since(start))
	}
	s.answerBatch(w, r, items)
}

// answerBatch picks the overall status: 202 when every notification was
// queued, 207 when some were, and when none was 503 if any could be retried
// later, else 500 if the queue refused any, else 400.
func (s *server) answerBatch(w http.ResponseWriter, r *http.Request, items []batchItem) {
	reply := batchReply{Results: items}
	any503, any500 := false, false
	for _, it := range items {
		switch it.Status {
		case http.StatusAccepted:
			reply.Accepted++
		case http.StatusServiceUnavailable:
			any503 = true
		case http.StatusInternalServerError:
			any500 = true
		}
	}
	reply.Rejected = len(items) - reply.Accepted
	s.metrics.Count(contract.Accepted, float64(reply.Accepted))
	info(r).accepted, info(r).rejected = reply.Accepted, reply.Rejected
	if any503 {
		setRetryAfter(w, unavailableRetryAfter)
	}
	switch {
	case reply.Rejected == 0:
		reply.Status = http.StatusAccepted
	case reply.Accepted > 0:
		reply.Status = http.StatusMultiStatus
	default:
		kind := "validation"
		reply.Status = http.StatusBadRequest
		if any503 {
			kind, reply.Status = "unavailable", http.StatusServiceUnavailable
		} else if any500 {
			kind, reply.Status = "queue-error", http.StatusInternalServerError
		}
		reply.Type, reply.Title = problemTypeBase+kind, problemTitles[kind]
		reply.Detail = "no notification of the batch was queued; see results"
		writeJSON(w, "application/problem+json", reply.Status, reply)
		return
	}
	writeJSON(w, "application/json", reply.Status, reply)
}

// --- request checks shared by both endpoints

// authenticate accepts `Authorization: Bearer <key>` when the key's hash is
// one of the configured ones, and answers 401 otherwise.
func (s *server) authenticate(w http.ResponseWriter, r *http.Request) (string, bool) {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		s.reject("auth", 1)
		w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
		writeProblem(w, newProblem(http.StatusUnauthorized, "unauthorized", "send Authorization: Bearer <API key>"))
		return "", false
	}
	keyID, ok := s.keys.authenticate(token)
	if !ok {
		s.reject("auth", 1)
		w.Header().Set("WWW-Authenticate", `Bearer realm="herald", error="invalid_token"`)
		writeProblem(w, newProblem(http.StatusUnauthorized, "unauthorized", "the API key is not valid"))
		return "", false
	}
	info(r).keyID = keyID
	return keyID, true
}

func (s *server) rateLimited(w http.ResponseWriter, d time.Duration) {
	s.reject("rate", 1)
	setRetryAfter(w, d)
	writeProblem(w, newProblem(http.StatusTooManyRequests, "rate-limited",
		fmt.Sprintf("over %g notifications a second for this API key; retry later", s.cfg.RateLimit)))
}

// readJSON checks the content type and reads a body of at most limit bytes.
func (s *server) readJSON(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	if !isJSON(r.Header.Get("Content-Type")) {
		s.reject("media", 1)
		writeProblem(w, newProblem(http.StatusUnsupportedMediaType, "unsupported-media-type",
			"send Content-Type: application/json (UTF-8)"))
		return nil, false
	}
	tooLarge := func() ([]byte, bool) {
		s.reject("size", 1)
		writeProblem(w, newProblem(http.StatusRequestEntityTooLarge, "too-large", fmt.Sprintf("the body is over %d bytes", limit)))
		return nil, false
	}
	if r.ContentLength > limit {
		return tooLarge()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return tooLarge()
	case err != nil:
		s.reject("validation", 1)
		writeProblem(w, newProblem(http.StatusBadRequest, "malformed", "the body could not be read"))
		return nil, false
	}
	return body, true
}

// isJSON accepts application/json and application/*+json, in UTF-8.
func isJSON(contentType string) bool {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	if mt != "application/json" && !(strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

// --- health

func (s *server) live(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, "application/json", http.StatusOK, map[string]string{"status": "ok", "service": string(contract.API)})
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		setRetryAfter(w, unavailableRetryAfter)
		writeJSON(w, "application/json", http.StatusServiceUnavailable, map[string]string{"status": "draining"})
		return
	}
	if err := s.ready.check(r.Context()); err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "queue not reachable", slog.String("err", err.Error()))
		setRetryAfter(w, unavailableRetryAfter)
		writeJSON(w, "application/json", http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "detail": "the queue cannot be reached"})
		return
	}
	body := map[string]string{"status": "ready"}
	if v := s.keys.secretVersion(); v != "" {
		body["apiKeysVersion"] = v
	}
	writeJSON(w, "application/json", http.StatusOK, body)
}

// readiness asks SQS for the queue's attributes, and reuses the answer (good
// or bad) for ttl so that probes cost at most one call per ttl.
type readiness struct {
	api sqsAPI
	url string
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	checked time.Time
	err     error
}

func (r *readiness) check(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.checked.IsZero() && r.now().Sub(r.checked) < r.ttl {
		return r.err
	}
	// A probe that hangs up must not leave a "canceled" answer in the cache.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_, err := r.api.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(r.url),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		err = fmt.Errorf("get attributes of %s: %w", r.url, err)
	}
	r.checked, r.err = r.now(), err
	return err
}
