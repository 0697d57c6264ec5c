package consumer

import (
	"math"
	"math/rand/v2"
	"time"
)

// MaxVisibility is SQS's largest visibility timeout: 12 hours.
const MaxVisibility = 12 * time.Hour

// BackoffCeiling is the upper bound of the retry delay for a given attempt
// (1 for the first try): base doubled per earlier attempt, capped at max.
func BackoffCeiling(attempt int, base, max time.Duration) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	if base <= 0 {
		return 0
	}
	d := base
	for i := 1; i < attempt; i++ {
		if d >= max/2 {
			return max
		}
		d *= 2
	}
	return min(d, max)
}

// Backoff is "full jitter" exponential backoff: a delay drawn uniformly from
// [0, BackoffCeiling]. Spreading retries over the whole window keeps messages
// that failed together (a throttling burst, an outage) from all coming back at
// the same moment. rnd returns a value in [0, n); nil uses math/rand/v2.
func Backoff(attempt int, base, max time.Duration, rnd func(n int64) int64) time.Duration {
	ceil := BackoffCeiling(attempt, base, max)
	if ceil <= 0 {
		return 0
	}
	if rnd == nil {
		rnd = rand.Int64N
	}
	return time.Duration(rnd(int64(ceil) + 1))
}

// VisibilitySeconds rounds a delay up to SQS's whole seconds, within 0..12 h.
func VisibilitySeconds(d time.Duration) int32 {
	if d <= 0 {
		return 0
	}
	if d >= MaxVisibility {
		return int32(MaxVisibility / time.Second)
	}
	return int32(math.Ceil(d.Seconds()))
}

// pollBackoff spaces out ReceiveMessage retries after consecutive failures:
// "equal jitter" (half fixed, half random) from 100 ms up to 10 s, so a
// broken endpoint is neither hammered nor left alone for long.
func pollBackoff(failures int, rnd func(n int64) int64) time.Duration {
	ceil := BackoffCeiling(failures, 100*time.Millisecond, 10*time.Second)
	if rnd == nil {
		rnd = rand.Int64N
	}
	half := ceil / 2
	return half + time.Duration(rnd(int64(half)+1))
}
