package main

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"herald/services/contract"
	"herald/services/internal/herald"
	"herald/services/internal/store"
)

// The per-key rate limit (issue 16; services/README.md "The per-key rate
// limit"). Without the store each process keeps its own bucket per key, as
// a single process needs. With the store the bucket is the table's item
// r#<key id>, shared by every task: a task leases a slice of its tokens
// with one conditional write (store.RateBuckets), spends them locally, and
// leases again when they run out or grow old.
const (
	// rateLeaseTimeout bounds one lease: the key's requests in this task
	// wait for it, so a slow table must not become slow answers.
	rateLeaseTimeout = 500 * time.Millisecond
	// rateStoreRetry is how long a key is limited by the local fallback
	// after the store failed, before the store is asked again.
	rateStoreRetry = 5 * time.Second
)

// bucketLeaser is the part of store.RateBuckets the limiter uses.
type bucketLeaser interface {
	Lease(ctx context.Context, keyID string, b store.Bucket, want, least int, seen store.BucketState) (store.Grant, error)
}

// rateLimiter holds each API key's limit: a token bucket of this process,
// or leases of the bucket shared through the store. Only authenticated key
// ids get state, so the maps are bounded by the number of keys.
type rateLimiter struct {
	limit rate.Limit
	burst int
	now   func() time.Time

	// shared is nil without the store.
	shared *sharedLimit

	mu     sync.Mutex
	byKey  map[string]*rate.Limiter // without the store
	leased map[string]*leasedKey    // with it
}

// sharedLimit is what the limiter needs to lease from the store.
type sharedLimit struct {
	buckets bucketLeaser
	bucket  store.Bucket
	// leaseFor is HERALD_RATE_LEASE: a lease covers about this much of the
	// task's recent demand, and its tokens are dropped when this old.
	leaseFor time.Duration
	// fallback is the per-task limit while the store fails: the rate and
	// burst divided by HERALD_RATE_TASKS.
	fallbackLimit rate.Limit
	fallbackBurst int
	timeout       time.Duration
	retry         time.Duration
	metrics       *herald.Metrics
	log           *slog.Logger
}

// leasedKey is one key's leased tokens in this task.
type leasedKey struct {
	mu     sync.Mutex
	tokens int       // leased, not spent yet
	until  time.Time // tokens left then are dropped
	seen   store.BucketState
	// waitUntil: the shared bucket had too few tokens; none is leased
	// before then.
	waitUntil time.Time
	// fallbackUntil: the store failed; the fallback limits until then.
	fallbackUntil  time.Time
	fallbackReason string
	fallback       *rate.Limiter
	// asked is the tokens asked for since the last lease, at leasedAt: the
	// task's demand for the key, which sizes the next lease.
	asked    int
	leasedAt time.Time
	// lost counts leases in a row that asked and got nothing.
	lost int
}

// newRateLimiter returns nil (no limiting) when cfg.RateLimit is 0. With
// buckets (the store), the limit is shared by every task.
func newRateLimiter(cfg config, buckets bucketLeaser, now func() time.Time, metrics *herald.Metrics, log *slog.Logger) *rateLimiter {
	if cfg.RateLimit <= 0 {
		return nil
	}
	l := &rateLimiter{limit: rate.Limit(cfg.RateLimit), burst: cfg.RateBurst, now: now,
		byKey: map[string]*rate.Limiter{}, leased: map[string]*leasedKey{}}
	if buckets != nil {
		tasks := max(1, cfg.RateTasks)
		l.shared = &sharedLimit{
			buckets:       buckets,
			bucket:        store.Bucket{Rate: cfg.RateLimit, Burst: cfg.RateBurst},
			leaseFor:      cfg.RateLease,
			fallbackLimit: rate.Limit(cfg.RateLimit / float64(tasks)),
			fallbackBurst: max(1, cfg.RateBurst/tasks),
			timeout:       rateLeaseTimeout,
			retry:         rateStoreRetry,
			metrics:       metrics,
			log:           log,
		}
	}
	return l
}

// take spends cost tokens of keyID's bucket (at most the burst, so a large
// batch can still pass once the bucket is full). When there are not enough,
// it spends none and says how long until there will be.
func (l *rateLimiter) take(ctx context.Context, keyID string, cost int) (retryAfter time.Duration, ok bool) {
	if l == nil {
		return 0, true
	}
	cost = max(1, min(cost, l.burst))
	if l.shared != nil {
		return l.takeLeased(ctx, keyID, cost)
	}
	l.mu.Lock()
	lim := l.byKey[keyID]
	if lim == nil {
		lim = rate.NewLimiter(l.limit, l.burst)
		l.byKey[keyID] = lim
	}
	l.mu.Unlock()
	return takeLocal(lim, l.now(), cost)
}

// takeLocal takes cost tokens of a bucket of this process.
func takeLocal(lim *rate.Limiter, now time.Time, cost int) (time.Duration, bool) {
	cost = min(cost, lim.Burst())
	if lim.AllowN(now, cost) {
		return 0, true
	}
	// The bucket refills at limit tokens a second; a later request may
	// take some first, so this is the earliest time, not a promise.
	missing := float64(cost) - lim.TokensAt(now)
	return time.Duration(missing / float64(lim.Limit()) * float64(time.Second)), false
}

// takeLeased spends leased tokens, and leases when they run out. The
// key's requests in this task wait for its lease: one lease serves them.
func (l *rateLimiter) takeLeased(ctx context.Context, keyID string, cost int) (time.Duration, bool) {
	sh := l.shared
	l.mu.Lock()
	k := l.leased[keyID]
	if k == nil {
		k = &leasedKey{fallback: rate.NewLimiter(sh.fallbackLimit, sh.fallbackBurst)}
		l.leased[keyID] = k
	}
	l.mu.Unlock()

	k.mu.Lock()
	defer k.mu.Unlock()
	now := l.now()
	k.asked += cost
	if !now.Before(k.until) {
		// Old tokens are dropped, never spent: with them a key could pass
		// its limit by more than one lease in a window.
		k.tokens = 0
	}
	switch {
	case k.tokens >= cost:
		k.tokens -= cost
		return 0, true
	case now.Before(k.fallbackUntil):
		return l.fallbackTake(k, now, cost, k.fallbackReason)
	case now.Before(k.waitUntil):
		return k.waitUntil.Sub(now), false
	}

	// A new lease; what is left of the old one is dropped, as above.
	want, least := sh.leaseSize(k, now, cost)
	hadView := k.seen != (store.BucketState{})
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sh.timeout)
	g, err := sh.buckets.Lease(lctx, keyID, sh.bucket, want, least, k.seen)
	cancel()
	sh.metrics.Count(contract.RateLeases, float64(g.Requests))
	k.seen = g.State
	switch {
	case errors.Is(err, store.ErrContended):
		// The tasks raced for this key's bucket at every attempt: it is
		// at its limit. Refused (never let through unleased); the next
		// request asks again.
		return max(time.Millisecond, g.State.WaitFor(sh.bucket, least, now)), false
	case err != nil:
		reason := "error"
		if store.Unavailable(err) {
			reason = "unavailable"
		}
		k.fallbackUntil, k.fallbackReason = now.Add(sh.retry), reason
		sh.log.Warn("rate limit: the store failed; the local fallback limits this key for a while",
			"keyId", keyID, "reason", reason, "for", sh.retry.String(), "err", err)
		return l.fallbackTake(k, now, cost, reason)
	case g.Tokens == 0:
		// Ask again when the bucket, as last seen, holds the least lease
		// worth a write. A task that asked and lost (others took the
		// tokens its last view showed) waits a slice longer for each loss
		// in a row, up to a lease period: tasks that all woke at once for
		// the same tokens spread out instead of all asking again together.
		wait := g.State.WaitFor(sh.bucket, least, now)
		if g.Requests > 0 && hadView {
			k.lost++
			slice := time.Duration(float64(least) / sh.bucket.Rate * float64(time.Second))
			wait = min(wait+time.Duration(k.lost)*slice, max(wait, sh.leaseFor))
		}
		k.waitUntil = now.Add(wait)
		return wait, false
	}
	k.tokens, k.until = g.Tokens-cost, now.Add(sh.leaseFor)
	k.asked, k.leasedAt, k.lost = 0, now, 0
	return 0, true
}

// leaseSize is the tokens to lease (want) and the fewest worth a write
// (least). want is the task's demand for the key since its last lease,
// over leaseFor; at least this request's cost, at most a quarter of the
// burst, so one task cannot hold a key's whole burst while the others
// refuse it. least is the cost, or a quarter of what the bucket refills in
// a lease period if want is larger: a key over its limit is leased in
// slices of that size, a few writes per lease period, never one per
// request.
func (sh *sharedLimit) leaseSize(k *leasedKey, now time.Time, cost int) (want, least int) {
	if k.leasedAt.IsZero() {
		return cost, cost
	}
	most := max(cost, sh.bucket.Burst/4)
	elapsed := max(now.Sub(k.leasedAt), time.Millisecond)
	demand := math.Ceil(float64(k.asked) * float64(sh.leaseFor) / float64(elapsed))
	want = int(min(float64(most), max(float64(cost), demand)))
	slice := int(math.Ceil(sh.bucket.Rate * sh.leaseFor.Seconds() / 4))
	return want, min(want, max(cost, slice))
}

// fallbackTake decides by the key's fallback bucket, and counts the
// notifications it decided by the reason.
func (l *rateLimiter) fallbackTake(k *leasedKey, now time.Time, cost int, reason string) (time.Duration, bool) {
	l.shared.metrics.CountBy(contract.RateFallback, reason, float64(cost))
	return takeLocal(k.fallback, now, cost)
}
