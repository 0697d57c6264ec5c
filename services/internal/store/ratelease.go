package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Rate buckets: the notification API's per-key rate limit, shared by all
// its tasks (issue 16; DESIGN.md "Rate buckets"). Each API key has one token
// bucket in the item r#<API key id>. A task does not write per request: it
// leases a slice of the bucket's tokens with one conditional UpdateItem and
// spends them locally. The refill is computed by the task from the item's
// last refill time and the configured rate and burst, and written with the
// item's new random version; the condition is the version the task last
// saw, so two tasks never both take the same tokens. A failed condition
// returns the item as it is (ALL_OLD), and the lease is computed again from
// it.

const (
	rateItemPrefix = "r#" // rate buckets: r#<API key id>
	attrTokens     = "milliTokens"
	attrRefilledAt = "refilledAt"
	attrVersion    = "version"
	// maxLeaseAttempts bounds the conditional writes of one Lease: each
	// failed one brings the item's current state, so a second attempt fails
	// only when another task leased in between.
	maxLeaseAttempts = 4
)

// ErrContended: every attempt of a Lease met another task's lease of the
// same bucket; the caller may try again.
var ErrContended = errors.New("store: the rate bucket kept changing under the lease")

// Bucket is a token bucket's configuration.
type Bucket struct {
	// Rate is tokens added a second; Burst the most it holds.
	Rate  float64
	Burst int
}

// BucketState is a bucket as a task last saw it. Other tasks only take
// tokens, so the tokens it computes for a later time are an upper bound of
// the bucket's: a task that sees too few need not ask.
type BucketState struct {
	// Exists is false for an absent (or expired) item: a full bucket.
	Exists bool
	// MilliTokens is the tokens × 1000 at RefilledAt.
	MilliTokens int64
	RefilledAt  time.Time
	// Version is the item's random version, the next lease's condition.
	Version string
	// expiresAt is the item's TTL: past it the item reads as absent.
	expiresAt time.Time
}

// milliAt is the bucket's milli-tokens at now, and the refill time to
// record: a clock behind the item's refills nothing.
func (s BucketState) milliAt(b Bucket, now time.Time) (int64, time.Time) {
	full := int64(b.Burst) * 1000
	if !s.Exists || !now.Before(s.expiresAt) {
		// Past expiresAt the item reads as absent (DESIGN.md); a lease
		// still writes on the condition of its version.
		return full, now
	}
	if !now.After(s.RefilledAt) {
		return min(s.MilliTokens, full), s.RefilledAt
	}
	// Rate tokens a second are Rate milli-tokens a millisecond.
	added := math.Floor(b.Rate * float64(now.Sub(s.RefilledAt).Milliseconds()))
	if added >= float64(full) {
		return full, now
	}
	return min(full, s.MilliTokens+int64(added)), now
}

// Available is the tokens at now as far as s tells (an upper bound).
func (s BucketState) Available(b Bucket, now time.Time) float64 {
	m, _ := s.milliAt(b, now)
	return float64(m) / 1000
}

// WaitFor is how long from now until the bucket, as far as s tells, holds
// n tokens (0 when it does). It is a lower bound: other tasks may take
// tokens first.
func (s BucketState) WaitFor(b Bucket, n int, now time.Time) time.Duration {
	m, _ := s.milliAt(b, now)
	missing := int64(n)*1000 - m
	if missing <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(float64(missing)/b.Rate)) * time.Millisecond
}

// Grant is a Lease's outcome.
type Grant struct {
	// Tokens are the tokens leased: want when the bucket had them, else all
	// it had, or 0 when that was less than least (nothing is written then).
	Tokens int
	// State is the bucket after the lease, or as last read.
	State BucketState
	// Requests is the UpdateItem calls made (0 when State already showed
	// too few tokens), for the cost metric.
	Requests int
}

// RateBuckets leases tokens of the API keys' shared token buckets. It is
// safe for concurrent use; it keeps no state of its own (the caller keeps
// each key's BucketState).
type RateBuckets struct {
	s     Store // its client and table
	clock func() time.Time
}

// NewRateBuckets returns the rate buckets in table, on client; every
// argument is required.
func NewRateBuckets(client Client, table string, clock func() time.Time) (*RateBuckets, error) {
	var errs []error
	if client == nil {
		errs = append(errs, errors.New("a DynamoDB client is required"))
	}
	if !tableName.MatchString(table) {
		errs = append(errs, fmt.Errorf("table name %q must be 3 to 255 letters, digits, '_', '-' or '.'", table))
	}
	if clock == nil {
		errs = append(errs, errors.New("a clock is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("store: rate buckets: %w", err)
	}
	return &RateBuckets{s: Store{db: client, table: table}, clock: clock}, nil
}

// Lease takes up to want tokens (at least least, else none) from keyID's
// bucket, starting from seen (the zero BucketState when the caller has
// none). The bucket never gives more than Burst + Rate × t over any time t,
// whatever the number of tasks leasing.
func (r *RateBuckets) Lease(ctx context.Context, keyID string, b Bucket, want, least int, seen BucketState) (Grant, error) {
	if err := checkText("key id", keyID, 200); err != nil {
		return Grant{}, fmt.Errorf("store: rate lease: %w", err)
	}
	if !(b.Rate > 0) || b.Burst < 1 || least < 1 || want < least || want > b.Burst {
		return Grant{}, fmt.Errorf("store: rate lease of %d (at least %d) from a bucket of rate %g, burst %d: need 0 < least <= want <= burst, rate > 0",
			want, least, b.Rate, b.Burst)
	}
	g := Grant{State: seen}
	for range maxLeaseAttempts {
		now := r.clock()
		milli, at := g.State.milliAt(b, now)
		n := min(int64(want), milli/1000)
		if n < int64(least) {
			return g, nil
		}
		left := milli - n*1000
		// The item is worth keeping until the bucket is full again: an
		// absent item is a full bucket. Whole seconds, rounded up.
		fill := time.Duration(math.Ceil(float64(int64(b.Burst)*1000-left)/b.Rate)) * time.Millisecond
		exp := at.Add(fill + time.Second).Truncate(time.Second)
		next := BucketState{Exists: true, MilliTokens: left, RefilledAt: at, Version: newToken(), expiresAt: exp}
		values := map[string]types.AttributeValue{
			":tok": num(left), ":rat": num(at.UnixMilli()), ":ver": str(next.Version), ":exp": num(exp.Unix()),
		}
		cond := "attribute_not_exists(#pk)"
		if g.State.Exists {
			cond = "#ver = :seen"
			values[":seen"] = str(g.State.Version)
		}
		_, err := r.s.update(ctx, rateItemPrefix+keyID, "SET #tok = :tok, #rat = :rat, #ver = :ver, #exp = :exp", cond, values, false)
		g.Requests++
		if err == nil {
			g.Tokens, g.State = int(n), next
			return g, nil
		}
		old, ok := conditionFailed(err)
		if !ok {
			return g, fmt.Errorf("store: rate lease for key %s: %w", keyID, err)
		}
		g.State = bucketOf(old)
	}
	return g, ErrContended
}

// bucketOf reads a rate item; nil is an absent bucket.
func bucketOf(it item) BucketState {
	if it == nil || !it.has(attrVersion) {
		return BucketState{}
	}
	return BucketState{
		Exists:      true,
		MilliTokens: it.num(attrTokens),
		RefilledAt:  it.millis(attrRefilledAt),
		Version:     it.str(attrVersion),
		expiresAt:   time.Unix(it.num(TTLAttribute), 0),
	}
}
