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
// spends them locally.
//
// The bucket is kept as GCRA keeps it, as one time: the theoretical
// arrival time (tat), when the bucket will be full again. With T = 1/rate
// and tau = burst × T, a bucket holds min(burst, (now + tau - tat) / T)
// tokens, and taking n adds n × T to max(tat, now). A lease of a bucket in
// use is therefore "SET tat = tat + n×T" on the condition "now <= tat <=
// now + tau - n×T": no version to match, so tasks leasing the same key do
// not fail each other's writes, and one UpdateItem is one lease. A bucket
// that is full (tat in the past, or no item) is written "SET tat = now +
// n×T" on the condition that it is. A task that guessed the wrong case gets
// the item back (ALL_OLD) and writes again.

const (
	rateItemPrefix = "r#" // rate buckets: r#<API key id>
	attrTAT        = "tat"
	// maxLeaseAttempts bounds the conditional writes of one Lease: each
	// failed one brings the item's current state.
	maxLeaseAttempts = 4
)

// ErrContended: every attempt of a Lease met another task's change of the
// bucket; the caller may try again.
var ErrContended = errors.New("store: the rate bucket kept changing under the lease")

// Bucket is a token bucket's configuration.
type Bucket struct {
	// Rate is tokens added a second; Burst the most it holds.
	Rate  float64
	Burst int
}

// interval is T, the time one token takes to come back, in microseconds
// (rounded up: never faster than the rate). Microseconds since the epoch
// stay below 2^53, so an emulator that adds in float64 (dynalite) adds
// them exactly, as DynamoDB does.
func (b Bucket) interval() int64 { return int64(math.Ceil(1e6 / b.Rate)) }

// BucketState is a bucket as a task last saw it. Other tasks only take
// tokens, so the tokens it computes for a later time are an upper bound of
// the bucket's: a task that sees too few need not ask. The zero value is a
// full bucket (no item).
type BucketState struct {
	tat int64 // epoch µs; 0: none
	// busy: the bucket was in use (tat ahead of the clock) when last
	// seen. The next lease guesses the same, even when tat has fallen
	// behind the clock since: a key at its limit stays in use, and its
	// tasks would otherwise each write "full" first and fail.
	busy bool
}

// tokensAt is the bucket's whole tokens at now.
func (s BucketState) tokensAt(b Bucket, now int64) int64 {
	t := b.interval()
	return min(int64(b.Burst), (now+int64(b.Burst)*t-max(s.tat, now))/t)
}

// Available is the tokens at now as far as s tells (an upper bound).
func (s BucketState) Available(b Bucket, now time.Time) int {
	return int(s.tokensAt(b, now.UnixMicro()))
}

// WaitFor is how long from now until the bucket, as far as s tells, holds
// n tokens (0 when it does). It is a lower bound: other tasks may take
// tokens first.
func (s BucketState) WaitFor(b Bucket, n int, now time.Time) time.Duration {
	t := b.interval()
	return time.Duration(max(0, s.tat+int64(n)*t-int64(b.Burst)*t-now.UnixMicro())) * time.Microsecond
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
	if !(b.Rate > 0 && b.Rate <= 1e6) || b.Burst < 1 || least < 1 || want < least || want > b.Burst {
		return Grant{}, fmt.Errorf("store: rate lease of %d (at least %d) from a bucket of rate %g, burst %d: need 0 < least <= want <= burst, 0 < rate <= 1e6",
			want, least, b.Rate, b.Burst)
	}
	t, tau := b.interval(), int64(b.Burst)*b.interval()
	g := Grant{State: seen}
	for range maxLeaseAttempts {
		now := r.clock().UnixMicro()
		n := min(int64(want), g.State.tokensAt(b, now))
		if n < int64(least) {
			return g, nil
		}
		inc := n * t
		// The item is worth keeping until the bucket is full again (an
		// absent item is a full bucket): tat is never past now + tau.
		values := map[string]types.AttributeValue{":now": num(now), ":exp": num((now+tau)/1e6 + 2)}
		var update, cond string
		if g.State.tat > now || g.State.busy {
			// In use: add to tat where it is, if n tokens are left there.
			update, cond = "SET #tat = #tat + :inc, #exp = :exp", "#tat >= :now AND #tat <= :max"
			values[":inc"], values[":max"] = num(inc), num(now+tau-inc)
		} else {
			// Full: tat starts from now.
			update, cond = "SET #tat = :tat, #exp = :exp", "attribute_not_exists(#pk) OR #tat <= :now"
			values[":tat"] = num(now + inc)
		}
		out, err := r.s.update(ctx, rateItemPrefix+keyID, update, cond, values, true)
		g.Requests++
		if err == nil {
			old := item(out.Attributes).num(attrTAT)
			g.Tokens, g.State = int(n), BucketState{tat: max(old, now) + inc, busy: old > now}
			return g, nil
		}
		old, ok := conditionFailed(err)
		if !ok {
			return g, fmt.Errorf("store: rate lease for key %s: %w", keyID, err)
		}
		// A bucket past its expiresAt reads as absent (DESIGN.md); its tat
		// is in the past then, which reads the same.
		tat := item(old).num(attrTAT)
		g.State = BucketState{tat: tat, busy: tat > now}
	}
	return g, ErrContended
}
