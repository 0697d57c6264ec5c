package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"herald/services/internal/herald"
)

// valid is a minimal valid request body, changed by each case.
func valid(change func(m map[string]any)) string {
	m := map[string]any{
		"to":      []string{"alice@example.com"},
		"subject": "Your order shipped",
		"text":    "It is on its way.",
	}
	if change != nil {
		change(m)
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func TestPostNotification(t *testing.T) {
	manyTo := make([]string, herald.MaxRecipients+1)
	for i := range manyTo {
		manyTo[i] = fmt.Sprintf("user%d@example.com", i)
	}
	type tc struct {
		name    string
		method  string
		path    string
		hdr     map[string]string
		body    string
		sqs     *fakeSQS
		cfg     func(*config)
		status  int
		fields  []string          // the problem's errors, by field
		kind    string            // problem type after the base
		headers map[string]string // reply headers that must be set (substring)
		check   func(t *testing.T, env herald.Envelope, delay int32)
	}
	cases := []tc{
		{name: "minimal request is queued", body: valid(nil), status: 202,
			check: func(t *testing.T, env herald.Envelope, delay int32) {
				if env.From != "Herald <noreply@herald.test>" || env.KeyID != testKeyID || delay != 0 {
					t.Errorf("envelope from %q key %q delay %d", env.From, env.KeyID, delay)
				}
			}},
		{name: "every field is queued", status: 202, body: valid(func(m map[string]any) {
			m["cc"] = []string{"Bob <bob@example.com>"}
			m["bcc"] = []string{"audit@example.com"}
			m["from"] = "Shop <shop@mail.herald.test>"
			m["replyTo"] = "help@example.com"
			m["html"] = "<p>It is <b>on its way</b> & soon there.</p>"
			m["delaySeconds"] = 900
			m["metadata"] = map[string]string{"order": "42"}
		}), check: func(t *testing.T, env herald.Envelope, delay int32) {
			if delay != 900 || env.From != "Shop <shop@mail.herald.test>" || env.HTML != "<p>It is <b>on its way</b> & soon there.</p>" ||
				env.Metadata["order"] != "42" || len(env.Cc) != 1 || len(env.Bcc) != 1 || env.ReplyTo != "help@example.com" {
				t.Errorf("envelope %+v delay %d", env, delay)
			}
		}},
		// The domain is queued in lower case: SES compares its "*@domain"
		// conditions case-sensitively. Name and local part stay as written.
		{name: "allowed sender address, any case", status: 202, body: valid(func(m map[string]any) { m["from"] = "Alerts@EXAMPLE.org" }),
			check: func(t *testing.T, env herald.Envelope, _ int32) {
				if env.From != "Alerts@example.org" {
					t.Errorf("queued from %q, want Alerts@example.org", env.From)
				}
			}},
		{name: "allowed sender domain, any case", status: 202, body: valid(func(m map[string]any) { m["from"] = `"Shop, Billing" <Shop@Mail.Herald.TEST>` }),
			check: func(t *testing.T, env herald.Envelope, _ int32) {
				if env.From != `"Shop, Billing" <Shop@mail.herald.test>` {
					t.Errorf("queued from %q, want the domain in lower case only", env.From)
				}
			}},
		{name: "json with utf-8 charset", status: 202, hdr: map[string]string{"Content-Type": "application/json; charset=UTF-8"}, body: valid(nil)},
		{name: "json suffix media type", status: 202, hdr: map[string]string{"Content-Type": "application/vnd.herald+json"}, body: valid(nil)},
		{name: "noncharacters reach the queue escaped", status: 202, body: valid(func(m map[string]any) { m["text"] = "a\uFFFEb\uFFFF" }),
			check: func(t *testing.T, env herald.Envelope, _ int32) {
				if env.Text != "a\uFFFEb\uFFFF" {
					t.Errorf("text %q", env.Text)
				}
			}},

		{name: "no Authorization", hdr: map[string]string{"Authorization": "-"}, body: valid(nil), status: 401, kind: "unauthorized",
			headers: map[string]string{"WWW-Authenticate": `Bearer realm="herald"`}},
		{name: "wrong key", hdr: map[string]string{"Authorization": "Bearer hk_wrong"}, body: valid(nil), status: 401, kind: "unauthorized",
			headers: map[string]string{"WWW-Authenticate": `error="invalid_token"`}},
		{name: "key under another scheme", hdr: map[string]string{"Authorization": "Basic " + testKey}, body: valid(nil), status: 401, kind: "unauthorized"},
		{name: "bearer without key", hdr: map[string]string{"Authorization": "Bearer "}, body: valid(nil), status: 401, kind: "unauthorized"},

		{name: "text/plain", hdr: map[string]string{"Content-Type": "text/plain"}, body: valid(nil), status: 415, kind: "unsupported-media-type"},
		{name: "no content type", hdr: map[string]string{"Content-Type": "-"}, body: valid(nil), status: 415, kind: "unsupported-media-type"},
		{name: "json in latin-1", hdr: map[string]string{"Content-Type": "application/json; charset=iso-8859-1"}, body: valid(nil), status: 415, kind: "unsupported-media-type"},

		// Issue 16: the text must be UTF-8 (415, as documented), names exact and once.
		{name: "invalid UTF-8 bytes", body: `{"to":["alice@example.com"],"subject":"a` + "\xff\xfe" + `","text":"t"}`, status: 415, kind: "unsupported-media-type"},
		{name: "overlong UTF-8", body: `{"to":["alice@example.com"],"subject":"` + "\xc0\xaf" + `","text":"t"}`, status: 415, kind: "unsupported-media-type"},
		{name: "lone surrogate escape", body: `{"to":["alice@example.com"],"subject":"a\ud800b","text":"t"}`, status: 415, kind: "unsupported-media-type"},
		{name: "surrogate pair escape is a character", body: `{"to":["alice@example.com"],"subject":"smile \ud83d\ude00","text":"t"}`, status: 202,
			check: func(t *testing.T, env herald.Envelope, _ int32) {
				if env.Subject != "smile \U0001F600" {
					t.Errorf("subject %q", env.Subject)
				}
			}},
		{name: "a name in another case is unknown", body: `{"to":["alice@example.com"],"TO":["mallory@example.com"],"subject":"s","text":"t"}`,
			status: 400, kind: "validation", fields: []string{"TO"}},
		{name: "Subject is not subject", body: `{"to":["alice@example.com"],"Subject":"s","text":"t"}`, status: 400, kind: "validation", fields: []string{"Subject"}},
		{name: "duplicate name", body: `{"to":["alice@example.com"],"to":["mallory@example.com"],"subject":"s","text":"t"}`,
			status: 400, kind: "malformed", fields: []string{"to"}},
		{name: "duplicate metadata key", body: `{"to":["alice@example.com"],"subject":"s","text":"t","metadata":{"k":"a","k":"b"}}`,
			status: 400, kind: "malformed", fields: []string{"metadata.k"}},
		{name: "wrong type of one recipient", body: `{"to":["alice@example.com",7],"subject":"s","text":"t"}`, status: 400, kind: "validation", fields: []string{"to[1]"}},
		{name: "malformed json", body: `{"to":`, status: 400, kind: "malformed", fields: []string{""}},
		{name: "empty body", body: ``, status: 400, kind: "malformed", fields: []string{""}},
		{name: "not an object", body: `["a@b.c"]`, status: 400, kind: "malformed", fields: []string{""}},
		{name: "data after the object", body: valid(nil) + `{}`, status: 400, kind: "malformed", fields: []string{""}},
		{name: "unknown field", body: valid(func(m map[string]any) { m["priority"] = "high" }), status: 400, kind: "validation", fields: []string{"priority"}},
		{name: "wrong type", body: valid(func(m map[string]any) { m["to"] = "alice@example.com" }), status: 400, kind: "validation", fields: []string{"to"}},
		{name: "fractional delay", body: valid(func(m map[string]any) { m["delaySeconds"] = 1.5 }), status: 400, kind: "validation", fields: []string{"delaySeconds"}},

		{name: "no recipient", body: valid(func(m map[string]any) { delete(m, "to") }), status: 400, kind: "validation", fields: []string{"to"}},
		{name: "bcc only is enough", body: valid(func(m map[string]any) { delete(m, "to"); m["bcc"] = []string{"a@example.com"} }), status: 202},
		{name: "over 50 recipients", body: valid(func(m map[string]any) { m["to"] = manyTo }), status: 400, kind: "validation", fields: []string{"to"}},
		{name: "bad address", body: valid(func(m map[string]any) { m["cc"] = []string{"ok@example.com", "not an address"} }), status: 400, kind: "validation", fields: []string{"cc[1]"}},
		{name: "no subject", body: valid(func(m map[string]any) { m["subject"] = " " }), status: 400, kind: "validation", fields: []string{"subject"}},
		{name: "no body", body: valid(func(m map[string]any) { delete(m, "text") }), status: 400, kind: "validation", fields: []string{"text"}},
		{name: "every problem named", body: `{"to":["x"],"subject":"","replyTo":"y","delaySeconds":-1}`, status: 400, kind: "validation",
			fields: []string{"to[0]", "replyTo", "subject", "text", "delaySeconds"}},

		{name: "CRLF in subject", body: valid(func(m map[string]any) { m["subject"] = "Hi\r\nBcc: victim@example.com" }), status: 400, kind: "validation", fields: []string{"subject"}},
		{name: "LF in recipient name", body: valid(func(m map[string]any) { m["to"] = []string{"\"Eve\nBcc: victim@example.com\" <eve@example.com>"} }), status: 400, kind: "validation", fields: []string{"to[0]"}},
		{name: "CR in replyTo", body: valid(func(m map[string]any) { m["replyTo"] = "a@example.com\rBcc: victim@example.com" }), status: 400, kind: "validation", fields: []string{"replyTo"}},
		{name: "CRLF in from name", body: valid(func(m map[string]any) { m["from"] = "\"X\r\nBcc: v@example.com\" <noreply@herald.test>" }), status: 400, kind: "validation", fields: []string{"from"}},
		{name: "CRLF in metadata value", body: valid(func(m map[string]any) { m["metadata"] = map[string]string{"k": "v\r\nX-Evil: 1"} }), status: 400, kind: "validation", fields: []string{"metadata.k"}},
		{name: "LF in metadata key", body: valid(func(m map[string]any) { m["metadata"] = map[string]string{"k\nX-Evil": "v"} }), status: 400, kind: "validation", fields: []string{"metadata.k\nX-Evil"}},

		// Issue 16: a sender's display name holding an address is refused;
		// control characters outside bodies; addresses as SES takes them.
		{name: "address in the from display name", body: valid(func(m map[string]any) { m["from"] = `"security@bank.test" <noreply@herald.test>` }),
			status: 400, kind: "validation", fields: []string{"from"}},
		{name: "encoded @ in the from display name", body: valid(func(m map[string]any) { m["from"] = `=?utf-8?q?security=40bank.test?= <noreply@herald.test>` }),
			status: 400, kind: "validation", fields: []string{"from"}},
		{name: "address in the replyTo display name", body: valid(func(m map[string]any) { m["replyTo"] = `"billing@bank.test" <help@example.com>` }),
			status: 400, kind: "validation", fields: []string{"replyTo"}},
		{name: "a plain display name is fine", body: valid(func(m map[string]any) { m["from"] = `"Shop, Billing" <shop@mail.herald.test>` }), status: 202},
		{name: "comment after an address", body: valid(func(m map[string]any) { m["to"] = []string{"alice@example.com (Alice)"} }),
			status: 400, kind: "validation", fields: []string{"to[0]"}},
		{name: "local part over 64", body: valid(func(m map[string]any) { m["to"] = []string{strings.Repeat("a", 1000) + "@example.com"} }),
			status: 400, kind: "validation", fields: []string{"to[0]"}},
		{name: "IP-literal domain", body: valid(func(m map[string]any) { m["cc"] = []string{"root@[192.0.2.1]"} }),
			status: 400, kind: "validation", fields: []string{"cc[0]"}},
		{name: "non-ASCII domain", body: valid(func(m map[string]any) { m["bcc"] = []string{"a@bücher.example"} }),
			status: 400, kind: "validation", fields: []string{"bcc[0]"}},
		{name: "Punycode domain", body: valid(func(m map[string]any) { m["bcc"] = []string{"a@xn--bcher-kva.example"} }), status: 202},
		{name: "control characters in a body are kept", body: valid(func(m map[string]any) { m["text"] = "tab\tform\ffeed" }), status: 202},
		{name: "metadata with an escape", body: valid(func(m map[string]any) { m["metadata"] = map[string]string{"k": "\x1b[31mred"} }),
			status: 400, kind: "validation", fields: []string{"metadata.k"}},
		{name: "NUL in subject", body: valid(func(m map[string]any) { m["subject"] = "a\x00b" }), status: 400, kind: "validation", fields: []string{"subject"}},
		{name: "ESC in subject", body: valid(func(m map[string]any) { m["subject"] = "a\x1bb" }), status: 400, kind: "validation", fields: []string{"subject"}},
		{name: "DEL in subject", body: valid(func(m map[string]any) { m["subject"] = "a\x7fb" }), status: 400, kind: "validation", fields: []string{"subject"}},
		{name: "VT in subject", body: valid(func(m map[string]any) { m["subject"] = "a\vb" }), status: 400, kind: "validation", fields: []string{"subject"}},
		{name: "FF in subject", body: valid(func(m map[string]any) { m["subject"] = "a\fb" }), status: 400, kind: "validation", fields: []string{"subject"}},
		{name: "U+2028 in subject", body: valid(func(m map[string]any) { m["subject"] = "a\u2028b" }), status: 400, kind: "validation", fields: []string{"subject"}},
		{name: "U+0085 in subject", body: valid(func(m map[string]any) { m["subject"] = "a\u0085b" }), status: 400, kind: "validation", fields: []string{"subject"}},
		{name: "sender not allowed", body: valid(func(m map[string]any) { m["from"] = "ceo@example.com" }), status: 400, kind: "validation", fields: []string{"from"}},
		{name: "sender of a sub-domain not allowed", body: valid(func(m map[string]any) { m["from"] = "x@sub.mail.herald.test" }), status: 400, kind: "validation", fields: []string{"from"}},
		{name: "delay over 900", body: valid(func(m map[string]any) { m["delaySeconds"] = 901 }), status: 400, kind: "validation", fields: []string{"delaySeconds"}},

		{name: "body over the request limit", body: valid(func(m map[string]any) { m["text"] = strings.Repeat("x", 2048) }),
			cfg: func(c *config) { c.MaxMessageBytes = 1024 }, status: 413, kind: "too-large"},
		{name: "queued message over the limit", body: valid(func(m map[string]any) { m["text"] = strings.Repeat("x", 1000) }),
			cfg: func(c *config) { c.MaxMessageBytes = 1024 }, status: 413, kind: "too-large"},
		{name: "message just within the limit", body: valid(func(m map[string]any) { m["text"] = strings.Repeat("x", 700) }),
			cfg: func(c *config) { c.MaxMessageBytes = 1024 }, status: 202},

		{name: "queue unreachable", body: valid(nil), sqs: &fakeSQS{fail: errRefused}, status: 503, kind: "unavailable",
			headers: map[string]string{"Retry-After": "5"}},
		{name: "queue times out", body: valid(nil), sqs: &fakeSQS{fail: errTimeout}, status: 503, kind: "unavailable",
			headers: map[string]string{"Retry-After": "5"}},
		{name: "queue answers 5xx", body: valid(nil), sqs: &fakeSQS{fail: func(op string) error { return errResponse(op, 500, "InternalError") }},
			status: 503, kind: "unavailable", headers: map[string]string{"Retry-After": "5"}},
		{name: "queue throttles", body: valid(nil), sqs: &fakeSQS{fail: func(op string) error { return errResponse(op, 400, "RequestThrottled") }},
			status: 503, kind: "unavailable", headers: map[string]string{"Retry-After": "5"}},
		{name: "queue hangs", body: valid(nil), sqs: &fakeSQS{block: true}, cfg: func(c *config) { c.EnqueueTimeout = 20 * time.Millisecond },
			status: 503, kind: "unavailable", headers: map[string]string{"Retry-After": "5"}},
		{name: "queue refuses access", body: valid(nil), sqs: &fakeSQS{fail: func(op string) error { return errResponse(op, 403, "AccessDenied") }},
			status: 500, kind: "queue-error"},

		{name: "GET is not allowed", method: http.MethodGet, body: "", status: 405, kind: "method-not-allowed", headers: map[string]string{"Allow": "POST"}},
		{name: "unknown path", path: "/api/notification", body: valid(nil), status: 404, kind: "not-found"},
	}
	for _, linger := range []time.Duration{0, 2 * time.Millisecond} {
		t.Run("linger="+linger.String(), func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					cfg := testConfig()
					cfg.BatchLinger = linger
					if c.cfg != nil {
						c.cfg(&cfg)
					}
					f := &fakeSQS{} // cases are shared by both lingers: a fresh fake each
					if c.sqs != nil {
						f.fail, f.block = c.sqs.fail, c.sqs.block
					}
					h := newHarness(t, cfg, f, deps{})
					method, path := cmpOr(c.method, http.MethodPost), cmpOr(c.path, "/api/notifications")
					rec := h.do(method, path, c.hdr, c.body)
					if rec.Code != c.status {
						t.Fatalf("status %d, want %d; body %s", rec.Code, c.status, rec.Body)
					}
					for k, v := range c.headers {
						if got := rec.Header().Get(k); !strings.Contains(got, v) {
							t.Errorf("header %s = %q, want %q", k, got, v)
						}
					}
					if rec.Header().Get("X-Request-Id") == "" {
						t.Error("no X-Request-Id")
					}
					queued := f.queued()
					if c.status != http.StatusAccepted {
						p := problemOf(t, rec)
						if p.Type != problemTypeBase+c.kind {
							t.Errorf("problem type %q, want %s", p.Type, c.kind)
						}
						if c.fields != nil && !slices.Equal(fields(p.Errors), c.fields) {
							t.Errorf("errors name %q, want %q (%+v)", fields(p.Errors), c.fields, p.Errors)
						}
						if len(queued) != 0 {
							t.Errorf("%d messages queued for a %d", len(queued), rec.Code)
						}
						return
					}
					var reply struct{ ID, Status string }
					if err := json.Unmarshal(rec.Body.Bytes(), &reply); err != nil || reply.Status != "queued" || reply.ID == "" {
						t.Fatalf("reply %s (%v)", rec.Body, err)
					}
					if len(queued) != 1 {
						t.Fatalf("%d messages queued, want 1", len(queued))
					}
					if strings.ContainsAny(queued[0], "\uFFFE\uFFFF") {
						t.Error("queued body holds a character SQS refuses")
					}
					env, err := herald.DecodeEnvelope([]byte(queued[0]))
					if err != nil {
						t.Fatalf("queued body: %v", err)
					}
					if env.ID != reply.ID {
						t.Errorf("queued id %s, answered %s", env.ID, reply.ID)
					}
					if c.check != nil {
						c.check(t, env, f.delays[0])
					}
				})
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestBatchCoalescingModes checks which SQS call each mode uses for a single
// send: its own SendMessage with the linger at 0, SendMessageBatch otherwise.
func TestBatchCoalescingModes(t *testing.T) {
	for _, c := range []struct {
		linger           time.Duration
		singles, batches int
	}{{0, 1, 0}, {2 * time.Millisecond, 0, 1}} {
		t.Run("linger="+c.linger.String(), func(t *testing.T) {
			cfg := testConfig()
			cfg.BatchLinger = c.linger
			h := newHarness(t, cfg, nil, deps{})
			if rec := h.do(http.MethodPost, "/api/notifications", nil, valid(nil)); rec.Code != 202 {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			if h.sqs.singles != c.singles || len(h.sqs.batchCalls()) != c.batches {
				t.Errorf("SendMessage %d, SendMessageBatch %d; want %d, %d", h.sqs.singles, len(h.sqs.batchCalls()), c.singles, c.batches)
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1700000000, 0)}
	cfg := testConfig()
	cfg.RateLimit, cfg.RateBurst = 1, 2
	h := newHarness(t, cfg, nil, deps{now: clock.now})
	post := func(key string) int {
		return h.do(http.MethodPost, "/api/notifications", map[string]string{"Authorization": "Bearer " + key}, valid(nil)).Code
	}
	// Given a burst of 2: two pass, the third is refused with Retry-After.
	for i := range 2 {
		if got := post(testKey); got != 202 {
			t.Fatalf("request %d: status %d", i, got)
		}
	}
	rec := h.do(http.MethodPost, "/api/notifications", nil, valid(nil))
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("third request: status %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	if p := problemOf(t, rec); p.Type != problemTypeBase+"rate-limited" {
		t.Errorf("type %s", p.Type)
	}
	// Another key has its own bucket.
	if got := post(otherKey); got != 202 {
		t.Errorf("other key: status %d", got)
	}
	// A batch costs one per item: 2 items need 2 tokens.
	batch := jsonBody(t, map[string]any{"notifications": []json.RawMessage{json.RawMessage(valid(nil)), json.RawMessage(valid(nil))}})
	clock.advance(time.Second)
	if rec := h.do(http.MethodPost, "/api/notifications/batch", nil, batch); rec.Code != 429 || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("batch of 2 with 1 token: status %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	clock.advance(time.Second)
	if rec := h.do(http.MethodPost, "/api/notifications/batch", nil, batch); rec.Code != 202 {
		t.Errorf("batch of 2 with 2 tokens: status %d: %s", rec.Code, rec.Body)
	}
	if got := h.metrics.Totals()["Rejected.rate"]; got != 2 {
		t.Errorf("Rejected.rate = %v, want 2", got)
	}
}

// TestBatch covers the batch endpoint's per-item results and overall status.
func TestBatch(t *testing.T) {
	item := func(change func(m map[string]any)) json.RawMessage { return json.RawMessage(valid(change)) }
	items := func(n int) []json.RawMessage {
		out := make([]json.RawMessage, n)
		for i := range out {
			out[i] = item(func(m map[string]any) { m["subject"] = fmt.Sprintf("n%d", i) })
		}
		return out
	}
	type tc struct {
		name     string
		body     string
		sqs      *fakeSQS
		cfg      func(*config)
		status   int
		statuses []int    // per item
		fields   []string // errors of the items, in order, joined per item by ","
		calls    []int    // entries per SendMessageBatch call, in order, when checked
		check    func(t *testing.T, f *fakeSQS)
	}
	entryFails := func(id, body string, seen int) *types.BatchResultErrorEntry {
		switch {
		case id == "3": // SQS-side, every time: retried once, then 503
			return &types.BatchResultErrorEntry{Code: aws.String("InternalError"), SenderFault: false}
		case id == "7" && seen == 0: // SQS-side once: the retry queues it
			return &types.BatchResultErrorEntry{Code: aws.String("ServiceUnavailable"), SenderFault: false}
		case id == "5": // the message itself: not retried
			return &types.BatchResultErrorEntry{Code: aws.String("InvalidMessageContents"), SenderFault: true}
		case id == "8":
			return &types.BatchResultErrorEntry{Code: aws.String("KmsAccessDenied"), SenderFault: true}
		}
		return nil
	}
	cases := []tc{
		{name: "25 valid are queued in tens", body: jsonBody(t, map[string]any{"notifications": items(25)}), status: 202,
			statuses: repeat(202, 25), calls: []int{10, 10, 5}},
		{name: "invalid items are answered each", status: 207,
			body: jsonBody(t, map[string]any{"notifications": []json.RawMessage{
				item(nil),
				item(func(m map[string]any) { delete(m, "subject"); m["from"] = "x@evil.example" }),
				item(func(m map[string]any) { m["cc2"] = []string{} }),
				item(func(m map[string]any) { m["text"] = strings.Repeat("x", 1100) }),
				json.RawMessage(`"not an object"`),
				item(nil),
			}}),
			cfg:      func(c *config) { c.MaxMessageBytes = 1024 },
			statuses: []int{202, 400, 400, 413, 400, 202},
			fields:   []string{"", "subject,from", "cc2", "", "", ""},
			calls:    []int{2}},
		{name: "partial SendMessageBatch failure", body: jsonBody(t, map[string]any{"notifications": items(12)}),
			sqs: &fakeSQS{failEntry: entryFails}, status: 207,
			statuses: []int{202, 202, 202, 503, 202, 400, 202, 202, 500, 202, 202, 202},
			// First chunk of 10, its retry of entries 3 and 7, the second chunk
			// of 2 (the chunks go concurrently, so the order is checked apart).
			check: func(t *testing.T, f *fakeSQS) {
				calls := f.batchCalls()
				var sizes []int
				for _, c := range calls {
					sizes = append(sizes, len(c))
				}
				slices.Sort(sizes)
				if !slices.Equal(sizes, []int{2, 2, 10}) {
					t.Errorf("call sizes %v, want 2, 2, 10", sizes)
				}
				for _, c := range calls {
					if len(c) == 2 && c[0] == "3" && c[1] == "7" {
						return
					}
				}
				t.Errorf("no retry of entries 3 and 7 in %v", calls)
			}},
		// Nor sent again: they may be on the queue.
		{name: "entries SQS does not report are not accepted", body: jsonBody(t, map[string]any{"notifications": items(3)}),
			sqs: &fakeSQS{silent: true}, status: 503, statuses: []int{503, 503, 503}, calls: []int{3}},
		{name: "all invalid is a 400 problem", body: jsonBody(t, map[string]any{"notifications": []json.RawMessage{item(func(m map[string]any) { delete(m, "to") })}}),
			status: 400, statuses: []int{400}, fields: []string{"to"}, calls: []int{}},
		{name: "queue unreachable is a 503 problem", body: jsonBody(t, map[string]any{"notifications": items(3)}),
			sqs: &fakeSQS{fail: errRefused}, status: 503, statuses: []int{503, 503, 503}},
		{name: "queue refusing is a 500 problem", body: jsonBody(t, map[string]any{"notifications": items(2)}),
			sqs: &fakeSQS{fail: func(op string) error { return errResponse(op, 400, "AWS.SimpleQueueService.NonExistentQueue") }}, status: 500, statuses: []int{500, 500}},
		{name: "large messages split by payload size", body: jsonBody(t, map[string]any{"notifications": []json.RawMessage{
			item(func(m map[string]any) { m["text"] = strings.Repeat("a", 600) }),
			item(func(m map[string]any) { m["text"] = strings.Repeat("b", 600) }),
			item(func(m map[string]any) { m["text"] = "c" }),
		}}), cfg: func(c *config) { c.MaxMessageBytes = 1024 }, status: 202, statuses: []int{202, 202, 202},
			check: func(t *testing.T, f *fakeSQS) {
				if len(f.payload) < 2 {
					t.Errorf("%d SendMessageBatch calls for 1.2 KiB of messages under a 1 KiB payload limit", len(f.payload))
				}
				for _, p := range f.payload {
					if p > 1024 {
						t.Errorf("a call of %d bytes of bodies; limit 1024", p)
					}
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig()
			if c.cfg != nil {
				c.cfg(&cfg)
			}
			h := newHarness(t, cfg, c.sqs, deps{})
			rec := h.do(http.MethodPost, "/api/notifications/batch", nil, c.body)
			if rec.Code != c.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, c.status, rec.Body)
			}
			wantCT := "application/json"
			if c.status >= 400 {
				wantCT = "application/problem+json"
			}
			if ct := rec.Header().Get("Content-Type"); ct != wantCT {
				t.Errorf("Content-Type %q, want %q", ct, wantCT)
			}
			if slices.Contains(c.statuses, 503) != (rec.Header().Get("Retry-After") != "") {
				t.Errorf("Retry-After %q with item statuses %v", rec.Header().Get("Retry-After"), c.statuses)
			}
			var reply batchReply
			if err := json.Unmarshal(rec.Body.Bytes(), &reply); err != nil {
				t.Fatal(err)
			}
			if reply.Status != c.status || len(reply.Results) != len(c.statuses) {
				t.Fatalf("reply %+v", reply)
			}
			if c.status >= 400 && (reply.Type == "" || reply.Title == "") {
				t.Errorf("no problem type/title on a %d", c.status)
			}
			queued := map[string]bool{}
			for _, b := range h.sqs.queued() {
				env, err := herald.DecodeEnvelope([]byte(b))
				if err != nil {
					t.Fatalf("queued body: %v", err)
				}
				queued[env.ID] = true
			}
			accepted := 0
			for i, r := range reply.Results {
				if r.Index != i || r.Status != c.statuses[i] {
					t.Errorf("result %d: %+v, want status %d", i, r, c.statuses[i])
				}
				if c.fields != nil && strings.Join(fields(r.Errors), ",") != c.fields[i] {
					t.Errorf("result %d errors %q, want %q", i, fields(r.Errors), c.fields[i])
				}
				if (r.Status == 202) != (r.ID != "" && queued[r.ID]) {
					t.Errorf("result %d: status %d, id %q queued %v", i, r.Status, r.ID, queued[r.ID])
				}
				if r.Status == 202 {
					accepted++
				} else if r.Detail == "" {
					t.Errorf("result %d: %d without detail", i, r.Status)
				}
			}
			if reply.Accepted != accepted || reply.Rejected != len(c.statuses)-accepted || len(queued) != accepted {
				t.Errorf("accepted %d rejected %d queued %d; counted %d accepted", reply.Accepted, reply.Rejected, len(queued), accepted)
			}
			if c.calls != nil {
				var sizes []int
				for _, call := range h.sqs.batchCalls() {
					sizes = append(sizes, len(call))
				}
				slices.Sort(sizes)
				want := slices.Clone(c.calls)
				slices.Sort(want)
				if !slices.Equal(sizes, want) && !(len(sizes) == 0 && len(want) == 0) {
					t.Errorf("SendMessageBatch sizes %v, want %v", sizes, want)
				}
			}
			if c.check != nil {
				c.check(t, h.sqs)
			}
		})
	}
}

func repeat(v, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func TestBatchRequestErrors(t *testing.T) {
	many := make([]json.RawMessage, maxBatchItems+1)
	for i := range many {
		many[i] = json.RawMessage(valid(nil))
	}
	for _, c := range []struct {
		name   string
		method string
		hdr    map[string]string
		body   string
		status int
		field  string
	}{
		{name: "no key", hdr: map[string]string{"Authorization": "-"}, body: `{"notifications":[]}`, status: 401},
		{name: "not json", hdr: map[string]string{"Content-Type": "text/csv"}, body: `a,b`, status: 415},
		{name: "empty list", body: `{"notifications":[]}`, status: 400, field: "notifications"},
		{name: "no list", body: `{}`, status: 400, field: "notifications"},
		{name: "over 100", body: jsonBody(t, map[string]any{"notifications": many}), status: 400, field: "notifications"},
		{name: "list of the wrong type", body: `{"notifications":{"to":[]}}`, status: 400, field: "notifications"},
		{name: "unknown top-level field", body: `{"notifications":[],"dryRun":true}`, status: 400, field: "dryRun"},
		{name: "bare array", body: `[]`, status: 400, field: ""},
		{name: "over the body limit", body: `{"notifications":["` + strings.Repeat("x", 11*1024) + `"]}`, status: 413},
		{name: "GET", method: http.MethodGet, status: 405},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.MaxMessageBytes = 1024
			h := newHarness(t, cfg, nil, deps{})
			rec := h.do(cmpOr(c.method, http.MethodPost), "/api/notifications/batch", c.hdr, c.body)
			if rec.Code != c.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, c.status, rec.Body)
			}
			p := problemOf(t, rec)
			if c.status == 400 && (len(p.Errors) != 1 || p.Errors[0].Field != c.field) {
				t.Errorf("errors %+v, want field %q", p.Errors, c.field)
			}
			if len(h.sqs.queued()) != 0 {
				t.Error("something was queued")
			}
		})
	}
}

func TestHealth(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1700000000, 0)}
	f := &fakeSQS{}
	cfg := testConfig()
	cfg.ReadyCache = 5 * time.Second
	h := newHarness(t, cfg, f, deps{now: clock.now})
	for _, path := range []string{"/api", "/healthz"} {
		t.Run(path, func(t *testing.T) {
			// Liveness asks nothing of the queue and needs no key.
			f.fail = errRefused
			defer func() { f.fail = nil }()
			rec := h.do(http.MethodGet, path, map[string]string{"Authorization": "-"}, "")
			if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"ok"`) {
				t.Errorf("status %d: %s", rec.Code, rec.Body)
			}
			if rec := h.do(http.MethodPost, path, nil, ""); rec.Code != 405 || rec.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("POST: status %d Allow %q", rec.Code, rec.Header().Get("Allow"))
			}
		})
	}
	t.Run("/readyz", func(t *testing.T) {
		get := func() int { return h.do(http.MethodGet, "/readyz", nil, "").Code }
		if got := get(); got != 200 {
			t.Fatalf("ready: %d", got)
		}
		// Within the cache time the answer is reused: no new call.
		f.fail = errRefused
		if got := get(); got != 200 || f.attrs != 1 {
			t.Errorf("cached: status %d after %d calls", got, f.attrs)
		}
		clock.advance(5 * time.Second)
		rec := h.do(http.MethodGet, "/readyz", nil, "")
		if rec.Code != 503 || rec.Header().Get("Retry-After") == "" || f.attrs != 2 {
			t.Errorf("queue down: status %d Retry-After %q after %d calls", rec.Code, rec.Header().Get("Retry-After"), f.attrs)
		}
		f.fail = nil
		clock.advance(5 * time.Second)
		if got := get(); got != 200 {
			t.Errorf("queue back: %d", got)
		}
		h.srv.draining.Store(true)
		if got := get(); got != 503 {
			t.Errorf("draining: %d", got)
		}
	})
}

// TestRequestLog checks the one log line per request: id in and out, key
// id, status; never the key, an address, or the body.
func TestRequestLog(t *testing.T) {
	h := newHarness(t, testConfig(), nil, deps{})
	body := valid(func(m map[string]any) { m["subject"] = "secret-subject" })
	rec := h.do(http.MethodPost, "/api/notifications", map[string]string{"X-Request-Id": "req-123"}, body)
	if rec.Code != 202 || rec.Header().Get("X-Request-Id") != "req-123" {
		t.Fatalf("status %d, X-Request-Id %q", rec.Code, rec.Header().Get("X-Request-Id"))
	}
	h.do(http.MethodPost, "/api/notifications", map[string]string{"X-Request-Id": "bad id\x01", "Authorization": "Bearer hk_guess"}, body)

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(h.log.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "request" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("%d request lines, want 2:\n%s", len(lines), h.log)
	}
	if l := lines[0]; l["requestId"] != "req-123" || l["keyId"] != testKeyID || l["status"] != 202.0 || l["method"] != "POST" ||
		l["path"] != "/api/notifications" || l["latencyMs"] == nil || l["notificationId"] == nil {
		t.Errorf("first line %v", l)
	}
	if l := lines[1]; l["requestId"] == "bad id\x01" || l["requestId"] == "" || l["status"] != 401.0 {
		t.Errorf("second line %v", l)
	}
	for _, secret := range []string{testKey, "hk_guess", "alice@example.com", "secret-subject", "It is on its way"} {
		if strings.Contains(h.log.String(), secret) {
			t.Errorf("log holds %q", secret)
		}
	}
}

func TestMetrics(t *testing.T) {
	h := newHarness(t, testConfig(), nil, deps{})
	h.do(http.MethodPost, "/api/notifications", nil, valid(nil))
	h.do(http.MethodPost, "/api/notifications", map[string]string{"Authorization": "-"}, valid(nil))
	h.do(http.MethodPost, "/api/notifications", nil, `{}`)
	h.do(http.MethodPost, "/api/notifications", map[string]string{"Content-Type": "text/plain"}, valid(nil))
	h.sqs.fail = errRefused
	h.do(http.MethodPost, "/api/notifications", nil, valid(nil))
	want := map[string]float64{"Accepted": 1, "Rejected": 4, "Rejected.auth": 1, "Rejected.validation": 1,
		"Rejected.media": 1, "Rejected.unavailable": 1}
	got := h.metrics.Totals()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}
