package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"herald/services/contract"
	"herald/services/internal/herald"
	"herald/services/internal/store"
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
	state    stateStore // nil without HERALD_STORE_TABLE
	keyw     *keyWriter // the state store's keyed writes; nil without it
	ids      *store.IDs // with state
	now      func() time.Time
	draining atomic.Bool

	unauthLog *logSampler // request lines of requests without a valid key
}

// deps are the outside world the server talks to; tests put fakes in.
type deps struct {
	sqs     sqsAPI
	secrets secretsAPI // nil without HERALD_API_KEYS_SECRET_ID
	// state and ids: the state store and the id secret, both or neither
	// (without HERALD_STORE_TABLE).
	state stateStore
	ids   *store.IDs
	now   func() time.Time
	// after is time.After for the batchers of keyed writes; tests set it.
	after func(time.Duration) <-chan time.Time

	// rateBuckets share the per-key rate limit among the tasks; nil
	// without the store (HERALD_STORE_TABLE).
	rateBuckets bucketLeaser
}

func newServer(cfg config, d deps, log *slog.Logger, metrics *herald.Metrics) (*server, error) {
	if d.now == nil {
		d.now = time.Now
	}
	if d.after == nil {
		d.after = time.After
	}
	if (d.state == nil) != (d.ids == nil) {
		return nil, errors.New("the state store and the id secret go together")
	}
	q := &queue{api: d.sqs, url: cfg.QueueURL, maxBatchBytes: cfg.MaxMessageBytes}
	// Each batch of coalesced sends holds at least one request, so the
	// connection cap bounds the batches in flight.
	enq, err := newEnqueuer(q, cfg.BatchLinger, cfg.EnqueueTimeout, cfg.MaxConnections)
	if err != nil {
		return nil, err
	}
	keyw, err := newKeyWriter(d.state, cfg.BatchLinger, cfg.MaxConnections, d.after)
	if err != nil {
		enq.close()
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
		state:   d.state,
		keyw:    keyw,
		ids:     d.ids,
		now:     d.now,

		unauthLog: newLogSampler(unauthLogRate, unauthLogBurst),
	}, nil
}

// close writes what the batchers gathered (sends, keyed writes) and waits
// for their calls. Call it after the HTTP server has drained.
func (s *server) close() {
	s.enq.close()
	s.keyw.close()
}

// handler routes the API. Unknown paths get 404 and known paths with another
// method 405, both as problem documents.
func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/notifications", s.allow(http.MethodPost, true, s.postNotification))
	mux.Handle("/api/notifications/batch", s.allow(http.MethodPost, true, s.postBatch))
	mux.Handle("/api/notifications/{id}", s.allow(http.MethodGet, false, s.getNotification))
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
	key, hasKey, ok := s.idempotencyHeader(w, r)
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
	if req.IdempotencyKey != nil {
		s.reject("validation", 1)
		pr := newProblem(http.StatusBadRequest, "validation", "the notification is not valid")
		pr.Errors = herald.FieldErrors{{Field: "idempotencyKey", Detail: "only batch items carry it; send the Idempotency-Key header"}}
		writeProblem(w, pr)
		return
	}
	now := s.now()
	id := keyedPlaceholder // a keyed notification's id comes from Begin
	if !hasKey {
		id = s.newID(keyID)
	}
	p := s.prepare(req, keyID, id, now)
	if p.status != 0 {
		s.refuse(w, p)
		return
	}
	var k *keyed
	if hasKey {
		// Valid, so worth recording: the key is bound to this body.
		k = &keyed{key: key, hash: bodyHash(body)}
		s.begin(r.Context(), keyID, k)
		if ref, done := s.refusal(r, k); done {
			s.answerRefusal(w, r, ref)
			return
		}
		p = s.withID(p, k.begun.ID)
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.EnqueueTimeout)
	defer cancel()
	start := time.Now()
	res := s.enq.send(ctx, p.msg)
	answer := acceptedBody(p.id)
	if k != nil {
		s.settle(r, k, res, answer)
	}
	if res.err != nil {
		if k != nil && res.err.unknown {
			res.err.detail = detailUnknownKeyed
		}
		s.enqueueFailed(w, r, res.err, 1)
		return
	}
	s.metrics.Observe(contract.EnqueueLatency, time.Since(start))
	s.metrics.Count(contract.Accepted, 1)
	info(r).notificationID = p.id
	writeRaw(w, "application/json", http.StatusAccepted, answer)
}

// answerRefusal answers a keyed notification that Begin says not to send.
func (s *server) answerRefusal(w http.ResponseWriter, r *http.Request, ref keyedRefusal) {
	if ref.replay != nil {
		// The first request's answer, as it was.
		info(r).notificationID = ref.id
		writeRaw(w, "application/json", ref.status, ref.replay)
		return
	}
	s.reject(ref.kind, 1)
	if ref.retryAfter > 0 {
		setRetryAfter(w, ref.retryAfter)
	}
	writeProblem(w, newProblem(ref.status, ref.kind, ref.detail))
}

// idempotencyHeader reads the Idempotency-Key header, and answers a request
// whose key is not valid, or that has one when there is no store.
func (s *server) idempotencyHeader(w http.ResponseWriter, r *http.Request) (key string, present, ok bool) {
	key, present, bad := idempotencyKeyOf(r)
	switch {
	case bad != "":
		s.reject("validation", 1)
		writeProblem(w, headerProblem(bad))
		return "", false, false
	case present && s.state == nil:
		s.reject("validation", 1)
		writeProblem(w, noStore("an Idempotency-Key"))
		return "", false, false
	}
	return key, present, true
}

// headerProblem refuses a request for its Idempotency-Key header.
func headerProblem(detail string) problem {
	pr := newProblem(http.StatusBadRequest, "validation", "the Idempotency-Key header is not valid")
	pr.Errors = herald.FieldErrors{{Field: "Idempotency-Key", Detail: detail}}
	return pr
}

// noStore refuses what needs the state store when the API runs without.
func noStore(what string) problem {
	return newProblem(http.StatusNotImplemented, "no-store",
		"this API runs without a state store ("+contract.StoreTable.Name+" unset, local use only): it cannot honour "+what)
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
	batchKey, batchKeyed, ok := s.idempotencyHeader(w, r)
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
	var at []int      // index of each message in items
	var keys []*keyed // of each message: nil without a key
	var toBegin []int // items with a key, to record
	byItem := map[int]*keyed{}
	var batchHash *[32]byte
	preps := make([]prepared, n) // of the keyed items, for their derived ids
	now := s.now()
	for i, raw := range req.Notifications {
		items[i].Index = i
		one := &notificationRequest{}
		if de := decodeStrict(raw, one); de != nil {
			s.reject(de.reason(), 1)
			items[i].Status, items[i].Detail, items[i].Errors = http.StatusBadRequest, "the notification is not valid", herald.FieldErrors{de.field}
			continue
		}
		id := keyedPlaceholder // a keyed item's id comes from Begin
		if !batchKeyed && one.IdempotencyKey == nil {
			id = s.newID(keyID)
		}
		p := s.prepare(*one, keyID, id, now)
		if one.IdempotencyKey != nil {
			if batchKeyed {
				p.status, p.detail = http.StatusBadRequest, "the notification is not valid"
				p.errs = append(p.errs, herald.FieldError{Field: "idempotencyKey", Detail: "the batch has an Idempotency-Key header: its items carry none"})
			} else if err := checkIdempotencyKey(*one.IdempotencyKey); err != nil {
				p.status, p.detail = http.StatusBadRequest, "the notification is not valid"
				p.errs = append(p.errs, herald.FieldError{Field: "idempotencyKey", Detail: err.Error()})
			}
		}
		if p.status != 0 {
			s.reject(map[bool]string{true: "size", false: "validation"}[p.status == http.StatusRequestEntityTooLarge], 1)
			items[i].Status, items[i].Detail, items[i].Errors = p.status, p.detail, p.errs
			continue
		}
		preps[i] = p
		if one.IdempotencyKey != nil {
			if s.state == nil {
				s.reject("validation", 1)
				items[i].Status, items[i].Detail = http.StatusNotImplemented, noStore("an idempotencyKey").Detail
				continue
			}
			// The item's own JSON text is what its key is bound to.
			byItem[i] = &keyed{key: *one.IdempotencyKey, hash: bodyHash(raw)}
			toBegin = append(toBegin, i)
			continue
		}
		if batchKeyed {
			// The header's key covers the batch: each item is recorded
			// under it and its index (a newline, which no key holds,
			// between), bound to the whole body.
			if batchHash == nil {
				h := bodyHash(body)
				batchHash = &h
			}
			byItem[i] = &keyed{key: batchKey + "\n" + strconv.Itoa(i), hash: *batchHash}
			toBegin = append(toBegin, i)
			continue
		}
		items[i].ID = p.id
		msgs = append(msgs, p.msg)
		at = append(at, i)
		keys = append(keys, nil)
	}
	// Each keyed item's conditional Put, in transactions shared with
	// concurrent requests.
	var wg sync.WaitGroup
	for _, i := range toBegin {
		wg.Go(func() { s.begin(r.Context(), keyID, byItem[i]) })
	}
	wg.Wait()
	for _, i := range toBegin {
		k := byItem[i]
		if ref, done := s.refusal(r, k); done {
			it := &items[i]
			if ref.replay != nil {
				it.Status, it.ID = ref.status, replayedID(ref.replay)
				continue
			}
			s.reject(ref.kind, 1)
			it.Status, it.Detail = ref.status, ref.detail
			continue
		}
		p := s.withID(preps[i], k.begun.ID)
		items[i].ID = p.id
		msgs = append(msgs, p.msg)
		at = append(at, i)
		keys = append(keys, k)
	}
	if len(msgs) > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.EnqueueTimeout)
		defer cancel()
		start := time.Now()
		results := s.enq.sendMany(ctx, msgs)
		for j, res := range results {
			if k := keys[j]; k != nil {
				wg.Go(func() { s.settle(r, k, res, acceptedBody(k.begun.ID)) })
			}
		}
		for j, res := range results {
			it := &items[at[j]]
			if res.err != nil {
				s.reject(res.err.reason, 1)
				s.log.LogAttrs(r.Context(), slog.LevelWarn, "enqueue failed", slog.String("requestId", info(r).requestID),
					slog.Int("index", at[j]), slog.Int("status", res.err.status), slog.String("err", res.err.Error()))
				it.ID, it.Status, it.Detail = "", res.err.status, res.err.detail
				if keys[j] != nil && res.err.unknown {
					it.Detail = detailUnknownKeyed
				}
				continue
			}
			it.Status = http.StatusAccepted
		}
		s.metrics.Observe(contract.EnqueueLatency, time.Since(start))
		wg.Wait()
	}
	s.answerBatch(w, r, items)
}

// answerBatch picks the overall status: 202 when every notification was
// queued (or replayed), 207 when some were, and when none was 503 if any
// could be retried later, else 500 if the queue refused any, else 409 if
// any key is in flight, else 422 if every key was reused with another
// body, else 400.
func (s *server) answerBatch(w http.ResponseWriter, r *http.Request, items []batchItem) {
	reply := batchReply{Results: items}
	any503, any500, any409, all422 := false, false, false, true
	for _, it := range items {
		if it.Status != http.StatusAccepted && it.Status != http.StatusUnprocessableEntity {
			all422 = false
		}
		switch it.Status {
		case http.StatusAccepted:
			reply.Accepted++
		case http.StatusServiceUnavailable:
			any503 = true
		case http.StatusInternalServerError:
			any500 = true
		case http.StatusConflict:
			any409 = true
		}
	}
	reply.Rejected = len(items) - reply.Accepted
	s.metrics.Count(contract.Accepted, float64(reply.Accepted))
	info(r).accepted, info(r).rejected = reply.Accepted, reply.Rejected
	if any503 || any409 {
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
		} else if any409 {
			kind, reply.Status = "idempotency-key-in-flight", http.StatusConflict
		} else if all422 {
			kind, reply.Status = "idempotency-key-reused", http.StatusUnprocessableEntity
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
