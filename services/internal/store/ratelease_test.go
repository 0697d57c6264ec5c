package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

var testBucket = Bucket{Rate: 10, Burst: 20}

func newTestBuckets(t *testing.T, db *fakeDB, clock func() time.Time) *RateBuckets {
	t.Helper()
	db.t = t
	r, err := NewRateBuckets(db, "herald-test", clock)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// rateItem is a bucket item as the table holds it.
func rateItem(tat time.Time) map[string]types.AttributeValue {
	return attrs(KeyAttribute, "r#svc", attrTAT, tat.UnixMicro(), TTLAttribute, tat.Unix()+2)
}

// testBucket's T is 100 ms, tau 2 s.
func tatIn(d time.Duration) BucketState { return BucketState{tat: testNow.Add(d).UnixMicro()} }

func TestNewRateBucketsRefusesInvalidArguments(t *testing.T) {
	if _, err := NewRateBuckets(nil, "a/b", nil); err == nil ||
		!strings.Contains(err.Error(), "client is required") || !strings.Contains(err.Error(), "table name") || !strings.Contains(err.Error(), "clock is required") {
		t.Fatalf("err = %v, want all three named", err)
	}
	r := newTestBuckets(t, &fakeDB{}, fixedClock)
	bad := map[string]struct {
		key         string
		b           Bucket
		want, least int
	}{
		"no key":           {"", testBucket, 1, 1},
		"zero rate":        {"svc", Bucket{Rate: 0, Burst: 5}, 1, 1},
		"zero burst":       {"svc", Bucket{Rate: 1, Burst: 0}, 1, 1},
		"least 0":          {"svc", testBucket, 1, 0},
		"want below least": {"svc", testBucket, 1, 2},
		"want over burst":  {"svc", testBucket, 21, 1},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			// The fake fails the test on any call: nothing is asked.
			if _, err := r.Lease(context.Background(), tc.key, tc.b, tc.want, tc.least, BucketState{}); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestLeaseComputesTheRefill(t *testing.T) {
	const (
		full   = "attribute_not_exists(#pk) OR #tat <= :now"
		inUse  = "#tat >= :now AND #tat <= :max"
		setNew = "SET #tat = :tat, #exp = :exp"
		add    = "SET #tat = #tat + :inc, #exp = :exp"
	)
	cases := map[string]struct {
		seen        BucketState
		want, least int
		// the write, and the tat it leaves
		update, cond string
		tatAfter     time.Duration
		granted      int
		requests     int
	}{
		// Given no item: a full bucket (20), written on the condition that
		// it is full.
		"absent": {seen: BucketState{}, want: 5, least: 1, update: setNew, cond: full, tatAfter: 500 * time.Millisecond, granted: 5, requests: 1},
		// tat in the past: full as well.
		"refilled": {seen: tatIn(-time.Minute), want: 5, least: 1, update: setNew, cond: full, tatAfter: 500 * time.Millisecond, granted: 5, requests: 1},
		// tat 1.5 s ahead: 5 tokens left (2 s - 1.5 s at 100 ms each); 3 of them.
		"in use": {seen: tatIn(1500 * time.Millisecond), want: 3, least: 1, update: add, cond: inUse, tatAfter: 1800 * time.Millisecond, granted: 3, requests: 1},
		// tat fell behind the clock, but the bucket was in use when last
		// seen: the lease guesses it still is.
		"busy": {seen: BucketState{tat: testNow.Add(-time.Second).UnixMicro(), busy: true}, want: 5, least: 1, update: add, cond: inUse,
			tatAfter: 500 * time.Millisecond, granted: 5, requests: 1},
		// Fewer than wanted but at least least: all whole tokens.
		"partial": {seen: tatIn(1750 * time.Millisecond), want: 5, least: 2, update: add, cond: inUse, tatAfter: 1950 * time.Millisecond, granted: 2, requests: 1},
		// Fewer than least: nothing asked, nothing granted.
		"too few": {seen: tatIn(1750 * time.Millisecond), want: 5, least: 3, granted: 0, requests: 0},
		// Capped at the burst.
		"capped": {seen: BucketState{}, want: 20, least: 1, update: setNew, cond: full, tatAfter: 2 * time.Second, granted: 20, requests: 1},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var got *dynamodb.UpdateItemInput
			db := &fakeDB{update: func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
				got = in
				if in.ReturnValues != types.ReturnValueAllOld {
					t.Errorf("ReturnValues %s, want ALL_OLD", in.ReturnValues)
				}
				var old map[string]types.AttributeValue
				if tc.seen.tat != 0 {
					old = rateItem(time.UnixMicro(tc.seen.tat))
				}
				return &dynamodb.UpdateItemOutput{Attributes: old}, nil
			}}
			r := newTestBuckets(t, db, fixedClock)
			g, err := r.Lease(context.Background(), "svc", testBucket, tc.want, tc.least, tc.seen)
			if err != nil {
				t.Fatal(err)
			}
			if g.Tokens != tc.granted || g.Requests != tc.requests {
				t.Fatalf("granted %d in %d requests, want %d in %d", g.Tokens, g.Requests, tc.granted, tc.requests)
			}
			if tc.requests == 0 {
				if g.State != tc.seen {
					t.Errorf("state %+v, want the one seen", g.State)
				}
				return
			}
			v := item(got.ExpressionAttributeValues)
			if k := valueS(got.Key, KeyAttribute); k != "r#svc" {
				t.Errorf("key %s", k)
			}
			if *got.UpdateExpression != tc.update || *got.ConditionExpression != tc.cond {
				t.Errorf("wrote %q on %q, want %q on %q", *got.UpdateExpression, *got.ConditionExpression, tc.update, tc.cond)
			}
			inc := int64(tc.granted) * (100 * time.Millisecond).Microseconds()
			if tc.update == add && v.num(":inc") != inc {
				t.Errorf(":inc %d for %d tokens", v.num(":inc"), tc.granted)
			}
			if tc.update == setNew && v.num(":tat") != testNow.UnixMicro()+inc {
				t.Errorf(":tat %d, not now + %d tokens", v.num(":tat"), tc.granted)
			}
			if tc.cond == inUse && v.num(":max") != testNow.Add(2*time.Second).UnixMicro()-inc {
				t.Errorf(":max %d: not now + tau - inc", v.num(":max"))
			}
			if want := testNow.Add(tc.tatAfter).UnixMicro(); g.State.tat != want {
				t.Errorf("tat after %s, want %s", time.UnixMicro(g.State.tat).Sub(testNow), tc.tatAfter)
			}
			// The item lasts at least until the bucket can be full again.
			if exp := time.Unix(v.num(":exp"), 0); exp.Before(testNow.Add(2 * time.Second)) {
				t.Errorf("expiresAt %s, before tat can be", exp)
			}
		})
	}
}

func TestLeaseRetriesOnTheItemAFailedConditionReturns(t *testing.T) {
	// Given a task that believes the bucket full, while other tasks left 3
	// tokens in it: the failed write brings the item, and the second
	// write adds to its tat.
	var conds []string
	db := &fakeDB{update: func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		conds = append(conds, *in.ConditionExpression)
		if len(conds) == 1 {
			return nil, ccf(rateItem(testNow.Add(1700 * time.Millisecond)))
		}
		return &dynamodb.UpdateItemOutput{Attributes: rateItem(testNow.Add(1700 * time.Millisecond))}, nil
	}}
	r := newTestBuckets(t, db, fixedClock)
	g, err := r.Lease(context.Background(), "svc", testBucket, 10, 1, BucketState{})
	if err != nil {
		t.Fatal(err)
	}
	if g.Tokens != 3 || g.Requests != 2 || strings.Join(conds, " | ") != "attribute_not_exists(#pk) OR #tat <= :now | #tat >= :now AND #tat <= :max" {
		t.Fatalf("granted %d in %d requests, conditions %q", g.Tokens, g.Requests, conds)
	}

	// When the item returned has fewer than least, nothing more is written.
	db.update = func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		return nil, ccf(rateItem(testNow.Add(1950 * time.Millisecond)))
	}
	g, err = r.Lease(context.Background(), "svc", testBucket, 10, 1, BucketState{})
	if err != nil || g.Tokens != 0 || g.Requests != 1 {
		t.Fatalf("drained bucket: %+v, %v", g, err)
	}
	if w := g.State.WaitFor(testBucket, 1, testNow); w != 50*time.Millisecond {
		t.Errorf("WaitFor(1) = %s, want 50ms (half a token at 10/s)", w)
	}
	if a := g.State.Available(testBucket, testNow.Add(time.Second)); a != 10 {
		t.Errorf("Available a second later = %d, want 10", a)
	}
}

func TestLeaseGivesUpUnderContention(t *testing.T) {
	n := 0
	db := &fakeDB{update: func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		n++
		// Full, then in use, and so on: each guess is wrong.
		if n%2 == 1 {
			return nil, ccf(rateItem(testNow.Add(time.Second)))
		}
		return nil, ccf(rateItem(testNow.Add(-time.Second)))
	}}
	r := newTestBuckets(t, db, fixedClock)
	g, err := r.Lease(context.Background(), "svc", testBucket, 1, 1, BucketState{})
	if !errors.Is(err, ErrContended) || g.Tokens != 0 || g.Requests != maxLeaseAttempts {
		t.Fatalf("%+v, %v; want ErrContended after %d requests", g, err, maxLeaseAttempts)
	}
}
func TestLeaseStoreErrors(t *testing.T) {
	cases := map[string]struct {
		err         error
		unavailable bool
	}{
		"throttled": {errThrottled, true},
		"5xx":       {errServer, true},
		"denied":    {errDenied, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			db := &fakeDB{update: func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) { return nil, tc.err }}
			r := newTestBuckets(t, db, fixedClock)
			g, err := r.Lease(context.Background(), "svc", testBucket, 1, 1, BucketState{})
			if err == nil || g.Tokens != 0 || Unavailable(err) != tc.unavailable || !strings.Contains(err.Error(), "svc") {
				t.Fatalf("%+v, %v (Unavailable %v), want an error naming the key, Unavailable %v", g, err, Unavailable(err), tc.unavailable)
			}
		})
	}
	// A table that does not answer: the caller's deadline ends the lease.
	db := &fakeDB{hang: true}
	r := newTestBuckets(t, db, fixedClock)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := r.Lease(ctx, "svc", testBucket, 1, 1, BucketState{}); !Unavailable(err) {
		t.Fatalf("hung table: %v, want Unavailable", err)
	}
}
