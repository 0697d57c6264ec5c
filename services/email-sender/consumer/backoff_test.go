package consumer

import (
	"context"
	"testing"
	"time"
)

func TestBackoffCeiling(t *testing.T) {
	base, max := 5*time.Second, 15*time.Minute
	cases := []struct {
		attempt int
		want    time.Duration
	}{
		{0, 5 * time.Second}, // treated as the first attempt
		{1, 5 * time.Second},
		{2, 10 * time.Second},
		{3, 20 * time.Second},
		{8, 640 * time.Second},
		{9, 15 * time.Minute}, // 1280 s capped
		{1000, 15 * time.Minute},
	}
	for _, tc := range cases {
		if got := BackoffCeiling(tc.attempt, base, max); got != tc.want {
			t.Errorf("attempt %d: ceiling %s, want %s", tc.attempt, got, tc.want)
		}
	}
	// It never shrinks as attempts grow and never passes the cap.
	prev := time.Duration(0)
	for a := 1; a < 100; a++ {
		c := BackoffCeiling(a, base, max)
		if c < prev || c > max {
			t.Fatalf("attempt %d: ceiling %s after %s (cap %s)", a, c, prev, max)
		}
		prev = c
	}
}

func TestBackoffFullJitterStaysInRange(t *testing.T) {
	base, max := time.Second, time.Minute
	// Extremes of the random source map to the ends of the window.
	if got := Backoff(3, base, max, func(int64) int64 { return 0 }); got != 0 {
		t.Errorf("lowest draw gave %s, want 0", got)
	}
	if got := Backoff(3, base, max, func(n int64) int64 { return n - 1 }); got != 4*time.Second {
		t.Errorf("highest draw gave %s, want 4s", got)
	}
	// With the real source, draws spread over [0, ceiling].
	for attempt := 1; attempt <= 10; attempt++ {
		ceil := BackoffCeiling(attempt, base, max)
		lowHalf, highHalf := 0, 0
		for range 400 {
			d := Backoff(attempt, base, max, nil)
			if d < 0 || d > ceil {
				t.Fatalf("attempt %d: %s outside [0, %s]", attempt, d, ceil)
			}
			if d < ceil/2 {
				lowHalf++
			} else {
				highHalf++
			}
		}
		// 400 fair draws land under 100 in one half with odds below 1e-20.
		if lowHalf < 100 || highHalf < 100 {
			t.Errorf("attempt %d: %d draws in the low half, %d in the high: not spread", attempt, lowHalf, highHalf)
		}
	}
}

func TestVisibilitySeconds(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int32
	}{
		{0, 0}, {-time.Second, 0}, {time.Millisecond, 1}, {time.Second, 1}, {1500 * time.Millisecond, 2},
		{12 * time.Hour, 43200}, {100 * time.Hour, 43200},
	} {
		if got := VisibilitySeconds(tc.d); got != tc.want {
			t.Errorf("VisibilitySeconds(%s) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

func TestPollBackoffIsBounded(t *testing.T) {
	for failures := 1; failures < 50; failures++ {
		ceil := BackoffCeiling(failures, 100*time.Millisecond, 10*time.Second)
		lo := pollBackoff(failures, func(int64) int64 { return 0 })
		hi := pollBackoff(failures, func(n int64) int64 { return n - 1 })
		if lo != ceil/2 || hi != ceil || hi > 10*time.Second {
			t.Fatalf("failures %d: range [%s, %s], want [%s, %s] within 10s", failures, lo, hi, ceil/2, ceil)
		}
	}
}

func TestSlotsAcquireWaitsForTheLeast(t *testing.T) {
	s := newSlots(12)
	if n, _ := s.acquire(context.Background(), 10, 10); n != 10 {
		t.Fatalf("took %d, want 10", n)
	}
	got := make(chan int)
	go func() {
		n, _ := s.acquire(context.Background(), 10, 10)
		got <- n
	}()
	s.release(5) // 7 free: still short of 10
	select {
	case n := <-got:
		t.Fatalf("acquired %d with only 7 free", n)
	default:
	}
	s.release(5)
	if n := <-got; n != 10 {
		t.Errorf("took %d, want 10", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.acquire(ctx, 10, 10); err == nil {
		t.Error("acquire with too few slots and a cancelled context returned no error")
	}
}
