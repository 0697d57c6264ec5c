package store_test

// Integration tests: the store against dynalite (services/devstack/dynamolocal),
// one emulator for the test binary, a fresh table per test. They are skipped
// only when node_modules has no dynalite; `make test` installs it.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"herald/services/devstack/dynamolocal"
	"herald/services/devstack/dynamolocal/dynamotest"
	"herald/services/internal/store"
)

var dynamo = dynamotest.Emulator{Root: "../../.."}

func TestMain(m *testing.M) {
	if writesOKChild() {
		return
	}
	os.Exit(dynamo.Run(m))
}

// emulator is the test binary's dynalite, started on first use.
func emulator(tb testing.TB) *dynamolocal.Server { tb.Helper(); return dynamo.Server(tb) }

// newTable makes a table of the production shape for one test.
func newTable(tb testing.TB) (*dynamolocal.Server, string) { tb.Helper(); return dynamo.Table(tb) }

// clock is a settable time for leases and TTLs.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().Truncate(time.Millisecond).UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

const (
	idemTTL   = 24 * time.Hour
	statusTTL = 18 * 24 * time.Hour
)

func testIDs(tb testing.TB) *store.IDs {
	tb.Helper()
	ids, err := store.NewIDs([]byte(strings.Repeat("s", store.MinSecretBytes)))
	if err != nil {
		tb.Fatal(err)
	}
	return ids
}

func newStore(tb testing.TB, c *clock, client store.Client, table string) *store.Store {
	tb.Helper()
	s, err := store.New(client, store.Config{
		Table: table, IdempotencyTTL: idemTTL, StatusTTL: statusTTL, IDs: testIDs(tb), Clock: c.Now,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func body(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// setup is a store on a fresh table, with a settable clock.
func setup(t *testing.T) (context.Context, *dynamolocal.Server, *clock, *store.Store) {
	t.Helper()
	emu, table := newTable(t)
	c := newClock()
	return context.Background(), emu, c, newStore(t, c, emu.Client(), table)
}

func TestIdempotencyOnDynalite(t *testing.T) {
	ctx, _, c, s := setup(t)
	const lease = 30 * time.Second
	answer := store.Answer{Status: 202, Body: []byte(`{"status":"queued"}`)}

	// Given a first request with key k1, when it begins, it is started with
	// the derived id.
	first, err := s.Begin(ctx, "svc", "k1", body("a"), lease)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := testIDs(t).Derive("svc", "k1", body("a"))
	if first.Outcome != store.Started || first.ID != want {
		t.Fatalf("first = %+v, want started with id %s", first, want)
	}
	// While it is in flight: the same body is 409, another body 422.
	if b, err := s.Begin(ctx, "svc", "k1", body("a"), lease); err != nil || b.Outcome != store.InFlight || !b.LeaseUntil.Equal(c.Now().Add(lease)) {
		t.Fatalf("same key in flight = %+v, %v; want in-flight until %s", b, err, c.Now().Add(lease))
	}
	if b, err := s.Begin(ctx, "svc", "k1", body("b"), lease); err != nil || b.Outcome != store.Mismatch {
		t.Fatalf("other body = %+v, %v; want mismatch", b, err)
	}
	// The same key of another API key is another record.
	if b, err := s.Begin(ctx, "other", "k1", body("b"), lease); err != nil || b.Outcome != store.Started {
		t.Fatalf("other API key = %+v, %v; want started", b, err)
	}
	// Completed, it replays.
	if err := s.Complete(ctx, first.Lease, answer); err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, first.Lease, answer); err != nil {
		t.Fatalf("a repeated Complete: %v", err)
	}
	b, err := s.Begin(ctx, "svc", "k1", body("a"), lease)
	if err != nil || b.Outcome != store.Replay || b.ID != first.ID || b.Answer.Status != 202 || string(b.Answer.Body) != string(answer.Body) {
		t.Fatalf("replay = %+v, %v; want the stored answer", b, err)
	}
	if b, _ := s.Begin(ctx, "svc", "k1", body("b"), lease); b.Outcome != store.Mismatch {
		t.Fatalf("other body after completion = %v, want mismatch", b.Outcome)
	}

	// A request whose task died: after its lease, the retry takes over with
	// the same id, and the dead one's late Complete is refused.
	dead, _ := s.Begin(ctx, "svc", "k2", body("a"), lease)
	c.Advance(lease)
	retry, err := s.Begin(ctx, "svc", "k2", body("a"), lease)
	if err != nil || retry.Outcome != store.Started || retry.ID != dead.ID {
		t.Fatalf("retry after the lease = %+v, %v; want a take-over with id %s", retry, err, dead.ID)
	}
	if err := s.Complete(ctx, dead.Lease, answer); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("late Complete: %v, want ErrLeaseLost", err)
	}
	if err := s.Abandon(ctx, dead.Lease); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("late Abandon: %v, want ErrLeaseLost", err)
	}
	// Released after an unclear outcome: the retry takes over at once.
	if err := s.Release(ctx, retry.Lease); err != nil {
		t.Fatal(err)
	}
	if b, err := s.Begin(ctx, "svc", "k2", body("a"), lease); err != nil || b.Outcome != store.Started || b.ID != dead.ID {
		t.Fatalf("after Release = %+v, %v; want a take-over", b, err)
	}
	if err := s.Release(ctx, retry.Lease); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("Release of a lost lease: %v, want ErrLeaseLost", err)
	}

	// Abandoned (nothing queued): a retry starts afresh, with any body.
	ab, _ := s.Begin(ctx, "svc", "k3", body("a"), lease)
	for range 2 {
		if err := s.Abandon(ctx, ab.Lease); err != nil {
			t.Fatalf("Abandon: %v", err)
		}
	}
	if b, err := s.Begin(ctx, "svc", "k3", body("b"), lease); err != nil || b.Outcome != store.Started {
		t.Fatalf("after Abandon = %+v, %v; want a fresh start", b, err)
	}

	// After IdempotencyTTL the key is free: another body is a new
	// notification with another id.
	c.Advance(idemTTL)
	b, err = s.Begin(ctx, "svc", "k1", body("b"), lease)
	if err != nil || b.Outcome != store.Started || b.ID == first.ID {
		t.Fatalf("after the TTL = %+v, %v; want a fresh start with a new id", b, err)
	}
}

// A rotated id secret derives another id; a stale record is taken over with
// the id it holds, so the message it may have queued and the retry's are one.
func TestBeginKeepsTheIDAcrossASecretRotation(t *testing.T) {
	ctx := context.Background()
	emu, table := newTable(t)
	c := newClock()
	old := newStore(t, c, emu.Client(), table)
	first, err := old.Begin(ctx, "svc", "k", body("a"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rotated, _ := store.NewIDs([]byte(strings.Repeat("n", store.MinSecretBytes)), []byte(strings.Repeat("s", store.MinSecretBytes)))
	s, err := store.New(emu.Client(), store.Config{Table: table, IdempotencyTTL: idemTTL, StatusTTL: statusTTL, IDs: rotated, Clock: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second)
	b, err := s.Begin(ctx, "svc", "k", body("a"), time.Second)
	if err != nil || b.Outcome != store.Started || b.ID != first.ID {
		t.Fatalf("take-over after rotation = %+v, %v; want id %s", b, err, first.ID)
	}
	if !rotated.Owns("svc", b.ID) {
		t.Fatal("the rotated secrets do not verify the old id")
	}
}

func TestStatusOnDynalite(t *testing.T) {
	ctx, _, c, s := setup(t)
	ids := testIDs(t)
	const lease = time.Minute
	id, _ := ids.New("svc")

	get := func(want store.State) store.Status {
		t.Helper()
		st, err := s.Get(ctx, id, "svc")
		if err != nil || st.State != want {
			t.Fatalf("Get = %+v, %v; want %s", st, err, want)
		}
		return st
	}
	// Accepted, not yet seen by a sender: queued for its key, unknown to
	// another key and for an id never issued.
	get(store.StateQueued)
	if _, err := s.Get(ctx, id, "other"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another key's Get: %v, want ErrNotFound", err)
	}
	forged := id[:len(id)-6] + "000000"
	if _, err := s.Get(ctx, forged, "svc"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a forged id: %v, want ErrNotFound", err)
	}

	// A sender claims it; a second sender finds it busy.
	a, err := s.Claim(ctx, id, "svc", lease)
	if err != nil || a.Outcome != store.Claimed || a.Attempt != 1 || a.TookOver {
		t.Fatalf("claim = %+v, %v; want claimed, attempt 1", a, err)
	}
	get(store.StateSending)
	if b, err := s.Claim(ctx, id, "svc", lease); err != nil || b.Outcome != store.Busy || !b.LeaseUntil.Equal(c.Now().Add(lease)) {
		t.Fatalf("second claim = %+v, %v; want busy", b, err)
	}
	if _, err := s.Claim(ctx, id, "other", lease); !errors.Is(err, store.ErrOwnerMismatch) {
		t.Fatalf("claim for another key: %v, want ErrOwnerMismatch", err)
	}
	// A transient failure ends the lease: the next delivery claims at once.
	if err := s.MarkFailed(ctx, a.Lease, "transient", "SES throttled", c.Now()); err != nil {
		t.Fatal(err)
	}
	if st := get(store.StateFailed); st.FailureClass != "transient" || st.FailureReason != "SES throttled" || st.Attempts != 1 {
		t.Fatalf("failed status = %+v", st)
	}
	a2, err := s.Claim(ctx, id, "svc", lease)
	if err != nil || a2.Outcome != store.Claimed || a2.Attempt != 2 || a2.TookOver {
		t.Fatalf("claim after a failure = %+v, %v; want claimed, attempt 2, no take-over", a2, err)
	}
	// Its sender dies: the lease ends, the status reads queued, and the next
	// claim is a take-over; the dead sender's late failure is refused.
	c.Advance(lease)
	get(store.StateQueued)
	a3, err := s.Claim(ctx, id, "svc", lease)
	if err != nil || a3.Outcome != store.Claimed || !a3.TookOver || a3.Attempt != 3 {
		t.Fatalf("claim after the lease = %+v, %v; want a take-over, attempt 3", a3, err)
	}
	if err := s.MarkFailed(ctx, a2.Lease, "transient", "late", c.Now()); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("late MarkFailed: %v, want ErrLeaseLost", err)
	}
	// Sent: recorded once; a repeated MarkSent is the same, another send a
	// duplicate; a redelivery is already sent.
	at := c.Now()
	for range 2 {
		r, err := s.MarkSent(ctx, a3.Lease, "ses-1", at)
		if err != nil || r.Duplicate {
			t.Fatalf("MarkSent = %+v, %v", r, err)
		}
	}
	if st := get(store.StateSent); st.ProviderMessageID != "ses-1" || !st.SentAt.Equal(at) {
		t.Fatalf("sent status = %+v", st)
	}
	if r, err := s.MarkSent(ctx, a2.Lease, "ses-2", at); err != nil || !r.Duplicate || r.First.ProviderMessageID != "ses-1" {
		t.Fatalf("second send = %+v, %v; want a duplicate of ses-1", r, err)
	}
	if b, err := s.Claim(ctx, id, "svc", lease); err != nil || b.Outcome != store.AlreadySent || b.Sent.ProviderMessageID != "ses-1" {
		t.Fatalf("redelivery = %+v, %v; want already sent", b, err)
	}
	if err := s.MarkDeadLettered(ctx, a3.Lease, "permanent", "late", c.Now()); !errors.Is(err, store.ErrAlreadySent) {
		t.Fatalf("dead-letter after sent: %v, want ErrAlreadySent", err)
	}
	if _, err := s.MarkSent(ctx, store.NotificationLease{ID: id, Scope: "other", Token: "t"}, "ses-3", at); !errors.Is(err, store.ErrOwnerMismatch) {
		t.Fatalf("MarkSent for another key: %v, want ErrOwnerMismatch", err)
	}

	// Dead-lettered, then redriven: claimable again.
	dl, _ := ids.New("svc")
	d, _ := s.Claim(ctx, dl, "svc", lease)
	if err := s.MarkDeadLettered(ctx, d.Lease, "permanent", "MessageRejected: Email address is not verified", c.Now()); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Get(ctx, dl, "svc"); st.State != store.StateDeadLettered || st.FailureClass != "permanent" {
		t.Fatalf("dead-lettered status = %+v", st)
	}
	if r, err := s.Claim(ctx, dl, "svc", lease); err != nil || r.Outcome != store.Claimed || r.Attempt != 2 {
		t.Fatalf("claim after a redrive = %+v, %v", r, err)
	}

	// A keyed (derived) id is queued until seen, like a minted one.
	kid, _ := ids.Derive("svc", "key", body("x"))
	if st, err := s.Get(ctx, kid, "svc"); err != nil || st.State != store.StateQueued {
		t.Fatalf("derived id = %+v, %v; want queued", st, err)
	}
	// Past StatusTTL: the record has expired (still in the table, as
	// DynamoDB keeps it for days), and a minted id never seen is unknown.
	c.Advance(statusTTL + time.Hour)
	if _, err := s.Get(ctx, id, "svc"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired record: %v, want ErrNotFound", err)
	}
	old, _ := ids.New("svc")
	if _, err := s.Get(ctx, old, "svc"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an id older than StatusTTL never seen: %v, want ErrNotFound", err)
	}
}

// Many senders claim one id at once, and many API tasks begin one key at
// once: exactly one wins each.
func TestConcurrentClaimsAndBegins(t *testing.T) {
	ctx := context.Background()
	emu, table := newTable(t)
	s := newStore(t, newClock(), emu.Client(), table)
	id, _ := testIDs(t).New("svc")
	const n = 32
	claims := make([]store.Claim, n)
	begins := make([]store.Begun, n)
	errs := make([]error, 2*n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			claims[i], errs[i] = s.Claim(ctx, id, "svc", time.Minute)
		}()
		go func() {
			defer wg.Done()
			begins[i], errs[n+i] = s.Begin(ctx, "svc", "same-key", body("a"), time.Minute)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for i := range n {
		count["claim "+claims[i].Outcome.String()]++
		count["begin "+begins[i].Outcome.String()]++
	}
	want := map[string]int{"claim claimed": 1, "claim busy": n - 1, "begin started": 1, "begin in-flight": n - 1}
	if fmt.Sprint(count) != fmt.Sprint(want) {
		t.Fatalf("outcomes %v, want %v", count, want)
	}
}

// Requests per notification on each path, counted by the emulator's proxy
// as DynamoDB would bill them. The figures are in DESIGN.md.
func TestRequestsPerNotification(t *testing.T) {
	ctx, emu, c, s := setup(t)
	ids := testIDs(t)
	const lease = time.Minute
	answer := store.Answer{Status: 202, Body: []byte(`{}`)}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	sendOnce := func(id string) store.NotificationLease {
		cl, err := s.Claim(ctx, id, "svc", lease)
		must(err)
		_, err = s.MarkSent(ctx, cl.Lease, "ses-"+id, c.Now())
		must(err)
		return cl.Lease
	}
	claimNew := func() store.NotificationLease {
		id, _ := ids.New("svc")
		cl, err := s.Claim(ctx, id, "svc", lease)
		must(err)
		return cl.Lease
	}
	paths := []struct {
		name string
		run  func()
		want string
	}{
		{"without key: API", func() { ids.New("svc") }, ""},
		{"without key: sender, sent", func() { id, _ := ids.New("svc"); sendOnce(id) }, "UpdateItem=2"},
		{"with key: API, accepted", func() {
			b, err := s.Begin(ctx, "svc", "k1", body("a"), lease)
			must(err)
			must(s.Complete(ctx, b.Lease, answer))
		}, "PutItem=1 UpdateItem=1"},
		{"with key: API, 10 at once", func() {
			reqs := make([]store.BeginRequest, 10)
			for i := range reqs {
				reqs[i] = store.BeginRequest{Scope: "svc", Key: fmt.Sprint("shared-", i), BodyHash: body("a")}
			}
			var cs []store.Completion
			for _, r := range s.BeginMany(ctx, lease, reqs) {
				must(r.Err)
				cs = append(cs, store.Completion{Lease: r.Lease, Answer: answer})
			}
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			must(errors.Join(s.CompleteMany(cctx, cs)...))
		}, "BatchWriteItem=1 TransactWriteItems=1"},
		{"with key: sender, sent", func() { id, _ := ids.Derive("svc", "k1", body("a")); sendOnce(id) }, "UpdateItem=2"},
		{"with key: replay", func() { _, err := s.Begin(ctx, "svc", "k1", body("a"), lease); must(err) }, "PutItem=1"},
		{"with key: 409 or 422", func() { _, err := s.Begin(ctx, "svc", "k1", body("b"), lease); must(err) }, "PutItem=1"},
		{"with key: failed before queuing", func() {
			b, err := s.Begin(ctx, "svc", "k2", body("a"), lease)
			must(err)
			must(s.Abandon(ctx, b.Lease))
		}, "DeleteItem=1 PutItem=1"},
		{"redelivered after sent", func() {
			id, _ := ids.New("svc")
			sendOnce(id)
			before := emu.Stats()
			_, err := s.Claim(ctx, id, "svc", lease)
			must(err)
			if d := emu.Stats().Sub(before).String(); d != "UpdateItem=1" {
				t.Errorf("the redelivery alone: %s, want UpdateItem=1", d)
			}
		}, "UpdateItem=3"},
		{"transient failure, then sent", func() {
			l := claimNew()
			must(s.MarkFailed(ctx, l, "transient", "throttled", c.Now()))
			sendOnce(l.ID)
		}, "UpdateItem=4"},
		{"permanent failure", func() { must(s.MarkDeadLettered(ctx, claimNew(), "permanent", "rejected", c.Now())) }, "UpdateItem=2"},
		{"GET of an own id", func() { id, _ := ids.New("svc"); _, err := s.Get(ctx, id, "svc"); must(err) }, "GetItem=1"},
		{"GET of another key's id", func() { id, _ := ids.New("svc"); s.Get(ctx, id, "other") }, ""},
	}
	for _, p := range paths {
		before := emu.Stats()
		p.run()
		got := emu.Stats().Sub(before).String()
		t.Logf("%-32s %s", p.name, got)
		if got != p.want {
			t.Errorf("%s: requests %q, want %q", p.name, got, p.want)
		}
	}
}

// Throttling, server errors and timeouts come back as errors that
// Unavailable recognises, and the store works again when they end.
func TestOutagesOnDynalite(t *testing.T) {
	emu, table := newTable(t)
	// One attempt per call, so each fault shows at once.
	client := emu.Client(func(o *dynamodb.Options) { o.RetryMaxAttempts = 1 })
	s := newStore(t, newClock(), client, table)
	id, _ := testIDs(t).New("svc")
	for _, mode := range []dynamolocal.FaultMode{dynamolocal.FaultThrottle, dynamolocal.FaultUnavailable, dynamolocal.FaultHang} {
		t.Run(string(mode), func(t *testing.T) {
			if err := emu.SetFault(mode, time.Minute); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			_, err := s.Claim(ctx, id, "svc", time.Minute)
			cancel()
			if err == nil || !store.Unavailable(err) {
				t.Fatalf("claim during %s: %v, want an error Unavailable recognises", mode, err)
			}
			if err := emu.SetFault(mode, 0); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Get(context.Background(), id, "svc"); err != nil {
				t.Fatalf("after the fault: %v", err)
			}
		})
	}
}

// BeginMany and CompleteMany on the emulator: a mixed batch gets the
// outcomes Begin gives one by one, in two transactions (the first cancelled
// by the records that exist) and a PutItem (the key twice); ten done
// records are one BatchWriteItem; their replays one cancelled transaction.
func TestBeginManyOnDynalite(t *testing.T) {
	ctx, emu, c, s := setup(t)
	const lease = 30 * time.Second
	answer := store.Answer{Status: 202, Body: []byte(`{"status":"queued"}`)}
	done, err := s.Begin(ctx, "svc", "done", body("a"), lease)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, done.Lease, answer); err != nil {
		t.Fatal(err)
	}
	inflight, _ := s.Begin(ctx, "svc", "inflight", body("a"), lease)
	s.Begin(ctx, "svc", "other-body", body("b"), lease)
	stale, _ := s.Begin(ctx, "svc", "stale", body("a"), time.Second)
	c.Advance(2 * time.Second)

	keys := []string{"new", "done", "inflight", "other-body", "stale", "twice", "twice"}
	reqs := make([]store.BeginRequest, len(keys))
	for i, k := range keys {
		reqs[i] = store.BeginRequest{Scope: "svc", Key: k, BodyHash: body("a")}
	}
	before := emu.Stats()
	got := s.BeginMany(ctx, lease, reqs)
	if ops := emu.Stats().Sub(before).String(); ops != "PutItem=1 TransactWriteItems=2" {
		t.Errorf("requests %s, want PutItem=1 TransactWriteItems=2", ops)
	}
	want := []store.BeginOutcome{store.Started, store.Replay, store.InFlight, store.Mismatch, store.Started, store.Started, store.InFlight}
	for i, r := range got {
		if r.Err != nil || r.Outcome != want[i] {
			t.Fatalf("%s: %+v, want %s", keys[i], r, want[i])
		}
	}
	if got[1].ID != done.ID || string(got[1].Answer.Body) != string(answer.Body) || got[2].ID != inflight.ID || got[4].ID != stale.ID {
		t.Errorf("ids or answer not the records': %+v", got)
	}
	if err := s.Complete(ctx, stale.Lease, answer); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("the taken-over request's Complete: %v, want ErrLeaseLost", err)
	}

	// Ten started requests complete in one BatchWriteItem and then replay.
	var cs []store.Completion
	reqs = reqs[:0]
	for i := range 10 {
		reqs = append(reqs, store.BeginRequest{Scope: "svc", Key: fmt.Sprint("ten-", i), BodyHash: body("a")})
	}
	for _, r := range s.BeginMany(ctx, lease, reqs) {
		if r.Err != nil || r.Outcome != store.Started {
			t.Fatalf("begin: %+v", r)
		}
		cs = append(cs, store.Completion{Lease: r.Lease, Answer: store.Answer{Status: 202, Body: []byte(r.ID)}})
	}
	before = emu.Stats()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := errors.Join(s.CompleteMany(cctx, cs)...); err != nil {
		t.Fatal(err)
	}
	if ops := emu.Stats().Sub(before).String(); ops != "BatchWriteItem=1" {
		t.Errorf("requests %s, want BatchWriteItem=1", ops)
	}
	before = emu.Stats()
	for i, r := range s.BeginMany(ctx, lease, reqs) {
		if r.Err != nil || r.Outcome != store.Replay || string(r.Answer.Body) != r.ID || r.ID != cs[i].Lease.ID() {
			t.Fatalf("replay %d: %+v", i, r)
		}
	}
	if ops := emu.Stats().Sub(before).String(); ops != "TransactWriteItems=1" {
		t.Errorf("requests %s, want TransactWriteItems=1", ops)
	}
	// A completed record's answer is final: a late Release fails.
	if err := s.Release(ctx, cs[0].Lease); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("Release after CompleteMany: %v, want ErrLeaseLost", err)
	}
}

// Many API tasks begin overlapping batches of keys at once: each key is
// started exactly once, every other request for it is in flight.
func TestConcurrentBeginMany(t *testing.T) {
	ctx := context.Background()
	emu, table := newTable(t)
	s := newStore(t, newClock(), emu.Client(), table)
	const tasks, keys = 8, 20
	before := emu.Stats()
	results := make([][]store.BeginResult, tasks)
	var wg sync.WaitGroup
	for i := range tasks {
		reqs := make([]store.BeginRequest, keys)
		for k := range keys {
			reqs[k] = store.BeginRequest{Scope: "svc", Key: fmt.Sprint("k", (k+i)%keys), BodyHash: body("a")}
		}
		wg.Go(func() { results[i] = s.BeginMany(ctx, time.Minute, reqs) })
	}
	wg.Wait()
	started := map[string]int{}
	for _, rs := range results {
		for _, r := range rs {
			switch {
			case r.Err != nil:
				t.Fatal(r.Err)
			case r.Outcome == store.Started:
				started[r.Lease.Key]++
			case r.Outcome != store.InFlight:
				t.Fatalf("outcome %s", r.Outcome)
			}
		}
	}
	for k := range keys {
		if n := started[fmt.Sprint("k", k)]; n != 1 {
			t.Errorf("k%d started %d times", k, n)
		}
	}
	t.Logf("requests: %s", emu.Stats().Sub(before))
}
