package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func TestNewRefusesInvalidConfig(t *testing.T) {
	ids, _ := NewIDs(bytes.Repeat([]byte("s"), MinSecretBytes))
	valid := Config{Table: "herald-state", IdempotencyTTL: 24 * time.Hour, StatusTTL: 18 * 24 * time.Hour, IDs: ids, Clock: time.Now}
	cases := map[string]struct {
		change   func(*Config)
		noClient bool
		want     string
	}{
		"valid":                 {change: func(*Config) {}},
		"no client":             {change: func(*Config) {}, noClient: true, want: "client is required"},
		"no table":              {change: func(c *Config) { c.Table = "" }, want: "table name"},
		"bad table":             {change: func(c *Config) { c.Table = "a/b" }, want: "table name"},
		"zero idempotency TTL":  {change: func(c *Config) { c.IdempotencyTTL = 0 }, want: "IdempotencyTTL"},
		"status TTL below idem": {change: func(c *Config) { c.StatusTTL = time.Hour }, want: "StatusTTL"},
		"no clock":              {change: func(c *Config) { c.Clock = nil }, want: "Clock is required"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := valid
			tc.change(&cfg)
			var client Client = &fakeDB{t: t}
			if tc.noClient {
				client = nil
			}
			_, err := New(client, cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %q", err, tc.want)
			}
		})
	}
}

// The sender's store has no id secret: its calls work, the API's refuse.
func TestStoreWithoutIDs(t *testing.T) {
	s, err := New(&fakeDB{t: t}, Config{Table: "herald-state", IdempotencyTTL: time.Hour, StatusTTL: time.Hour, Clock: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Begin(context.Background(), "dev", "k1", [32]byte{}, time.Second); !errors.Is(err, ErrNoIDs) {
		t.Errorf("Begin: %v, want ErrNoIDs", err)
	}
	if _, err := s.Get(context.Background(), "0190a5b0-0000-7000-8000-000000000000", "dev"); !errors.Is(err, ErrNoIDs) {
		t.Errorf("Get: %v, want ErrNoIDs", err)
	}
}

func TestUnavailable(t *testing.T) {
	cases := map[string]struct {
		err  error
		want bool
	}{
		"nil":                {nil, false},
		"throttled":          {errThrottled, true},
		"throttling code":    {fmt.Errorf("x: %w", &retry.MaxAttemptsError{Attempt: 3, Err: errThrottled}), true},
		"server error":       {errServer, true},
		"internal error":     {&types.InternalServerError{}, true},
		"connection":         {&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, true},
		"deadline":           {fmt.Errorf("x: %w", context.DeadlineExceeded), true},
		"canceled":           {context.Canceled, false},
		"access denied":      {errDenied, false},
		"no such table":      {&types.ResourceNotFoundException{}, false},
		"a failed condition": {ccf(nil), false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := Unavailable(tc.err); got != tc.want {
				t.Fatalf("Unavailable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestIDs(t *testing.T) {
	secret := bytes.Repeat([]byte("s"), MinSecretBytes)
	ids, err := NewIDs(secret)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Truncate(time.Millisecond)
	id, err := ids.New("svc")
	if err != nil {
		t.Fatal(err)
	}
	if b, ok := parse(id); !ok || b[6]>>4 != 7 {
		t.Fatalf("New = %s, want a UUIDv7", id)
	}
	if at, ok := IssuedAt(id); !ok || at.Before(before) || at.After(time.Now()) {
		t.Fatalf("IssuedAt(%s) = %s, %v; want about now", id, at, ok)
	}
	if !ids.Owns("svc", id) || ids.Owns("other", id) {
		t.Fatal("a minted id must be owned by its key only")
	}
	if again, _ := ids.New("svc"); again == id {
		t.Fatal("two minted ids are equal")
	}

	h := sha256.Sum256([]byte("body"))
	d1, _ := ids.Derive("svc", "key", h)
	d2, _ := ids.Derive("svc", "key", h)
	if d1 != d2 {
		t.Fatalf("Derive is not deterministic: %s, %s", d1, d2)
	}
	if b, ok := parse(d1); !ok || b[6]>>4 != 8 {
		t.Fatalf("Derive = %s, want a UUIDv8", d1)
	}
	if _, ok := IssuedAt(d1); ok {
		t.Fatal("a derived id carries no time")
	}
	for name, other := range map[string]func() (string, error){
		"other key":      func() (string, error) { return ids.Derive("svc", "key2", h) },
		"other body":     func() (string, error) { return ids.Derive("svc", "key", sha256.Sum256([]byte("b2"))) },
		"other API key":  func() (string, error) { return ids.Derive("svc2", "key", h) },
		"ambiguous join": func() (string, error) { return ids.Derive("svc", "ke", sha256.Sum256([]byte("body"))) },
	} {
		if o, _ := other(); o == d1 {
			t.Errorf("%s derives the same id", name)
		}
	}
	if !ids.Owns("svc", d1) || ids.Owns("svc2", d1) {
		t.Fatal("a derived id must be owned by its key only")
	}

	// A rotation: the new secret mints, the old still verifies.
	rotated, _ := NewIDs(bytes.Repeat([]byte("n"), MinSecretBytes), secret)
	if !rotated.Owns("svc", id) {
		t.Fatal("the old secret no longer verifies after a rotation")
	}
	if fresh, _ := rotated.New("svc"); ids.Owns("svc", fresh) {
		t.Fatal("the old secrets verify an id minted with the new one")
	}

	for _, bad := range []string{
		"", "not-an-id", strings.ToUpper(id), id[:35], id + "0",
		"01890a5d-ac96-4ed5-8d3b-1234567890ab", // version 4
		id[:19] + "c" + id[20:],                // variant 11
		strings.Replace(id, "-", "x", 1),
	} {
		if ids.Owns("svc", bad) {
			t.Errorf("Owns(%q) = true", bad)
		}
	}
}

func TestIDsRefuseBadInput(t *testing.T) {
	if _, err := NewIDs(); err == nil {
		t.Error("NewIDs without a secret succeeded")
	}
	if _, err := NewIDs(make([]byte, MinSecretBytes-1)); err == nil {
		t.Error("a short secret was taken")
	}
	ids, _ := NewIDs(make([]byte, MinSecretBytes))
	h := sha256.Sum256([]byte("b"))
	for name, f := range map[string]func() (string, error){
		"New, bad key id":    func() (string, error) { return ids.New("a b") },
		"Derive, bad key id": func() (string, error) { return ids.Derive("", "k", h) },
		"Derive, empty key":  func() (string, error) { return ids.Derive("svc", "", h) },
		"Derive, zero hash":  func() (string, error) { return ids.Derive("svc", "k", [32]byte{}) },
	} {
		if id, err := f(); err == nil {
			t.Errorf("%s: %s, want an error", name, id)
		}
	}
}

var hashA, hashB = sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b"))

func TestBegin(t *testing.T) {
	ids, _ := NewIDs(bytes.Repeat([]byte("s"), MinSecretBytes))
	derived, _ := ids.Derive("svc", "k", hashA)
	live := testNow.Add(time.Minute).UnixMilli()
	cases := []struct {
		name string
		put  func(n int, in *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error)
		hang bool
		want Begun // Lease.Token is checked apart
		err  string
		// unavailable: the error is one Unavailable recognises.
		unavailable bool
		ops         string
	}{
		{name: "fresh key", put: func(int, *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
			return &dynamodb.PutItemOutput{}, nil
		}, want: Begun{Outcome: Started, ID: derived}, ops: "PutItem"},
		{name: "stale record taken over", put: func(int, *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
			return &dynamodb.PutItemOutput{Attributes: attrs(attrState, stateInFlight, TTLAttribute, testNow.Add(time.Hour).Unix())}, nil
		}, want: Begun{Outcome: Started, ID: derived}, ops: "PutItem"},
		{name: "expired record replaced", put: func(int, *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
			return &dynamodb.PutItemOutput{Attributes: attrs(attrState, stateDone, TTLAttribute, testNow.Unix())}, nil
		}, want: Begun{Outcome: Started, ID: derived}, ops: "PutItem"},
		{name: "own write retried by the SDK", put: func(_ int, in *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
			return nil, ccf(attrs(attrLeaseToken, valueS(in.Item, attrLeaseToken), attrState, stateInFlight, attrBodyHash, hashA[:]))
		}, want: Begun{Outcome: Started, ID: derived}, ops: "PutItem"},
		{name: "other body", put: func(int, *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
			return nil, ccf(attrs(attrLeaseToken, "x", attrState, stateDone, attrBodyHash, hashB[:], attrID, derived))
		}, want: Begun{Outcome: Mismatch}, ops: "PutItem"},
		{name: "completed", put: func(int, *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
			return nil, ccf(attrs(attrLeaseToken, "x", attrState, stateDone, attrBodyHash, hashA[:], attrID, derived,
				attrAnswerCode, 202, attrAnswerBody, []byte("{}")))
		}, want: Begun{Outcome: Replay, ID: derived, Answer: Answer{Status: 202, Body: []byte("{}")}}, ops: "PutItem"},
		{name: "in flight", put: func(int, *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
			return nil, ccf(attrs(attrLeaseToken, "x", attrState, stateInFlight, attrBodyHash, hashA[:], attrID, derived, attrLeaseUntil, live))
		}, want: Begun{Outcome: InFlight, ID: derived, LeaseUntil: time.UnixMilli(live).UTC()}, ops: "PutItem"},
		{name: "stale record of another id secret", put: func(n int, in *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
			if n == 1 {
				return nil, ccf(attrs(attrLeaseToken, "x", attrState, stateInFlight, attrBodyHash, hashA[:], attrID, "old-id", attrLeaseUntil, 0))
			}
			if got := valueS(in.Item, attrID); got != "old-id" {
				return nil, fmt.Errorf("second put with id %s, want old-id", got)
			}
			return &dynamodb.PutItemOutput{Attributes: attrs(attrState, stateInFlight, TTLAttribute, testNow.Add(time.Hour).Unix())}, nil
		}, want: Begun{Outcome: Started, ID: "old-id"}, ops: "PutItem PutItem"},
		{name: "record keeps changing id", put: func(n int, in *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
			return nil, ccf(attrs(attrLeaseToken, "x", attrState, stateInFlight, attrBodyHash, hashA[:], attrID, fmt.Sprint("id-", n), attrLeaseUntil, 0))
		}, err: "kept changing", ops: "PutItem PutItem"},
		{name: "failure without the item", put: func(int, *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
			return nil, ccf(nil)
		}, err: "without returning the item", ops: "PutItem"},
		{name: "unknown state", put: func(int, *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
			return nil, ccf(attrs(attrLeaseToken, "x", attrState, "odd", attrBodyHash, hashA[:]))
		}, err: `unexpected record in state "odd"`, ops: "PutItem"},
		{name: "throttled", put: func(int, *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
			return nil, errThrottled
		}, err: "begin key of svc", unavailable: true, ops: "PutItem"},
		{name: "access denied", put: func(int, *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
			return nil, errDenied
		}, err: "AccessDeniedException", ops: "PutItem"},
		{name: "timeout", hang: true, err: "deadline", unavailable: true, ops: "PutItem"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			db := &fakeDB{hang: tc.hang}
			db.put = func(in *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
				n++
				checkBeginRequest(t, in)
				return tc.put(n, in)
			}
			s := newTestStore(t, db)
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			got, err := s.Begin(ctx, "svc", "k", hashA, 30*time.Second)
			if db.ops() != tc.ops {
				t.Errorf("requests %q, want %q", db.ops(), tc.ops)
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || Unavailable(err) != tc.unavailable {
					t.Fatalf("err = %v (unavailable %v), want %q (unavailable %v)", err, Unavailable(err), tc.err, tc.unavailable)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got.Outcome == Started) != (got.Lease.Token != "") {
				t.Fatalf("lease %+v for outcome %s", got.Lease, got.Outcome)
			}
			got.Lease = KeyLease{}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("Begin = %+v\nwant    %+v", got, tc.want)
			}
		})
	}
}

// checkBeginRequest: the record is keyed by API key and key hash, expires
// after IdempotencyTTL, and the write asks for the item on failure.
func checkBeginRequest(t *testing.T, in *dynamodb.PutItemInput) {
	t.Helper()
	sum := sha256.Sum256([]byte("k"))
	if pk := valueS(in.Item, KeyAttribute); pk != fmt.Sprintf("k#svc#%x", sum) {
		t.Errorf("pk = %s", pk)
	}
	if exp := item(in.Item).num(TTLAttribute); exp != testNow.Add(24*time.Hour).Unix() {
		t.Errorf("expiresAt = %d, want now + 24h", exp)
	}
	if lease := item(in.Item).num(attrLeaseUntil); lease != testNow.Add(30*time.Second).UnixMilli() {
		t.Errorf("leaseUntil = %d, want now + 30s", lease)
	}
	if in.ReturnValuesOnConditionCheckFailure != types.ReturnValuesOnConditionCheckFailureAllOld || in.ConditionExpression == nil {
		t.Error("Begin's put is not conditional with ALL_OLD on failure")
	}
}

func TestBeginRefusesBadInput(t *testing.T) {
	s := newTestStore(t, &fakeDB{})
	ctx := context.Background()
	for name, f := range map[string]func() error{
		"bad API key id": func() error { _, err := s.Begin(ctx, "", "k", hashA, time.Second); return err },
		"empty key":      func() error { _, err := s.Begin(ctx, "svc", "", hashA, time.Second); return err },
		"zero hash":      func() error { _, err := s.Begin(ctx, "svc", "k", [32]byte{}, time.Second); return err },
		"zero lease":     func() error { _, err := s.Begin(ctx, "svc", "k", hashA, 0); return err },
	} {
		if err := f(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestCompleteReleaseAbandon(t *testing.T) {
	lease := KeyLease{Scope: "svc", Key: "k", Token: "tok"}
	mine := attrs(attrLeaseToken, "tok", attrState, stateDone)
	theirs := attrs(attrLeaseToken, "other", attrState, stateInFlight)
	type result struct {
		update *dynamodb.UpdateItemOutput
		del    *dynamodb.DeleteItemOutput
		err    error
	}
	ok := result{update: &dynamodb.UpdateItemOutput{}, del: &dynamodb.DeleteItemOutput{}}
	cases := []struct {
		name   string
		op     func(*Store) error
		answer result
		want   error // nil, a sentinel, or an error whose text is looked for
	}{
		{"complete", func(s *Store) error { return s.Complete(context.Background(), lease, Answer{202, []byte("{}")}) }, ok, nil},
		{"complete, empty body", func(s *Store) error { return s.Complete(context.Background(), lease, Answer{Status: 202}) }, ok, nil},
		{"complete retried by the SDK", func(s *Store) error { return s.Complete(context.Background(), lease, Answer{202, nil}) }, result{err: ccf(mine)}, nil},
		{"complete, taken over", func(s *Store) error { return s.Complete(context.Background(), lease, Answer{202, nil}) }, result{err: ccf(theirs)}, ErrLeaseLost},
		{"complete, record gone", func(s *Store) error { return s.Complete(context.Background(), lease, Answer{202, nil}) }, result{err: ccf(nil)}, ErrLeaseLost},
		{"complete, throttled", func(s *Store) error { return s.Complete(context.Background(), lease, Answer{202, nil}) }, result{err: errThrottled}, errors.New("update key of svc")},
		{"release", func(s *Store) error { return s.Release(context.Background(), lease) }, ok, nil},
		{"release, taken over", func(s *Store) error { return s.Release(context.Background(), lease) }, result{err: ccf(theirs)}, ErrLeaseLost},
		{"release, server error", func(s *Store) error { return s.Release(context.Background(), lease) }, result{err: errServer}, errors.New("update key of svc")},
		{"abandon", func(s *Store) error { return s.Abandon(context.Background(), lease) }, ok, nil},
		{"abandon, already gone", func(s *Store) error { return s.Abandon(context.Background(), lease) }, result{err: ccf(nil)}, nil},
		{"abandon, taken over", func(s *Store) error { return s.Abandon(context.Background(), lease) }, result{err: ccf(theirs)}, ErrLeaseLost},
		{"abandon, throttled", func(s *Store) error { return s.Abandon(context.Background(), lease) }, result{err: errThrottled}, errors.New("abandon key of svc")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := &fakeDB{
				update: func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
					if !strings.Contains(deref(in.ConditionExpression), "#ltok = :tok") {
						t.Errorf("condition %q does not check the token", deref(in.ConditionExpression))
					}
					return tc.answer.update, tc.answer.err
				},
				del: func(in *dynamodb.DeleteItemInput) (*dynamodb.DeleteItemOutput, error) {
					if in.ReturnValuesOnConditionCheckFailure != types.ReturnValuesOnConditionCheckFailureAllOld {
						t.Error("Abandon does not ask for the item on failure")
					}
					return tc.answer.del, tc.answer.err
				},
			}
			err := tc.op(newTestStore(t, db))
			switch {
			case tc.want == nil && err != nil:
				t.Fatal(err)
			case tc.want == ErrLeaseLost && !errors.Is(err, ErrLeaseLost):
				t.Fatalf("err = %v, want ErrLeaseLost", err)
			case tc.want != nil && tc.want != ErrLeaseLost && (err == nil || !strings.Contains(err.Error(), tc.want.Error()) || !Unavailable(err)):
				t.Fatalf("err = %v, want an unavailable error naming %q", err, tc.want)
			}
		})
	}
}

func TestCompleteRefusesBadInput(t *testing.T) {
	s := newTestStore(t, &fakeDB{})
	ctx := context.Background()
	good := KeyLease{Scope: "svc", Key: "k", Token: "t"}
	for name, err := range map[string]error{
		"no token":      s.Complete(ctx, KeyLease{Scope: "svc", Key: "k"}, Answer{202, nil}),
		"bad scope":     s.Release(ctx, KeyLease{Scope: "a b", Key: "k", Token: "t"}),
		"no key":        s.Abandon(ctx, KeyLease{Scope: "svc", Token: "t"}),
		"status 99":     s.Complete(ctx, good, Answer{99, nil}),
		"status 600":    s.Complete(ctx, good, Answer{600, nil}),
		"body too long": s.Complete(ctx, good, Answer{202, make([]byte, MaxAnswerBytes+1)}),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestClaim(t *testing.T) {
	ids, _ := NewIDs(bytes.Repeat([]byte("s"), MinSecretBytes))
	id, _ := ids.New("svc")
	live := testNow.Add(time.Minute).UnixMilli()
	cases := []struct {
		name   string
		update func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error)
		hang   bool
		want   Claim // Lease is checked apart
		err    error // a sentinel, or text looked for in an unavailable error
	}{
		{name: "first claim", update: func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
			return &dynamodb.UpdateItemOutput{}, nil
		}, want: Claim{Outcome: Claimed, Attempt: 1}},
		{name: "after a failure", update: func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
			return &dynamodb.UpdateItemOutput{Attributes: attrs(attrStatus, "failed", attrAttempts, 2, attrLeaseToken, "old")}, nil
		}, want: Claim{Outcome: Claimed, Attempt: 3}},
		{name: "a dead sender's lease", update: func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
			return &dynamodb.UpdateItemOutput{Attributes: attrs(attrStatus, "sending", attrAttempts, 1, attrLeaseToken, "old")}, nil
		}, want: Claim{Outcome: Claimed, Attempt: 2, TookOver: true}},
		{name: "sent", update: func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
			return nil, ccf(attrs(attrOwner, "svc", attrSentAt, testNow.UnixMilli(), attrProviderID, "ses-1"))
		}, want: Claim{Outcome: AlreadySent, Sent: Sent{ProviderMessageID: "ses-1", At: testNow}}},
		{name: "busy", update: func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
			return nil, ccf(attrs(attrOwner, "svc", attrStatus, "sending", attrLeaseToken, "other", attrLeaseUntil, live))
		}, want: Claim{Outcome: Busy, LeaseUntil: time.UnixMilli(live).UTC()}},
		{name: "another key's id", update: func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
			return nil, ccf(attrs(attrOwner, "other", attrStatus, "sending"))
		}, err: ErrOwnerMismatch},
		{name: "failure without the item", update: func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
			return nil, ccf(nil)
		}, err: errors.New("without returning the item")},
		{name: "unexplained failure", update: func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
			return nil, ccf(attrs(attrOwner, "svc", attrStatus, "sending", attrLeaseUntil, 0))
		}, err: errors.New("unexpected record")},
		{name: "throttled", update: func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
			return nil, errThrottled
		}, err: errors.New("claim " + id)},
		{name: "timeout", hang: true, err: errors.New("deadline")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := &fakeDB{hang: tc.hang, update: func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
				if pk := valueS(in.Key, KeyAttribute); pk != "n#"+id {
					t.Errorf("key %s", pk)
				}
				if until := item(in.ExpressionAttributeValues).num(":until"); until != testNow.Add(time.Minute).UnixMilli() {
					t.Errorf("lease until %d, want now + 1m", until)
				}
				return tc.update(in)
			}}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			got, err := newTestStore(t, db).Claim(ctx, id, "svc", time.Minute)
			if tc.err != nil {
				if tc.err == ErrOwnerMismatch {
					if !errors.Is(err, ErrOwnerMismatch) {
						t.Fatalf("err = %v, want ErrOwnerMismatch", err)
					}
					return
				}
				wantUnavailable := tc.hang || tc.name == "throttled"
				if err == nil || !strings.Contains(err.Error(), tc.err.Error()) || Unavailable(err) != wantUnavailable {
					t.Fatalf("err = %v, want %q (unavailable %v)", err, tc.err, wantUnavailable)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got.Outcome == Claimed) != (got.Lease == NotificationLease{ID: id, Scope: "svc", Token: got.Lease.Token} && got.Lease.Token != "") {
				t.Fatalf("lease %+v for outcome %s", got.Lease, got.Outcome)
			}
			got.Lease = NotificationLease{}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("Claim = %+v\nwant    %+v", got, tc.want)
			}
		})
	}
}

func TestMarkSent(t *testing.T) {
	ids, _ := NewIDs(bytes.Repeat([]byte("s"), MinSecretBytes))
	id, _ := ids.New("svc")
	l := NotificationLease{ID: id, Scope: "svc", Token: "tok"}
	cases := []struct {
		name   string
		answer error
		want   MarkSentResult
		err    string
	}{
		{name: "recorded", want: MarkSentResult{First: Sent{"ses-1", testNow}}},
		{name: "sent twice", answer: ccf(attrs(attrOwner, "svc", attrSentAt, testNow.Add(-time.Minute).UnixMilli(), attrProviderID, "ses-0")),
			want: MarkSentResult{Duplicate: true, First: Sent{"ses-0", testNow.Add(-time.Minute)}}},
		{name: "another key's id", answer: ccf(attrs(attrOwner, "other")), err: ErrOwnerMismatch.Error()},
		{name: "unexplained failure", answer: ccf(attrs(attrOwner, "svc")), err: "condition failed"},
		{name: "throttled", answer: errThrottled, err: "mark " + id + " sent"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := &fakeDB{update: func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
				if v := item(in.ExpressionAttributeValues); v.str(":pmid") != "ses-1" || v.num(":at") != testNow.UnixMilli() || v.str(":scope") != "svc" {
					t.Errorf("values %v", in.ExpressionAttributeValues)
				}
				if tc.answer != nil {
					return nil, tc.answer
				}
				return &dynamodb.UpdateItemOutput{}, nil
			}}
			got, err := newTestStore(t, db).MarkSent(context.Background(), l, "ses-1", testNow)
			// An error must name tc.err; without one, the result is tc.want.
			if (err != nil) != (tc.err != "") || err != nil && !strings.Contains(err.Error(), tc.err) ||
				err == nil && fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("MarkSent = %+v, %v; want %+v, error %q", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestMarkFailure(t *testing.T) {
	ids, _ := NewIDs(bytes.Repeat([]byte("s"), MinSecretBytes))
	id, _ := ids.New("svc")
	l := NotificationLease{ID: id, Scope: "svc", Token: "tok"}
	long := strings.Repeat("é", MaxReasonBytes) // 2 bytes a rune: cut mid-way
	cases := []struct {
		name   string
		mark   func(s *Store) error
		status State
		reason string
		answer error
		want   error
	}{
		{"failed", func(s *Store) error { return s.MarkFailed(context.Background(), l, "transient", "throttled", testNow) }, StateFailed, "throttled", nil, nil},
		{"dead-lettered", func(s *Store) error { return s.MarkDeadLettered(context.Background(), l, "permanent", long, testNow) }, StateDeadLettered, long[:MaxReasonBytes], nil, nil},
		{"sent meanwhile", func(s *Store) error { return s.MarkFailed(context.Background(), l, "transient", "x", testNow) }, StateFailed, "x",
			ccf(attrs(attrSentAt, testNow.UnixMilli(), attrLeaseToken, "tok")), ErrAlreadySent},
		{"lease taken", func(s *Store) error { return s.MarkDeadLettered(context.Background(), l, "permanent", "x", testNow) }, StateDeadLettered, "x",
			ccf(attrs(attrLeaseToken, "other")), ErrLeaseLost},
		{"record gone", func(s *Store) error { return s.MarkFailed(context.Background(), l, "transient", "x", testNow) }, StateFailed, "x", ccf(nil), ErrLeaseLost},
		{"throttled", func(s *Store) error { return s.MarkFailed(context.Background(), l, "transient", "x", testNow) }, StateFailed, "x", errThrottled, errThrottled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := &fakeDB{update: func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
				v := item(in.ExpressionAttributeValues)
				if v.str(":st") != string(tc.status) || v.str(":reason") != tc.reason || v.str(":tok") != "tok" {
					t.Errorf("status %q, reason of %d bytes, token %q; want %s, %d bytes, tok", v.str(":st"), len(v.str(":reason")), v.str(":tok"), tc.status, len(tc.reason))
				}
				return &dynamodb.UpdateItemOutput{}, tc.answer
			}}
			err := tc.mark(newTestStore(t, db))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSenderCallsRefuseBadInput(t *testing.T) {
	ids, _ := NewIDs(bytes.Repeat([]byte("s"), MinSecretBytes))
	id, _ := ids.New("svc")
	l := NotificationLease{ID: id, Scope: "svc", Token: "t"}
	s := newTestStore(t, &fakeDB{})
	ctx := context.Background()
	for name, f := range map[string]func() error{
		"claim, bad id":     func() error { _, err := s.Claim(ctx, strings.ToUpper(id), "svc", time.Minute); return err },
		"claim, bad key id": func() error { _, err := s.Claim(ctx, id, "", time.Minute); return err },
		"claim, zero lease": func() error { _, err := s.Claim(ctx, id, "svc", 0); return err },
		"sent, no token": func() error {
			_, err := s.MarkSent(ctx, NotificationLease{ID: id, Scope: "svc"}, "p", testNow)
			return err
		},
		"sent, no provider id": func() error { _, err := s.MarkSent(ctx, l, "", testNow); return err },
		"sent, long id": func() error {
			_, err := s.MarkSent(ctx, l, strings.Repeat("p", MaxProviderIDBytes+1), testNow)
			return err
		},
		"sent, zero time":    func() error { _, err := s.MarkSent(ctx, l, "p", time.Time{}); return err },
		"failed, no class":   func() error { return s.MarkFailed(ctx, l, "", "r", testNow) },
		"failed, long class": func() error { return s.MarkFailed(ctx, l, strings.Repeat("c", MaxClassBytes+1), "r", testNow) },
		"failed, no reason":  func() error { return s.MarkFailed(ctx, l, "c", "", testNow) },
		"failed, bad UTF-8":  func() error { return s.MarkDeadLettered(ctx, l, "c", "\xff", testNow) },
		"failed, zero time":  func() error { return s.MarkFailed(ctx, l, "c", "r", time.Time{}) },
		"get, bad key id":    func() error { _, err := s.Get(ctx, id, "a b"); return err },
	} {
		if err := f(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestGet(t *testing.T) {
	ids, _ := NewIDs(bytes.Repeat([]byte("s"), MinSecretBytes))
	id, _ := ids.New("svc") // minted now: a real time, the fixed clock is in 2026
	derived, _ := ids.Derive("svc", "k", hashA)
	exp := testNow.Add(time.Hour).Unix()
	issued, _ := IssuedAt(id)
	cases := []struct {
		name  string
		id    string
		scope string
		item  map[string]types.AttributeValue
		err   error
		want  Status
		ops   string
	}{
		{name: "another key's id", id: id, scope: "other", err: ErrNotFound},
		{name: "made-up id", id: "01890a5d-ac96-7ed5-8d3b-1234567890ab", scope: "svc", err: ErrNotFound},
		{name: "not seen yet", id: id, scope: "svc", want: Status{ID: id, State: StateQueued}, ops: "GetItem"},
		{name: "derived, not seen yet", id: derived, scope: "svc", want: Status{ID: derived, State: StateQueued}, ops: "GetItem"},
		{name: "sending", id: id, scope: "svc", item: attrs(attrOwner, "svc", attrStatus, "sending", attrLeaseUntil, testNow.Add(time.Second).UnixMilli(),
			attrAttempts, 1, attrUpdatedAt, testNow.UnixMilli(), TTLAttribute, exp),
			want: Status{ID: id, State: StateSending, Attempts: 1, UpdatedAt: testNow}, ops: "GetItem"},
		{name: "sending, lease over", id: id, scope: "svc", item: attrs(attrOwner, "svc", attrStatus, "sending", attrLeaseUntil, testNow.UnixMilli(), TTLAttribute, exp),
			want: Status{ID: id, State: StateQueued}, ops: "GetItem"},
		{name: "sent", id: id, scope: "svc", item: attrs(attrOwner, "svc", attrStatus, "sent", attrProviderID, "ses-1", attrSentAt, testNow.UnixMilli(), TTLAttribute, exp),
			want: Status{ID: id, State: StateSent, ProviderMessageID: "ses-1", SentAt: testNow}, ops: "GetItem"},
		{name: "sent evidence without the sender's record", id: id, scope: "svc", item: attrs(attrOwner, "svc", attrStatus, "sending", attrLeaseUntil, testNow.UnixMilli(),
			attrProviderID, "ses-1", attrSentAt, testNow.UnixMilli(), TTLAttribute, exp),
			want: Status{ID: id, State: StateSent, ProviderMessageID: "ses-1", SentAt: testNow}, ops: "GetItem"},
		{name: "dead-lettered", id: id, scope: "svc", item: attrs(attrOwner, "svc", attrStatus, "dead-lettered", attrFailClass, "permanent",
			attrFailReason, "rejected", attrFailedAt, testNow.UnixMilli(), TTLAttribute, exp),
			want: Status{ID: id, State: StateDeadLettered, FailureClass: "permanent", FailureReason: "rejected", FailedAt: testNow}, ops: "GetItem"},
		{name: "expired, not deleted yet", id: id, scope: "svc", item: attrs(attrOwner, "svc", attrStatus, "sent", TTLAttribute, testNow.Unix()),
			err: ErrNotFound, ops: "GetItem"},
		{name: "record of another owner", id: id, scope: "svc", item: attrs(attrOwner, "x", attrStatus, "sent", TTLAttribute, exp),
			err: ErrNotFound, ops: "GetItem"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := &fakeDB{get: func(in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
				if in.ConsistentRead != nil && *in.ConsistentRead {
					t.Error("Get reads strongly consistently (twice the cost)")
				}
				return &dynamodb.GetItemOutput{Item: tc.item}, nil
			}}
			s := newTestStore(t, db)
			// The clock is the id's issue time plus a minute for the
			// unseen ids, testNow for records.
			s.cfg.Clock = fixedClock
			if tc.item == nil {
				s.cfg.Clock = func() time.Time { return issued.Add(time.Minute) }
			}
			got, err := s.Get(context.Background(), tc.id, tc.scope)
			if db.ops() != tc.ops {
				t.Errorf("requests %q, want %q", db.ops(), tc.ops)
			}
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("Get = %+v, %v\nwant  %+v", got, err, tc.want)
			}
		})
	}

	// A minted id older than StatusTTL without a record is unknown.
	db := &fakeDB{get: func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) { return &dynamodb.GetItemOutput{}, nil }}
	s := newTestStore(t, db)
	s.cfg.Clock = func() time.Time { return issued.Add(s.cfg.StatusTTL + time.Second) }
	if _, err := s.Get(context.Background(), id, "svc"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old unseen id: %v, want ErrNotFound", err)
	}
	// A table that does not answer.
	db = &fakeDB{get: func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) { return nil, errThrottled }}
	if _, err := newTestStore(t, db).Get(context.Background(), id, "svc"); !Unavailable(err) || !strings.Contains(err.Error(), "get "+id) {
		t.Fatalf("throttled Get: %v", err)
	}
}

func TestTruncate(t *testing.T) {
	cases := map[string]struct {
		in   string
		max  int
		want string
	}{
		"short":          {"abc", 5, "abc"},
		"exact":          {"abcde", 5, "abcde"},
		"ascii cut":      {"abcdef", 5, "abcde"},
		"mid rune":       {"aéé", 4, "aé"},
		"trailing space": {"ab  cd", 4, "ab"},
	}
	for name, tc := range cases {
		if got := truncate(tc.in, tc.max); got != tc.want {
			t.Errorf("%s: truncate(%q, %d) = %q, want %q", name, tc.in, tc.max, got, tc.want)
		}
	}
}
