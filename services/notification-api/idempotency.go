package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"herald/services/internal/batch"
	"herald/services/internal/herald"
	"herald/services/internal/store"
)

// Idempotency keys (the IETF httpapi idempotency-key draft), scoped per API
// key, on the state store (services/internal/store, its DESIGN.md; the
// flow is in services/README.md).
const (
	// keyLease is how long a request holds its Idempotency-Key: well over
	// the enqueue deadline, so a live request never loses it, and short
	// enough that a retry after a crashed task takes over soon.
	keyLease = 30 * time.Second
	// storeTimeout bounds each call to the store, SDK retries included.
	storeTimeout = 3 * time.Second
	// maxIdempotencyKeyLen bounds a key, in bytes of printable ASCII.
	maxIdempotencyKeyLen = 255
)

// stateStore is the part of the store the API uses.
type stateStore interface {
	BeginMany(ctx context.Context, lease time.Duration, reqs []store.BeginRequest) []store.BeginResult
	CompleteMany(ctx context.Context, cs []store.Completion) []error
	Release(ctx context.Context, l store.KeyLease) error
	Abandon(ctx context.Context, l store.KeyLease) error
	Get(ctx context.Context, id, scope string) (store.Status, error)
}

// newID is the id of a notification without an Idempotency-Key: signed
// for its API key when there is a store (so GET can tell its owner from the
// id), herald's plain UUIDv7 without.
func (s *server) newID(keyID string) string {
	if s.ids != nil {
		if id, err := s.ids.New(keyID); err == nil {
			return id
		}
		// Only an invalid key id fails, and keys are checked when loaded.
	}
	return herald.NewID()
}

// keyedPlaceholder is the id a keyed notification is validated and encoded
// with until Begin derives its own, which withID puts in its place: as long
// as an id, so the size checked is the size sent.
const keyedPlaceholder = "00000000-0000-0000-0000-000000000000"

// idempotencyKeyOf reads the Idempotency-Key header: absent, or a key, or
// why it is not one. The draft makes it a structured-field string
// ("abc"); a bare token (abc) is taken as well, as most clients send it.
func idempotencyKeyOf(r *http.Request) (key string, present bool, problemDetail string) {
	vals := r.Header.Values("Idempotency-Key")
	switch len(vals) {
	case 0:
		return "", false, ""
	case 1:
	default:
		return "", true, "send one header"
	}
	v := strings.TrimSpace(vals[0])
	if strings.HasPrefix(v, `"`) {
		var b strings.Builder
		closed := false
		for i := 1; i < len(v); i++ {
			c := v[i]
			switch {
			case closed:
				return "", true, "text after the closing quote"
			case c == '\\' && i+1 < len(v) && (v[i+1] == '"' || v[i+1] == '\\'):
				b.WriteByte(v[i+1])
				i++
			case c == '"':
				closed = true
			case c == '\\':
				return "", true, `a backslash escapes only " and \`
			default:
				b.WriteByte(c)
			}
		}
		if !closed {
			return "", true, "no closing quote"
		}
		v = b.String()
	}
	if err := checkIdempotencyKey(v); err != nil {
		return "", true, err.Error()
	}
	return v, true, ""
}

// checkIdempotencyKey accepts 1 to 255 printable ASCII characters.
func checkIdempotencyKey(k string) error {
	if k == "" || len(k) > maxIdempotencyKeyLen {
		return fmt.Errorf("must be 1 to %d characters, not %d", maxIdempotencyKeyLen, len(k))
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return errors.New("must be printable ASCII (a UUID is a good key)")
		}
	}
	return nil
}

// keyed is one notification with an Idempotency-Key, through Begin.
type keyed struct {
	key   string
	hash  [32]byte
	begun store.Begun
	err   error // from Begin: the store could not be used
}

// begin records the key of one notification: its conditional Put shares
// a transaction with the Begins of concurrent requests (keyWriter).
func (s *server) begin(ctx context.Context, keyID string, k *keyed) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	r := s.keyw.begin(ctx, store.BeginRequest{Scope: keyID, Key: k.key, BodyHash: k.hash})
	k.begun, k.err = r.Begun, r.Err
}

// keyedRefusal is the answer to a keyed notification that is not sent:
// a replay (the stored answer), a key reused with another body (422), a key
// in flight (409), or a store failure (503; 500 for a misconfiguration).
// ok is false when the notification is Started and must be sent.
type keyedRefusal struct {
	status     int
	kind       string
	detail     string
	retryAfter time.Duration
	replay     []byte // the stored answer body, for a replay
	id         string // the notification's id, for a replay
}

func (s *server) refusal(r *http.Request, k *keyed) (keyedRefusal, bool) {
	if k.err != nil {
		level, status := slog.LevelWarn, http.StatusServiceUnavailable
		if !store.Unavailable(k.err) && !errors.Is(k.err, context.Canceled) && !errors.Is(k.err, errClosed) {
			// Access denied, no such table: not fixed by waiting.
			level, status = slog.LevelError, http.StatusInternalServerError
		}
		s.log.LogAttrs(r.Context(), level, "idempotency store failed", slog.String("requestId", info(r).requestID), slog.String("err", k.err.Error()))
		if status == http.StatusInternalServerError {
			return keyedRefusal{status: status, kind: "internal", detail: "the Idempotency-Key could not be recorded; nothing was queued"}, true
		}
		return keyedRefusal{status: status, kind: "store-unavailable", retryAfter: unavailableRetryAfter,
			detail: "the Idempotency-Key could not be recorded now; nothing was queued; retry later with the same key"}, true
	}
	b := k.begun
	switch b.Outcome {
	case store.Started:
		return keyedRefusal{}, false
	case store.Replay:
		return keyedRefusal{status: b.Answer.Status, replay: b.Answer.Body, id: b.ID}, true
	case store.Mismatch:
		return keyedRefusal{status: http.StatusUnprocessableEntity, kind: "idempotency-key-reused",
			detail: "this Idempotency-Key was used with another request body; use a new key for a new notification"}, true
	case store.InFlight:
		return keyedRefusal{status: http.StatusConflict, kind: "idempotency-key-in-flight", id: b.ID,
			retryAfter: max(time.Second, b.LeaseUntil.Sub(s.now())),
			detail:     "a request with this Idempotency-Key is still being processed; retry after it"}, true
	}
	return keyedRefusal{status: http.StatusInternalServerError, kind: "internal", detail: "unexpected idempotency outcome"}, true
}

// settle records a keyed notification's outcome once the queue answered:
// queued, the answer is stored (for replays); not queued, the key is
// deleted (a retry starts afresh); unknown, the key's lease is ended but its
// record kept, so a retry takes it over at once with the same id. The
// record is written under a context of its own: the client hanging up
// must not leave the key in flight.
func (s *server) settle(r *http.Request, k *keyed, res result, answer []byte) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), storeTimeout)
	defer cancel()
	var err error
	var op string
	switch {
	case res.err == nil:
		op, err = "complete", s.keyw.complete(ctx, store.Completion{Lease: k.begun.Lease, Answer: store.Answer{Status: http.StatusAccepted, Body: answer}})
	case res.err.unknown:
		op, err = "release", s.state.Release(ctx, k.begun.Lease)
	default:
		op, err = "abandon", s.state.Abandon(ctx, k.begun.Lease)
	}
	if err != nil {
		// The lease ends by itself; a retry then takes the key over with
		// the same id, and the sender sends that id once.
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "idempotency record not updated", slog.String("requestId", info(r).requestID),
			slog.String("op", op), slog.String("notificationId", k.begun.ID), slog.String("err", err.Error()))
	}
}

// keyWriter gathers the Begins of concurrent keyed requests into
// TransactWriteItems calls and their Completes into BatchWriteItem calls
// (store.BeginMany, store.CompleteMany), with the one batcher (package
// batch) and the linger of the SQS coalescer (HERALD_BATCH_LINGER): a
// lone request waits at most the linger for others, and a call leaves as
// soon as it is full. Linger 0: every request makes its own calls. A
// caller waits for its own outcome, so a keyed 202 still follows its
// stored answer (an immediate replay gets the answer, not a 409).
type keyWriter struct {
	st        stateStore
	begins    *batch.Batcher[*pending[store.BeginRequest, store.BeginResult]]
	completes *batch.Batcher[*pending[store.Completion, error]]
}

// newKeyWriter gathers st's writes; nil st (no store) gives nil.
func newKeyWriter(st stateStore, linger time.Duration, maxCalls int, after func(time.Duration) <-chan time.Time) (*keyWriter, error) {
	if st == nil {
		return nil, nil
	}
	w := &keyWriter{st: st}
	if linger <= 0 {
		return w, nil
	}
	var err error
	w.begins, err = batch.New(batch.Config[*pending[store.BeginRequest, store.BeginResult]]{
		Size: store.MaxTransactItems, Linger: linger, MaxCalls: maxCalls, Queue: store.MaxTransactItems, After: after,
		Flush: func(b []*pending[store.BeginRequest, store.BeginResult]) { callLive(b, storeTimeout, w.beginMany) },
	})
	if err != nil {
		return nil, err
	}
	w.completes, err = batch.New(batch.Config[*pending[store.Completion, error]]{
		Size: store.MaxBatchWrite, Linger: linger, MaxCalls: maxCalls, Queue: 4 * store.MaxBatchWrite, After: after,
		Flush: func(b []*pending[store.Completion, error]) { callLive(b, storeTimeout, w.st.CompleteMany) },
	})
	if err != nil {
		w.begins.Close()
		return nil, err
	}
	return w, nil
}

func (w *keyWriter) beginMany(ctx context.Context, reqs []store.BeginRequest) []store.BeginResult {
	return w.st.BeginMany(ctx, keyLease, reqs)
}

// begin is one request's Begin, in a call shared with concurrent ones.
func (w *keyWriter) begin(ctx context.Context, req store.BeginRequest) store.BeginResult {
	if w.begins == nil {
		return w.beginMany(ctx, []store.BeginRequest{req})[0]
	}
	failed := func(err error) store.BeginResult { return store.BeginResult{Err: err} }
	return await(ctx, w.begins, req, failed, failed)
}

// complete is one request's Complete, in a call shared with concurrent ones.
func (w *keyWriter) complete(ctx context.Context, c store.Completion) error {
	if w.completes == nil {
		return w.st.CompleteMany(ctx, []store.Completion{c})[0]
	}
	failed := func(err error) error { return err }
	return await(ctx, w.completes, c, failed, failed)
}

// close writes what was gathered and waits for the calls in flight. Call it
// after the HTTP server has drained.
func (w *keyWriter) close() {
	if w == nil || w.begins == nil {
		return
	}
	w.begins.Close()
	w.completes.Close()
}

// acceptedBody is the answer to a queued notification.
func acceptedBody(id string) []byte {
	b, _ := json.Marshal(accepted{ID: id, Status: "queued"})
	return b
}

type accepted struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// replayedID reads the id of a stored answer.
func replayedID(body []byte) string {
	var a struct {
		ID string `json:"id"`
	}
	json.Unmarshal(body, &a)
	return a.ID
}

func bodyHash(b []byte) [32]byte { return sha256.Sum256(b) }
