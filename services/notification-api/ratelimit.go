package main

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// rateLimiter holds one token bucket per API key id. Only authenticated key
// ids get a bucket, so the map is bounded by the number of keys.
type rateLimiter struct {
	limit rate.Limit
	burst int
	now   func() time.Time

	mu    sync.Mutex
	byKey map[string]*rate.Limiter
}

// newRateLimiter returns nil (no limiting) when perSecond is 0.
func newRateLimiter(perSecond float64, burst int, now func() time.Time) *rateLimiter {
	if perSecond <= 0 {
		return nil
	}
	return &rateLimiter{limit: rate.Limit(perSecond), burst: burst, now: now, byKey: map[string]*rate.Limiter{}}
}

// take spends cost tokens of keyID's bucket (at most the burst, so a large
// batch can still pass once the bucket is full). When there are not enough,
// it spends none and says how long until there will be.
func (l *rateLimiter) take(keyID string, cost int) (retryAfter time.Duration, ok bool) {
	if l == nil {
		return 0, true
	}
	cost = max(1, min(cost, l.burst))
	l.mu.Lock()
	lim := l.byKey[keyID]
	if lim == nil {
		lim = rate.NewLimiter(l.limit, l.burst)
		l.byKey[keyID] = lim
	}
	l.mu.Unlock()
	now := l.now()
	if lim.AllowN(now, cost) {
		return 0, true
	}
	// The bucket refills at limit tokens a second; a later request may
	// take some first, so this is the earliest time, not a promise.
	missing := float64(cost) - lim.TokensAt(now)
	return time.Duration(missing / float64(l.limit) * float64(time.Second)), false
}
