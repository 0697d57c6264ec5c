package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"herald/services/devstack/dynamolocal"
	"herald/services/devstack/secretslocal"
	"herald/services/internal/herald"
	"herald/services/internal/store"
)

// The API's idempotency and status run here on the real store, on dynalite
// (the store's conditions are what is tested, not a fake's).

type storeEnv struct {
	dyn *dynamolocal.Server
	st  *store.Store
	ids *store.IDs
}

// newStoreEnv gives one test a table of the store's shape on the test
// binary's dynalite.
func newStoreEnv(t *testing.T) storeEnv {
	t.Helper()
	dyn, table := dynamo.Table(t)
	ids, err := store.NewIDs(bytes.Repeat([]byte("i"), store.MinSecretBytes))
	if err != nil {
		t.Fatal(err)
	}
	// One attempt per call: a fault shows at once.
	db := dyn.Client(func(o *dynamodb.Options) { o.RetryMaxAttempts = 1 })
	st, err := store.New(db, store.Config{Table: table, IdempotencyTTL: 24 * time.Hour, StatusTTL: 30 * 24 * time.Hour, IDs: ids, Clock: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	return storeEnv{dyn: dyn, st: st, ids: ids}
}

func (e storeEnv) harness(t *testing.T, f *fakeSQS) *harness {
	return newHarness(t, testConfig(), f, deps{state: e.st, ids: e.ids})
}

type answer struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

func answerOf(t *testing.T, rec *httptest.ResponseRecorder) answer {
	t.Helper()
	var a answer
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
		t.Fatalf("answer %s: %v", rec.Body, err)
	}
	return a
}

func keyHeader(k string) map[string]string { return map[string]string{"Idempotency-Key": k} }

func TestIdempotencyKey(t *testing.T) {
	env := newStoreEnv(t)
	h := env.harness(t, nil)
	x, y := valid(nil), valid(func(m map[string]any) { m["subject"] = "another" })

	// Given a first request with a key, when it is posted again with the
	// same body, then the first answer comes back and nothing is queued.
	first := h.do(http.MethodPost, "/api/notifications", keyHeader("order-1"), x)
	if first.Code != 202 {
		t.Fatalf("first: %d %s", first.Code, first.Body)
	}
	id := answerOf(t, first).ID
	if want, _ := env.ids.Derive(testKeyID, "order-1", sha256.Sum256([]byte(x))); id != want {
		t.Errorf("id %s, want the one derived from the key, %s", id, want)
	}
	for _, k := range []string{"order-1", `"order-1"`} {
		again := h.do(http.MethodPost, "/api/notifications", keyHeader(k), x)
		if again.Code != 202 || again.Body.String() != first.Body.String() {
			t.Errorf("key %s again: %d %s, want the first answer %s", k, again.Code, again.Body, first.Body)
		}
	}
	if n := len(h.sqs.queued()); n != 1 {
		t.Fatalf("%d queued after a replay, want 1", n)
	}
	// Another body with the same key: 422, nothing queued.
	other := h.do(http.MethodPost, "/api/notifications", keyHeader("order-1"), y)
	if other.Code != 422 || problemOf(t, other).Type != problemTypeBase+"idempotency-key-reused" {
		t.Errorf("same key, other body: %d %s", other.Code, other.Body)
	}
	// The same key under another API key is another notification.
	mine := h.do(http.MethodPost, "/api/notifications", map[string]string{"Idempotency-Key": "order-1", "Authorization": "Bearer " + otherKey}, x)
	if mine.Code != 202 || answerOf(t, mine).ID == id {
		t.Errorf("other API key: %d %s (first id %s)", mine.Code, mine.Body, id)
	}
	if n := len(h.sqs.queued()); n != 2 {
		t.Errorf("%d queued, want 2", n)
	}
	queuedIDs := map[string]bool{}
	for _, b := range h.sqs.queued() {
		var env struct{ ID string }
		json.Unmarshal([]byte(b), &env)
		queuedIDs[env.ID] = true
	}
	if !queuedIDs[id] {
		t.Errorf("the queued envelopes %v do not carry the answered id %s", queuedIDs, id)
	}
}

func TestIdempotencyKeyRefused(t *testing.T) {
	env := newStoreEnv(t)
	h := env.harness(t, nil)
	for name, k := range map[string]string{
		"empty":          `""`,
		"unterminated":   `"abc`,
		"after quote":    `"abc"def`,
		"bad escape":     `"a\b"`,
		"too long":       strings.Repeat("k", 256),
		"not ASCII":      "clé",
		"control inside": "\"a\x01b\"",
	} {
		t.Run(name, func(t *testing.T) {
			rec := h.do(http.MethodPost, "/api/notifications", keyHeader(k), valid(nil))
			if rec.Code != 400 || fields(problemOf(t, rec).Errors)[0] != "Idempotency-Key" {
				t.Errorf("%q: %d %s", k, rec.Code, rec.Body)
			}
		})
	}
	t.Run("two headers", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodPost, "/api/notifications", strings.NewReader(valid(nil)))
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Add("Idempotency-Key", "a")
		req.Header.Add("Idempotency-Key", "b")
		rec := httptest.NewRecorder()
		h.h.ServeHTTP(rec, req)
		if rec.Code != 400 {
			t.Errorf("two keys: %d %s", rec.Code, rec.Body)
		}
	})
	t.Run("in the body of a single notification", func(t *testing.T) {
		rec := h.do(http.MethodPost, "/api/notifications", nil, valid(func(m map[string]any) { m["idempotencyKey"] = "k" }))
		if rec.Code != 400 || fields(problemOf(t, rec).Errors)[0] != "idempotencyKey" {
			t.Errorf("%d %s", rec.Code, rec.Body)
		}
	})
	if n := len(h.sqs.queued()); n != 0 {
		t.Errorf("%d queued by refused requests", n)
	}
}

func TestIdempotencyKeyWithoutStore(t *testing.T) {
	h := newHarness(t, testConfig(), nil, deps{})
	for _, c := range []struct{ path, body string }{
		{"/api/notifications", valid(nil)},
		{"/api/notifications/batch", `{"notifications":[` + valid(nil) + `]}`},
	} {
		rec := h.do(http.MethodPost, c.path, keyHeader("k"), c.body)
		if rec.Code != 501 || problemOf(t, rec).Type != problemTypeBase+"no-store" {
			t.Errorf("%s: %d %s", c.path, rec.Code, rec.Body)
		}
	}
	rec := h.do(http.MethodPost, "/api/notifications/batch", nil, `{"notifications":[`+valid(func(m map[string]any) { m["idempotencyKey"] = "k" })+`]}`)
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), `"status":501`) {
		t.Errorf("item key without a store: %d %s", rec.Code, rec.Body)
	}
	if rec := h.do(http.MethodGet, "/api/notifications/0190a5b0-0000-7000-8000-000000000000", nil, ""); rec.Code != 501 {
		t.Errorf("GET without a store: %d %s", rec.Code, rec.Body)
	}
	// Without a key, the API works as ever.
	if rec := h.do(http.MethodPost, "/api/notifications", nil, valid(nil)); rec.Code != 202 {
		t.Errorf("unkeyed without a store: %d", rec.Code)
	}
}

func TestIdempotencyKeyInFlight(t *testing.T) {
	env := newStoreEnv(t)
	f := &fakeSQS{gate: make(chan struct{}), started: make(chan struct{}, 10)}
	h := env.harness(t, f)
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		req := httptest.NewRequest(http.MethodPost, "/api/notifications", strings.NewReader(valid(nil)))
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "slow")
		rec := httptest.NewRecorder()
		h.h.ServeHTTP(rec, req)
		done <- rec
	}()
	select {
	case <-f.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the first request never reached SQS")
	}
	// While the first is held at SQS, the same key is in flight.
	second := h.do(http.MethodPost, "/api/notifications", keyHeader("slow"), valid(nil))
	if second.Code != 409 || problemOf(t, second).Type != problemTypeBase+"idempotency-key-in-flight" {
		t.Fatalf("second: %d %s", second.Code, second.Body)
	}
	if ra, _ := strconv.Atoi(second.Header().Get("Retry-After")); ra < 1 || ra > int(keyLease/time.Second) {
		t.Errorf("Retry-After %q, want 1..%d", second.Header().Get("Retry-After"), int(keyLease/time.Second))
	}
	close(f.gate)
	first := <-done
	if first.Code != 202 {
		t.Fatalf("first: %d %s", first.Code, first.Body)
	}
	third := h.do(http.MethodPost, "/api/notifications", keyHeader("slow"), valid(nil))
	if third.Code != 202 || answerOf(t, third).ID != answerOf(t, first).ID {
		t.Errorf("after the first: %d %s", third.Code, third.Body)
	}
	if n := len(f.queued()); n != 1 {
		t.Errorf("%d queued, want 1", n)
	}
}

// An outcome SQS leaves unclear is answered as such; the retry with the key
// is taken at once (no 409) and carries the same id.
func TestIdempotencyUnknownOutcome(t *testing.T) {
	env := newStoreEnv(t)
	f := &fakeSQS{silent: true}
	h := env.harness(t, f)
	rec := h.do(http.MethodPost, "/api/notifications", keyHeader("unclear"), valid(nil))
	p := problemOf(t, rec)
	if rec.Code != 503 || !strings.Contains(p.Detail, "may or may not be queued") || !strings.Contains(p.Detail, "same Idempotency-Key is safe") {
		t.Fatalf("unclear: %d %s", rec.Code, rec.Body)
	}
	if rec.Header().Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	if calls := f.batchCalls(); len(calls) != 1 {
		t.Errorf("%d SendMessageBatch calls, want 1: an unclear entry is not sent again", len(calls))
	}
	f.mu.Lock()
	f.silent = false
	f.mu.Unlock()
	retry := h.do(http.MethodPost, "/api/notifications", keyHeader("unclear"), valid(nil))
	want, _ := env.ids.Derive(testKeyID, "unclear", sha256.Sum256([]byte(valid(nil))))
	if retry.Code != 202 || answerOf(t, retry).ID != want {
		t.Errorf("retry: %d %s, want 202 with %s", retry.Code, retry.Body, want)
	}
	// Without a key, the detail says a retry may send it twice.
	f.mu.Lock()
	f.silent = true
	f.mu.Unlock()
	rec = h.do(http.MethodPost, "/api/notifications", nil, valid(nil))
	if p := problemOf(t, rec); rec.Code != 503 || !strings.Contains(p.Detail, "without one may send it twice") {
		t.Errorf("unkeyed unclear: %d %s", rec.Code, rec.Body)
	}

	// A definite failure (nothing queued) frees the key: the retry starts afresh.
	f2 := &fakeSQS{fail: errRefused}
	h2 := env.harness(t, f2)
	if rec := h2.do(http.MethodPost, "/api/notifications", keyHeader("refused"), valid(nil)); rec.Code != 503 || !strings.Contains(problemOf(t, rec).Detail, "nothing was queued") {
		t.Fatalf("refused: %d %s", rec.Code, rec.Body)
	}
	f2.mu.Lock()
	f2.fail = nil
	f2.mu.Unlock()
	if rec := h2.do(http.MethodPost, "/api/notifications", keyHeader("refused"), valid(nil)); rec.Code != 202 {
		t.Errorf("retry after a refusal: %d %s", rec.Code, rec.Body)
	}
}

// The store down: a keyed request is refused (nothing queued), an unkeyed
// one is queued, a status lookup is refused; all with Retry-After.
func TestStoreDown(t *testing.T) {
	env := newStoreEnv(t)
	h := env.harness(t, nil)
	posted := h.do(http.MethodPost, "/api/notifications", nil, valid(nil))
	if posted.Code != 202 {
		t.Fatal(posted.Body)
	}
	for _, mode := range []dynamolocal.FaultMode{dynamolocal.FaultUnavailable, dynamolocal.FaultThrottle} {
		t.Run(string(mode), func(t *testing.T) {
			if err := env.dyn.SetFault(mode, time.Minute); err != nil {
				t.Fatal(err)
			}
			defer env.dyn.SetFault(mode, 0)
			before := len(h.sqs.queued())
			keyed := h.do(http.MethodPost, "/api/notifications", keyHeader("down-"+string(mode)), valid(nil))
			if keyed.Code != 503 || problemOf(t, keyed).Type != problemTypeBase+"store-unavailable" || keyed.Header().Get("Retry-After") == "" {
				t.Errorf("keyed: %d %v %s", keyed.Code, keyed.Header(), keyed.Body)
			}
			batch := h.do(http.MethodPost, "/api/notifications/batch", keyHeader("down-batch-"+string(mode)), `{"notifications":[`+valid(nil)+`,`+valid(nil)+`]}`)
			if batch.Code != 503 {
				t.Errorf("keyed batch: %d %s", batch.Code, batch.Body)
			}
			if n := len(h.sqs.queued()); n != before {
				t.Errorf("%d queued while the store is down", n-before)
			}
			unkeyed := h.do(http.MethodPost, "/api/notifications", nil, valid(nil))
			if unkeyed.Code != 202 {
				t.Errorf("unkeyed: %d %s", unkeyed.Code, unkeyed.Body)
			}
			get := h.do(http.MethodGet, "/api/notifications/"+answerOf(t, posted).ID, nil, "")
			if get.Code != 503 || get.Header().Get("Retry-After") == "" {
				t.Errorf("GET: %d %s", get.Code, get.Body)
			}
		})
	}
	// Back up: the same key goes through.
	if rec := h.do(http.MethodPost, "/api/notifications", keyHeader("down-unavailable"), valid(nil)); rec.Code != 202 {
		t.Errorf("after the outage: %d %s", rec.Code, rec.Body)
	}
}

func TestBatchIdempotency(t *testing.T) {
	env := newStoreEnv(t)
	h := env.harness(t, nil)
	item := func(key, subject string) string {
		return valid(func(m map[string]any) {
			m["subject"] = subject
			if key != "" {
				m["idempotencyKey"] = key
			}
		})
	}
	batch := func(items ...string) string { return `{"notifications":[` + strings.Join(items, ",") + `]}` }
	results := func(rec *httptest.ResponseRecorder) []batchItem {
		t.Helper()
		var r batchReply
		if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		return r.Results
	}

	// Item keys: a replay answers each keyed item with its first id and
	// queues only the unkeyed one again.
	body := batch(item("a", "one"), item("b", "two"), item("", "three"))
	first := h.do(http.MethodPost, "/api/notifications/batch", nil, body)
	again := h.do(http.MethodPost, "/api/notifications/batch", nil, body)
	if first.Code != 202 || again.Code != 202 {
		t.Fatalf("%d %s / %d %s", first.Code, first.Body, again.Code, again.Body)
	}
	r1, r2 := results(first), results(again)
	if r1[0].ID != r2[0].ID || r1[1].ID != r2[1].ID || r1[2].ID == r2[2].ID {
		t.Errorf("ids %v then %v: keyed items keep theirs, the unkeyed one is new", r1, r2)
	}
	if n := len(h.sqs.queued()); n != 4 {
		t.Errorf("%d queued, want 4 (3, then the unkeyed one again)", n)
	}
	// Each queued envelope carries its item's answered id, keyed or not.
	subjects := map[string]string{}
	for _, b := range h.sqs.queued()[:3] {
		var e struct{ ID, Subject string }
		json.Unmarshal([]byte(b), &e)
		subjects[e.ID] = e.Subject
	}
	for i, want := range []string{"one", "two", "three"} {
		if got := subjects[r1[i].ID]; got != want {
			t.Errorf("item %d (id %s): queued with subject %q, want %q", i, r1[i].ID, got, want)
		}
	}
	// A key reused with another item: that item 422, the others go.
	mixed := h.do(http.MethodPost, "/api/notifications/batch", nil, batch(item("a", "changed"), item("c", "four")))
	if r := results(mixed); mixed.Code != 207 || r[0].Status != 422 || r[1].Status != 202 {
		t.Errorf("mixed: %d %s", mixed.Code, mixed.Body)
	}
	allReused := h.do(http.MethodPost, "/api/notifications/batch", nil, batch(item("a", "changed again")))
	if allReused.Code != 422 {
		t.Errorf("every key reused: %d %s", allReused.Code, allReused.Body)
	}

	// The header's key covers the whole batch.
	whole := batch(item("", "x1"), item("", "x2"))
	h1 := h.do(http.MethodPost, "/api/notifications/batch", keyHeader("batch-1"), whole)
	before := len(h.sqs.queued())
	h2 := h.do(http.MethodPost, "/api/notifications/batch", keyHeader("batch-1"), whole)
	if h1.Code != 202 || h2.Code != 202 || fmt.Sprint(results(h1)) != fmt.Sprint(results(h2)) || len(h.sqs.queued()) != before {
		t.Errorf("batch key replay: %s then %s, %d queued again", h1.Body, h2.Body, len(h.sqs.queued())-before)
	}
	if rec := h.do(http.MethodPost, "/api/notifications/batch", keyHeader("batch-1"), batch(item("", "x1"))); rec.Code != 422 {
		t.Errorf("batch key with another body: %d %s", rec.Code, rec.Body)
	}
	if rec := h.do(http.MethodPost, "/api/notifications/batch", keyHeader("batch-2"), batch(item("own", "y"))); rec.Code != 400 {
		t.Errorf("item key under a batch key: %d %s", rec.Code, rec.Body)
	}
	if rec := h.do(http.MethodPost, "/api/notifications/batch", nil, batch(item(strings.Repeat("k", 256), "z"))); rec.Code != 400 {
		t.Errorf("item key too long: %d %s", rec.Code, rec.Body)
	}
}

func TestGetNotification(t *testing.T) {
	env := newStoreEnv(t)
	h := env.harness(t, nil)
	keyed := answerOf(t, h.do(http.MethodPost, "/api/notifications", keyHeader("get-1"), valid(nil))).ID
	plain := answerOf(t, h.do(http.MethodPost, "/api/notifications", nil, valid(nil))).ID
	get := func(id, key string) *httptest.ResponseRecorder {
		return h.do(http.MethodGet, "/api/notifications/"+id, map[string]string{"Authorization": "Bearer " + key}, "")
	}
	for _, id := range []string{keyed, plain} {
		rec := get(id, testKey)
		if a := answerOf(t, rec); rec.Code != 200 || a.ID != id || a.Status != "queued" {
			t.Errorf("own %s: %d %s", id, rec.Code, rec.Body)
		}
		// Another key's notification is as unknown as a made-up one.
		if rec := get(id, otherKey); rec.Code != 404 || problemOf(t, rec).Type != problemTypeBase+"notification-not-found" {
			t.Errorf("other key's %s: %d %s", id, rec.Code, rec.Body)
		}
	}
	for _, id := range []string{"0190a5b0-0000-7000-8000-000000000000", "nonsense", strings.Repeat("9", 300)} {
		if rec := get(id, testKey); rec.Code != 404 {
			t.Errorf("made-up %s: %d %s", id, rec.Code, rec.Body)
		}
	}
	if rec := h.do(http.MethodGet, "/api/notifications/"+keyed, map[string]string{"Authorization": "-"}, ""); rec.Code != 401 {
		t.Errorf("no key: %d", rec.Code)
	}

	// The sender's records and SES's feedback show.
	ctx := context.Background()
	c, err := env.st.Claim(ctx, keyed, testKeyID, time.Minute)
	if err != nil || c.Outcome != store.Claimed {
		t.Fatal(c, err)
	}
	if rec := get(keyed, testKey); answerOf(t, rec).Status != "sending" {
		t.Errorf("claimed: %s", rec.Body)
	}
	sentAt := time.Now().UTC().Truncate(time.Millisecond)
	if _, err := env.st.MarkSent(ctx, c.Lease, "ses-message-1", sentAt); err != nil {
		t.Fatal(err)
	}
	if _, err := env.st.RecordFeedback(ctx, keyed, store.Feedback{ProviderMessageID: "ses-message-1", SentAt: sentAt, Recipients: []store.Recipient{
		{Address: "alice@example.com", Outcome: store.OutcomeBounced, At: sentAt.Add(time.Second), Type: "Permanent", SubType: "General", Status: "5.1.1", Diagnostic: "smtp; 550 5.1.1 user unknown"},
	}}); err != nil {
		t.Fatal(err)
	}
	rec := get(keyed, testKey)
	var st notificationStatus
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if rec.Code != 200 || st.Status != "sent" || st.ProviderMessageID != "ses-message-1" || st.SentAt == nil || !st.SentAt.Equal(sentAt) || st.Attempts != 1 {
		t.Errorf("sent: %d %s", rec.Code, rec.Body)
	}
	if len(st.Recipients) != 1 || st.Recipients[0].Address != "alice@example.com" || st.Recipients[0].Outcome != "bounced" ||
		!st.Recipients[0].Permanent || st.Recipients[0].Status != "5.1.1" {
		t.Errorf("recipients: %s", rec.Body)
	}
	if rec := get(keyed, otherKey); rec.Code != 404 {
		t.Errorf("other key, sent: %d", rec.Code)
	}
}

// The id secret's previous version still checks ids after a rotation; the
// current one mints.
func TestOpenStoreReadsTheIDSecretAcrossARotation(t *testing.T) {
	old, rotated := strings.Repeat("o", 40), strings.Repeat("n", 40)
	sm, err := secretslocal.Start("127.0.0.1:0", secretslocal.Config{Secrets: map[string]string{"herald/id": old}})
	if err != nil {
		t.Fatal(err)
	}
	defer sm.Close()
	client := secretsmanager.New(secretsmanager.Options{Region: "us-east-1", BaseEndpoint: aws.String(sm.URL),
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")})
	cfg := testConfig()
	cfg.StoreTable, cfg.IDSecretID, cfg.IdempotencyTTL, cfg.StatusTTL = "herald-test", "herald/id", time.Hour, time.Hour
	db := dynamodb.New(dynamodb.Options{Region: "us-east-1"})
	ctx := context.Background()

	_, before, err := openStore(ctx, cfg, db, client)
	if err != nil {
		t.Fatal(err)
	}
	issued, _ := before.New(testKeyID)
	if _, err := client.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("herald/id"), SecretString: aws.String(rotated)}); err != nil {
		t.Fatal(err)
	}
	_, after, err := openStore(ctx, cfg, db, client)
	if err != nil {
		t.Fatal(err)
	}
	minted, _ := after.New(testKeyID)
	onlyNew, _ := store.NewIDs([]byte(rotated))
	if !after.Owns(testKeyID, issued) || !onlyNew.Owns(testKeyID, minted) || onlyNew.Owns(testKeyID, issued) {
		t.Errorf("after the rotation: the old id is checked %t, the new one minted with the new secret %t",
			after.Owns(testKeyID, issued), onlyNew.Owns(testKeyID, minted))
	}
	cfg.IDSecretID = "herald/missing"
	if _, _, err := openStore(ctx, cfg, db, client); err == nil || !strings.Contains(err.Error(), "HERALD_ID_SECRET_ID") {
		t.Errorf("missing secret: %v", err)
	}
}

// TestKeyedWritesShareCalls: the Begins and Completes of concurrent keyed
// requests, from both endpoints, share DynamoDB calls. The batchers' linger
// is long here (10 s), so every call leaves full, and the count is exact:
// 100 keyed posts are one TransactWriteItems of 100 Puts and four
// BatchWriteItem of 25 done records; their replays one more transaction,
// cancelled, which answers every one of them from its record.
func TestKeyedWritesShareCalls(t *testing.T) {
	env := newStoreEnv(t)
	long := func(time.Duration) <-chan time.Time { return time.After(10 * time.Second) }
	h := newHarness(t, testConfig(), nil, deps{state: env.st, ids: env.ids, after: long})
	const n = store.MaxTransactItems
	post := func(i int) *httptest.ResponseRecorder {
		return h.do(http.MethodPost, "/api/notifications", keyHeader(fmt.Sprint("shared-", i)), valid(func(m map[string]any) { m["subject"] = fmt.Sprint("n", i) }))
	}
	postAll := func() []*httptest.ResponseRecorder {
		recs := make([]*httptest.ResponseRecorder, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { recs[i] = post(i) })
		}
		wg.Wait()
		return recs
	}
	before := env.dyn.Stats()
	first := postAll()
	ops := env.dyn.Stats().Sub(before)
	for i, rec := range first {
		want, _ := env.ids.Derive(testKeyID, fmt.Sprint("shared-", i), sha256.Sum256([]byte(valid(func(m map[string]any) { m["subject"] = fmt.Sprint("n", i) }))))
		if rec.Code != http.StatusAccepted || answerOf(t, rec).ID != want {
			t.Fatalf("post %d: %d %s, want 202 with id %s", i, rec.Code, rec.Body, want)
		}
	}
	if got := ops.String(); got != "BatchWriteItem=4 TransactWriteItems=1" {
		t.Errorf("DynamoDB requests for %d keyed posts: %s, want BatchWriteItem=4 TransactWriteItems=1", n, got)
	}
	if q := len(h.sqs.queued()); q != n {
		t.Errorf("%d queued, want %d", q, n)
	}

	// The replays: the same answers, nothing queued, one cancelled
	// transaction.
	before = env.dyn.Stats()
	again := postAll()
	ops = env.dyn.Stats().Sub(before)
	for i, rec := range again {
		if rec.Code != http.StatusAccepted || rec.Body.String() != first[i].Body.String() {
			t.Fatalf("replay %d: %d %s, want %s", i, rec.Code, rec.Body, first[i].Body)
		}
	}
	if got := ops.String(); got != "TransactWriteItems=1" {
		t.Errorf("DynamoDB requests for %d replays: %s, want TransactWriteItems=1", n, got)
	}
	if q := len(h.sqs.queued()); q != n {
		t.Errorf("%d queued after the replays, want still %d", q, n)
	}

	// A batch request's keyed items go through the same calls: 100 items,
	// one transaction, four batch writes.
	items := make([]string, n)
	for i := range items {
		items[i] = valid(func(m map[string]any) { m["idempotencyKey"] = fmt.Sprint("item-", i) })
	}
	before = env.dyn.Stats()
	rec := h.do(http.MethodPost, "/api/notifications/batch", nil, `{"notifications":[`+strings.Join(items, ",")+`]}`)
	ops = env.dyn.Stats().Sub(before)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("batch: %d %s", rec.Code, rec.Body)
	}
	if got := ops.String(); got != "BatchWriteItem=4 TransactWriteItems=1" {
		t.Errorf("DynamoDB requests for a batch of %d keyed items: %s, want BatchWriteItem=4 TransactWriteItems=1", n, got)
	}
}

func TestAcceptedBody(t *testing.T) {
	id := "0190b3c4-5d6e-8f80-9a1b-2c3d4e5f6a7b"
	if got, want := string(acceptedBody(id)), `{"id":"`+id+`","status":"queued"}`; got != want {
		t.Errorf("acceptedBody = %s, want %s", got, want)
	}
	if got := replayedID(acceptedBody(id)); got != id {
		t.Errorf("replayedID = %q", got)
	}
}

// TestWithID: a keyed notification prepared with the placeholder and given
// its derived id is the message prepare makes with that id, whether the id
// is spliced in or the envelope encoded again.
func TestWithID(t *testing.T) {
	s, err := newServer(testConfig(), deps{sqs: &fakeSQS{}}, herald.NewLogger(discard{}, "error", "test", "api"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	ids, err := store.NewIDs(bytes.Repeat([]byte("i"), store.MinSecretBytes))
	if err != nil {
		t.Fatal(err)
	}
	derived, _ := ids.Derive(testKeyID, "k", sha256.Sum256([]byte("b")))
	if len(derived) != len(keyedPlaceholder) || len(s.newID(testKeyID)) != len(keyedPlaceholder) {
		t.Fatalf("ids %s and %s are not as long as the placeholder %s", derived, s.newID(testKeyID), keyedPlaceholder)
	}
	delay := int64(30)
	now := time.Now()
	for name, req := range map[string]notificationRequest{
		"minimal": {To: []string{"alice@example.com"}, Subject: "s", Text: "t"},
		"everything": {To: []string{"a@example.com"}, Cc: []string{"b@example.com"}, Bcc: []string{"c@example.com"},
			ReplyTo: "r@example.com", Subject: `"id":"x" <&> é`, Text: "t", HTML: "<p>h</p>", DelaySeconds: &delay,
			Metadata: map[string]string{"id": "0190b3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b", "k": "v"}},
		"escaped by sqsSafe": {To: []string{"alice@example.com"}, Subject: "s", Text: "a \uFFFE b \uFFFF"},
	} {
		for _, id := range []string{derived, "not-an-id-of-the-usual-length"} {
			t.Run(name+" "+id, func(t *testing.T) {
				p := s.prepare(req, testKeyID, keyedPlaceholder, now)
				if p.status != 0 {
					t.Fatalf("prepare: %d %s %v", p.status, p.detail, p.errs)
				}
				got, want := s.withID(p, id), s.prepare(req, testKeyID, id, now)
				if got.id != want.id || got.msg != want.msg || got.status != want.status {
					t.Errorf("withID:\n%+v\nprepare:\n%+v", got.msg, want.msg)
				}
			})
		}
	}
}
