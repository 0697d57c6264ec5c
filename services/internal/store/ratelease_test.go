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
func rateItem(milli int64, refilled time.Time, version string) map[string]types.AttributeValue {
	return attrs(KeyAttribute, "r#svc", attrTokens, milli, attrRefilledAt, refilled.UnixMilli(), attrVersion, version,
		TTLAttribute, refilled.Add(time.Hour).Unix())
}

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
	seen := BucketState{Exists: true, MilliTokens: 2500, RefilledAt: testNow.Add(-1500 * time.Millisecond), Version: "v1",
		expiresAt: testNow.Add(time.Hour)}
	cases := map[string]struct {
		seen        BucketState
		want, least int
		// the write: milli-tokens left, refill time, condition
		left     int64
		at       time.Time
		cond     string
		granted  int
		requests int
	}{
		// Given no item: a full bucket (20), created on the condition that
		// none exists.
		"absent": {seen: BucketState{}, want: 5, least: 1, left: 15000, at: testNow, cond: "attribute_not_exists(#pk)", granted: 5, requests: 1},
		// 2.5 tokens 1.5 s ago at 10/s: 17.5 now; 5 leased leave 12.5.
		"refilled": {seen: seen, want: 5, least: 1, left: 12500, at: testNow, cond: "#ver = :seen", granted: 5, requests: 1},
		// Fewer than wanted but at least least: all whole tokens.
		"partial": {seen: func() BucketState { s := seen; s.RefilledAt = testNow; return s }(), want: 5, least: 2,
			left: 500, at: testNow, cond: "#ver = :seen", granted: 2, requests: 1},
		// Fewer than least: nothing asked, nothing granted.
		"too few": {seen: func() BucketState { s := seen; s.RefilledAt = testNow; return s }(), want: 5, least: 3, granted: 0, requests: 0},
		// Capped at the burst.
		"capped": {seen: func() BucketState { s := seen; s.RefilledAt = testNow.Add(-time.Hour); return s }(), want: 20, least: 1,
			left: 0, at: testNow, cond: "#ver = :seen", granted: 20, requests: 1},
		// A clock behind the item's refills nothing and keeps its time.
		"clock behind": {seen: func() BucketState { s := seen; s.RefilledAt = testNow.Add(time.Second); return s }(), want: 2, least: 1,
			left: 500, at: testNow.Add(time.Second), cond: "#ver = :seen", granted: 2, requests: 1},
		// Past expiresAt the item reads as a full bucket, written on its version.
		"expired": {seen: func() BucketState { s := seen; s.MilliTokens = 0; s.expiresAt = testNow; return s }(), want: 4, least: 1,
			left: 16000, at: testNow, cond: "#ver = :seen", granted: 4, requests: 1},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var got *dynamodb.UpdateItemInput
			db := &fakeDB{update: func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
				got = in
				return &dynamodb.UpdateItemOutput{}, nil
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
			if *got.ConditionExpression != tc.cond || v.num(":tok") != tc.left || v.num(":rat") != tc.at.UnixMilli() {
				t.Errorf("wrote %v on %q, want %d at %d on %q", v, *got.ConditionExpression, tc.left, tc.at.UnixMilli(), tc.cond)
			}
			if tc.cond == "#ver = :seen" && v.str(":seen") != "v1" {
				t.Errorf("condition on version %s", v.str(":seen"))
			}
			// The item lasts until the bucket is full again, and no longer
			// than a second more.
			fill := time.Duration(float64(int64(testBucket.Burst)*1000-tc.left)/testBucket.Rate) * time.Millisecond
			if exp := time.Unix(v.num(":exp"), 0); exp.Before(tc.at.Add(fill)) || exp.After(tc.at.Add(fill+time.Second)) {
				t.Errorf("expiresAt %s, want within a second after full at %s", exp, tc.at.Add(fill))
			}
			if g.State.Version != v.str(":ver") || g.State.Version == "v1" || g.State.MilliTokens != tc.left || !g.State.Exists {
				t.Errorf("state %+v after writing %v", g.State, v)
			}
		})
	}
}


func TestLeaseRetriesOnTheItemAFailedConditionReturns(t *testing.T) {
	// Given a task that believes the bucket absent, while another task left
	// 3 tokens in it: the failed write brings the item, and the second
	// write takes the 3 on its version.
	var conds []string
	db := &fakeDB{update: func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		conds = append(conds, *in.ConditionExpression)
		if len(conds) == 1 {
			return nil, ccf(rateItem(3000, testNow, "other"))
		}
		if v := item(in.ExpressionAttributeValues); v.str(":seen") != "other" || v.num(":tok") != 0 {
			t.Errorf("second write %v", v)
		}
		return &dynamodb.UpdateItemOutput{}, nil
	}}
	r := newTestBuckets(t, db, fixedClock)
	g, err := r.Lease(context.Background(), "svc", testBucket, 10, 1, BucketState{})
	if err != nil {
		t.Fatal(err)
	}
	if g.Tokens != 3 || g.Requests != 2 || strings.Join(conds, " | ") != "attribute_not_exists(#pk) | #ver = :seen" {
		t.Fatalf("granted %d in %d requests, conditions %q", g.Tokens, g.Requests, conds)
	}

	// When the item returned has fewer than least, nothing more is written.
	db.update = func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		return nil, ccf(rateItem(500, testNow, "drained"))
	}
	g, err = r.Lease(context.Background(), "svc", testBucket, 10, 1, BucketState{})
	if err != nil || g.Tokens != 0 || g.Requests != 1 || g.State.Version != "drained" {
		t.Fatalf("drained bucket: %+v, %v", g, err)
	}
	if w := g.State.WaitFor(testBucket, 1, testNow); w != 50*time.Millisecond {
		t.Errorf("WaitFor(1) = %s, want 50ms (half a token at 10/s)", w)
	}
}

func TestLeaseGivesUpUnderContention(t *testing.T) {
	n := 0
	db := &fakeDB{update: func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		n++
		return nil, ccf(rateItem(20000, testNow, "v"+string(rune('a'+n))))
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
