package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// keyRec is an Idempotency-Key record of API key svc for the memTable.
func keyRec(key string, kv ...any) map[string]types.AttributeValue {
	it := attrs(append([]any{KeyAttribute, keyItemPK("svc", key)}, kv...)...)
	if _, ok := it[TTLAttribute]; !ok {
		it[TTLAttribute] = num(testNow.Add(time.Hour).Unix())
	}
	return it
}

// memStore is a store whose puts, transactions and batch writes go to a
// table in memory.
func memStore(t *testing.T) (*fakeDB, *Store, *memTable) {
	t.Helper()
	db := &fakeDB{}
	s := newTestStore(t, db)
	mem := newMemTable()
	mem.plug(db)
	return db, s, mem
}

func TestBeginMany(t *testing.T) {
	// Given records of every kind, when a mixed batch begins, then each
	// request gets what Begin alone would give it: the first transaction
	// is cancelled by the records that exist, the second one writes the
	// rest, and the second request with a key already in the batch goes
	// on its own after them.
	db, s, mem := memStore(t)
	ids := s.cfg.IDs
	derive := func(key string, h [32]byte) string { id, _ := ids.Derive("svc", key, h); return id }
	live := testNow.Add(time.Minute).UnixMilli()
	mem.set(keyRec("replay", attrLeaseToken, "x", attrState, stateDone, attrBodyHash, hashA[:], attrID, derive("replay", hashA),
		attrAnswerCode, 202, attrAnswerBody, []byte(`{"id":"r"}`)))
	mem.set(keyRec("mismatch", attrLeaseToken, "x", attrState, stateDone, attrBodyHash, hashB[:], attrID, derive("mismatch", hashB)))
	mem.set(keyRec("inflight", attrLeaseToken, "x", attrState, stateInFlight, attrBodyHash, hashA[:], attrID, derive("inflight", hashA), attrLeaseUntil, live))
	mem.set(keyRec("stale", attrLeaseToken, "x", attrState, stateInFlight, attrBodyHash, hashA[:], attrID, derive("stale", hashA), attrLeaseUntil, 1))
	mem.set(keyRec("rotated", attrLeaseToken, "x", attrState, stateInFlight, attrBodyHash, hashA[:], attrID, "old-id", attrLeaseUntil, 1))
	mem.set(keyRec("expired", attrLeaseToken, "x", attrState, stateDone, attrBodyHash, hashB[:], attrID, "gone", TTLAttribute, testNow.Unix()))

	keys := []string{"new", "replay", "mismatch", "inflight", "stale", "rotated", "expired", "twice", "twice"}
	reqs := make([]BeginRequest, len(keys))
	for i, k := range keys {
		reqs[i] = BeginRequest{Scope: "svc", Key: k, BodyHash: hashA}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	got := s.BeginMany(ctx, 30*time.Second, reqs)

	want := []Begun{
		{Outcome: Started, ID: derive("new", hashA)},
		{Outcome: Replay, ID: derive("replay", hashA), Answer: Answer{Status: 202, Body: []byte(`{"id":"r"}`)}},
		{Outcome: Mismatch},
		{Outcome: InFlight, ID: derive("inflight", hashA), LeaseUntil: time.UnixMilli(live).UTC()},
		{Outcome: Started, ID: derive("stale", hashA)},
		{Outcome: Started, ID: "old-id"},
		{Outcome: Started, ID: derive("expired", hashA)},
		{Outcome: Started, ID: derive("twice", hashA)},
		{Outcome: InFlight, ID: derive("twice", hashA), LeaseUntil: testNow.Add(30 * time.Second)},
	}
	for i, r := range got {
		if r.Err != nil {
			t.Errorf("%s: %v", keys[i], r.Err)
			continue
		}
		if (r.Outcome == Started) != (r.Lease.Token != "") {
			t.Errorf("%s: lease %+v for outcome %s", keys[i], r.Lease, r.Outcome)
		}
		if r.Outcome == Started {
			rec := mem.get(keyItemPK("svc", keys[i]))
			if rec.str(attrLeaseToken) != r.Lease.Token || rec.str(attrID) != r.ID || rec.str(attrState) != stateInFlight {
				t.Errorf("%s: the table holds %v for lease %+v", keys[i], rec, r.Lease)
			}
		}
		r.Lease = KeyLease{}
		if fmt.Sprint(r.Begun) != fmt.Sprint(want[i]) {
			t.Errorf("%s: %+v\nwant %+v", keys[i], r.Begun, want[i])
		}
	}
	if ops := db.ops(); ops != "TransactWriteItems TransactWriteItems PutItem" {
		t.Errorf("requests %q, want two transactions and one PutItem", ops)
	}
}

// TestBeginManyRetriesConflicts: items cancelled for a conflict (another
// transaction on their record) go again; after maxTxRounds transactions
// what is left is begun one by one, so a batch always ends.
func TestBeginManyRetriesConflicts(t *testing.T) {
	reqs := []BeginRequest{{Scope: "svc", Key: "a", BodyHash: hashA}, {Scope: "svc", Key: "b", BodyHash: hashA}, {Scope: "svc", Key: "c", BodyHash: hashA}}
	conflict := func(n int, in *dynamodb.TransactWriteItemsInput) error {
		reasons := make([]types.CancellationReason, len(in.TransactItems))
		for i := range reasons {
			reasons[i].Code = aws.String("None")
		}
		reasons[0].Code = aws.String("TransactionConflict")
		return &types.TransactionCanceledException{CancellationReasons: reasons}
	}
	for _, tc := range []struct {
		name      string
		conflicts int // transactions answered with a conflict on the first item
		ops       string
	}{
		{"one conflict", 1, "TransactWriteItems TransactWriteItems"},
		{"conflicts every time", 100, "TransactWriteItems TransactWriteItems TransactWriteItems PutItem PutItem PutItem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, s, mem := memStore(t)
			n := 0
			db.tx = func(in *dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
				if n++; n <= tc.conflicts {
					return nil, conflict(n, in)
				}
				return mem.transact(in)
			}
			for i, r := range s.BeginMany(context.Background(), 30*time.Second, reqs) {
				if r.Err != nil || r.Outcome != Started {
					t.Errorf("%d: %+v", i, r)
				}
			}
			if ops := db.ops(); ops != tc.ops {
				t.Errorf("requests %q, want %q", ops, tc.ops)
			}
		})
	}
}

func TestBeginManyFailures(t *testing.T) {
	reqs := []BeginRequest{{Scope: "svc", Key: "a", BodyHash: hashA}, {Scope: "svc", Key: "b", BodyHash: hashA}}
	for _, tc := range []struct {
		name        string
		tx          func(*dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error)
		err         string
		unavailable bool
	}{
		{"throttled", func(*dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
			return nil, errThrottled
		},
			"in a transaction of 2", true},
		{"access denied", func(*dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
			return nil, errDenied
		},
			"AccessDeniedException", false},
		{"reasons do not match the items", func(*dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
			return nil, &types.TransactionCanceledException{CancellationReasons: []types.CancellationReason{{Code: aws.String("None")}}}
		}, "1 reasons for 2 items", false},
		{"failed condition without the item", func(*dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
			return nil, &types.TransactionCanceledException{CancellationReasons: []types.CancellationReason{
				{Code: aws.String("ConditionalCheckFailed")}, {Code: aws.String("ConditionalCheckFailed")}}}
		}, "without returning the item", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := &fakeDB{tx: tc.tx}
			s := newTestStore(t, db)
			for i, r := range s.BeginMany(context.Background(), 30*time.Second, reqs) {
				if r.Err == nil || !strings.Contains(r.Err.Error(), tc.err) || Unavailable(r.Err) != tc.unavailable {
					t.Errorf("%d: err %v (unavailable %v), want %q (unavailable %v)", i, r.Err, Unavailable(r.Err), tc.err, tc.unavailable)
				}
			}
			if ops := db.ops(); ops != "TransactWriteItems" {
				t.Errorf("requests %q", ops)
			}
		})
	}
	t.Run("no id secret", func(t *testing.T) {
		s, _ := New(&fakeDB{t: t}, Config{Table: "herald-test", IdempotencyTTL: time.Hour, StatusTTL: time.Hour, Clock: fixedClock})
		for _, r := range s.BeginMany(context.Background(), time.Second, reqs) {
			if !errors.Is(r.Err, ErrNoIDs) {
				t.Errorf("err %v, want ErrNoIDs", r.Err)
			}
		}
	})
	t.Run("bad lease and bad request", func(t *testing.T) {
		s := newTestStore(t, &fakeDB{})
		for _, r := range s.BeginMany(context.Background(), 0, reqs) {
			if r.Err == nil {
				t.Error("lease 0 accepted")
			}
		}
		if r := s.BeginMany(context.Background(), time.Second, []BeginRequest{{Scope: "a b", Key: "k", BodyHash: hashA}}); r[0].Err == nil {
			t.Error("a bad API key id accepted")
		}
	})
}

// begunOn begins keys on mem and returns their leases.
func begunOn(t *testing.T, s *Store, lease time.Duration, keys ...string) []KeyLease {
	t.Helper()
	reqs := make([]BeginRequest, len(keys))
	for i, k := range keys {
		reqs[i] = BeginRequest{Scope: "svc", Key: k, BodyHash: hashA}
	}
	var leases []KeyLease
	for _, r := range s.BeginMany(context.Background(), lease, reqs) {
		if r.Err != nil || r.Outcome != Started {
			t.Fatalf("begin: %+v", r)
		}
		leases = append(leases, r.Lease)
	}
	return leases
}

func TestCompleteMany(t *testing.T) {
	// Given 30 started requests, when they complete at once, then two
	// BatchWriteItem calls (25 + 5) leave each record as Complete would:
	// done, the answer, lease 0, the same id, body hash, creation and
	// expiry; and the key then replays.
	db, s, mem := memStore(t)
	keys := make([]string, 30)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	leases := begunOn(t, s, 30*time.Second, keys...)
	before := map[string]item{}
	for _, k := range keys {
		before[k] = mem.get(keyItemPK("svc", k))
	}
	cs := make([]Completion, len(leases))
	for i, l := range leases {
		body := []byte(fmt.Sprintf(`{"id":%q}`, l.rec.id))
		if i == 0 {
			body = nil // stored without answerBody, as Complete does
		}
		cs[i] = Completion{Lease: l, Answer: Answer{Status: 202, Body: body}}
	}
	db.calls = nil
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for i, err := range s.CompleteMany(ctx, cs) {
		if err != nil {
			t.Errorf("%d: %v", i, err)
		}
	}
	if ops := db.ops(); ops != "BatchWriteItem BatchWriteItem" {
		t.Errorf("requests %q, want two BatchWriteItem", ops)
	}
	for i, k := range keys {
		rec, was := mem.get(keyItemPK("svc", k)), before[k]
		for _, a := range []string{attrID, attrLeaseToken, attrCreatedAt, TTLAttribute} {
			if fmt.Sprint(rec[a]) != fmt.Sprint(was[a]) {
				t.Errorf("%s: %s changed from %v to %v", k, a, was[a], rec[a])
			}
		}
		if string(rec.bin(attrBodyHash)) != string(hashA[:]) || rec.str(attrState) != stateDone || rec.num(attrLeaseUntil) != 0 ||
			rec.num(attrAnswerCode) != 202 || string(rec.bin(attrAnswerBody)) != string(cs[i].Answer.Body) || rec.has(attrAnswerBody) != (i > 0) {
			t.Errorf("%s: record %v", k, rec)
		}
	}
	for i, r := range s.BeginMany(ctx, 30*time.Second, []BeginRequest{{Scope: "svc", Key: "k0", BodyHash: hashA}, {Scope: "svc", Key: "k1", BodyHash: hashA}}) {
		if r.Err != nil || r.Outcome != Replay || r.ID != leases[i].rec.id || string(r.Answer.Body) != string(cs[i].Answer.Body) {
			t.Errorf("replay %d: %+v", i, r)
		}
	}
}

func TestCompleteManyUnprocessed(t *testing.T) {
	for _, tc := range []struct {
		name string
		// stuck: how many calls leave the first item unprocessed.
		stuck int
		ops   string
		err   bool
	}{
		{"written on the second call", 1, "BatchWriteItem BatchWriteItem", false},
		{"never written", 100, "BatchWriteItem BatchWriteItem BatchWriteItem BatchWriteItem", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, s, mem := memStore(t)
			leases := begunOn(t, s, 30*time.Second, "a", "b", "c")
			n := 0
			db.batch = func(in *dynamodb.BatchWriteItemInput) (*dynamodb.BatchWriteItemOutput, error) {
				reqs := in.RequestItems["herald-test"]
				var left []types.WriteRequest
				if n++; n <= tc.stuck && item(reqs[0].PutRequest.Item).str(KeyAttribute) == keyItemPK("svc", "a") {
					left, reqs = reqs[:1], reqs[1:]
				}
				if len(reqs) > 0 {
					if _, err := mem.batchWrite(&dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{"herald-test": reqs}}); err != nil {
						return nil, err
					}
				}
				out := &dynamodb.BatchWriteItemOutput{}
				if left != nil {
					out.UnprocessedItems = map[string][]types.WriteRequest{"herald-test": left}
				}
				return out, nil
			}
			db.calls = nil
			cs := []Completion{{leases[0], Answer{202, []byte("a")}}, {leases[1], Answer{202, []byte("b")}}, {leases[2], Answer{202, []byte("c")}}}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			errs := s.CompleteMany(ctx, cs)
			if (errs[0] != nil) != tc.err || errs[1] != nil || errs[2] != nil {
				t.Errorf("errors %v, want one for a: %v", errs, tc.err)
			}
			if ops := db.ops(); ops != tc.ops {
				t.Errorf("requests %q, want %q", ops, tc.ops)
			}
			if st := mem.get(keyItemPK("svc", "a")).str(attrState); (st == stateInFlight) != tc.err {
				t.Errorf("a is %s", st)
			}
		})
	}
}

func TestCompleteManyRefuses(t *testing.T) {
	db, s, mem := memStore(t)
	long := begunOn(t, s, 30*time.Second, "l1", "l2", "l3")
	short := begunOn(t, s, 2*time.Second, "s1")
	db.calls = nil
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()

	// A lease that ends within the call's deadline (and the clock skew)
	// is left alone; a lease that is not Begin's is refused; the same
	// record twice goes in two calls.
	cs := []Completion{
		{long[0], Answer{202, nil}}, {long[1], Answer{202, nil}}, {short[0], Answer{202, nil}},
		{KeyLease{Scope: "svc", Key: "x", Token: "t"}, Answer{202, nil}}, {long[0], Answer{202, nil}},
	}
	errs := s.CompleteMany(ctx, cs)
	if errs[0] != nil || errs[1] != nil || errs[4] != nil || !errors.Is(errs[2], ErrLeaseEnding) || errs[3] == nil {
		t.Errorf("errors %v", errs)
	}
	if ops := db.ops(); ops != "BatchWriteItem BatchWriteItem" {
		t.Errorf("requests %q", ops)
	}
	if st := mem.get(keyItemPK("svc", "s1")).str(attrState); st != stateInFlight {
		t.Errorf("the short lease's record is %s", st)
	}

	// Without a deadline nothing is written.
	db.calls = nil
	for _, err := range s.CompleteMany(context.Background(), cs[:2]) {
		if err == nil || !strings.Contains(err.Error(), "deadline") {
			t.Errorf("without a deadline: %v", err)
		}
	}
	// One alone is Complete's conditional UpdateItem.
	db.update = func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		if deref(in.ConditionExpression) == "" {
			t.Error("unconditional")
		}
		return &dynamodb.UpdateItemOutput{}, nil
	}
	if errs := s.CompleteMany(context.Background(), cs[2:3]); errs[0] != nil {
		t.Error(errs[0])
	}
	if ops := db.ops(); ops != "UpdateItem" {
		t.Errorf("requests %q, want UpdateItem", ops)
	}
}
