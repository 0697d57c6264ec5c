package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"herald/services/devstack"
	"herald/services/notification-api/apitest"
)

// Bad input through the real HTTP server, against the real queue: each gets
// its documented status (services/notification-api/doc.go) as a problem
// document that the API's own OpenAPI document (fetched from it) has, and
// nothing is queued. The sender is stopped while the requests are made, so
// the queue's depth counts exactly what the API queued: after every request
// it must equal the number of 202s so far. Then come the connection-level
// abuses (a slow body without a key, a flood of bad keys, more connections
// than the cap), and the sender runs again and delivers exactly the
// accepted notifications.
func TestBadInputQueuesNothing(t *testing.T) {
	const maxConns = 16
	s := startStack(t, devstack.Config{APIVariables: map[string]string{
		// A small burst, so 429 comes quickly once the cases below ran.
		"HERALD_RATE_LIMIT":      "1",
		"HERALD_RATE_BURST":      "60",
		"HERALD_MAX_CONNECTIONS": fmt.Sprint(maxConns),
	}})
	stackStart := time.Now()
	if err := s.Stop(devstack.Sender); err != nil {
		t.Fatal(err)
	}
	a := newAPI(s)
	ctx := context.Background()
	l := newLedger("bad-input")
	start := time.Now()
	good := func(name string) notification {
		return notification{To: []string{"alice@example.org"}, Subject: l.prefix + name, Text: "hello"}
	}
	const jsonType = "application/json"
	tooMany := good("too many recipients")
	for i := range 51 {
		tooMany.To = append(tooMany.To, fmt.Sprintf("r%d@example.org", i))
	}
	tooManyItems := make([]notification, 101)
	for i := range tooManyItems {
		tooManyItems[i] = good(fmt.Sprintf("batch item %d", i))
	}
	big := good("envelope over the queue's limit")
	big.Text = strings.Repeat("x", 300<<10) // under the body limit (2 x 256 KiB), over the message limit
	bcc := good("header injection")
	bcc.Subject += "\r\nBcc: victim@example.org"
	badFrom := good("header injection in from")
	badFrom.From = "noreply@example.com\r\nBcc: victim@example.org"
	badReply := good("header injection in replyTo")
	badReply.ReplyTo = "support@example.com\nBcc: victim@example.org"
	badMeta := good("header injection in metadata")
	badMeta.Metadata = map[string]string{"team": "a\r\nBcc: victim@example.org"}
	posing := good("address in the from display name")
	posing.From = `"security@bank.example" <noreply@example.com>`
	ctlMeta := good("escape in metadata")
	ctlMeta.Metadata = map[string]string{"team": "\x1b[31mred"}
	withTo := func(name string, to ...string) []byte {
		n := good(name)
		n.To = to
		return mustJSON(n)
	}
	raw := func(name, fields string) []byte {
		return []byte(`{"to":["alice@example.org"],"subject":"` + l.prefix + name + `",` + fields + `}`)
	}

	cases := []struct {
		name        string
		path        string // "" is the single endpoint
		contentType string
		key         string
		body        []byte
		header      map[string]string // more request headers
		want        int
		check       func(t *testing.T, r reply)
	}{
		{name: "accepted", body: mustJSON(good("accepted")), want: http.StatusAccepted,
			check: func(t *testing.T, r reply) {
				var acc accepted
				if json.Unmarshal(r.Body, &acc) != nil || acc.ID == "" || acc.Status != "queued" {
					t.Errorf("202 body %s, want {id, status: queued}", r.Body)
				}
			}},
		{name: "missing subject and body", body: mustJSON(notification{To: []string{"alice@example.org"}}), want: http.StatusBadRequest,
			check: problemNaming("subject", "text")},
		{name: "header injection in subject", body: mustJSON(bcc), want: http.StatusBadRequest, check: problemNaming("subject")},
		{name: "header injection in from", body: mustJSON(badFrom), want: http.StatusBadRequest, check: problemNaming("from")},
		{name: "header injection in replyTo", body: mustJSON(badReply), want: http.StatusBadRequest, check: problemNaming("replyTo")},
		{name: "header injection in metadata", body: mustJSON(badMeta), want: http.StatusBadRequest, check: problemNaming("metadata.team")},
		{name: "bad address", body: mustJSON(notification{To: []string{"not an address"}, Subject: l.prefix + "s", Text: "x"}), want: http.StatusBadRequest,
			check: problemNaming("to")},
		{name: "too many recipients", body: mustJSON(tooMany), want: http.StatusBadRequest, check: problemNaming("to")},
		{name: "sender not allowed", body: mustJSON(notification{From: "ceo@elsewhere.org", To: []string{"alice@example.org"}, Subject: l.prefix + "s", Text: "x"}),
			want: http.StatusBadRequest, check: problemNaming("from")},
		// Issue 16: strict JSON and the documented UTF-8 rule.
		{name: "invalid UTF-8", body: raw("invalid utf-8", `"text":"a`+"\xff\xfe"+`"`), want: http.StatusUnsupportedMediaType},
		{name: "overlong UTF-8", body: raw("overlong", `"text":"`+"\xc0\xaf"+`"`), want: http.StatusUnsupportedMediaType},
		{name: "lone surrogate escape", body: raw("lone surrogate", `"text":"a\ud800b"`), want: http.StatusUnsupportedMediaType},
		{name: "a name in another case", body: raw("case", `"text":"x","TO":["mallory@example.org"]`), want: http.StatusBadRequest, check: problemNaming("TO")},
		{name: "a duplicate name", body: raw("duplicate", `"text":"x","to":["mallory@example.org"]`), want: http.StatusBadRequest, check: problemNaming("to")},
		{name: "Subject for subject", body: []byte(`{"to":["alice@example.org"],"Subject":"` + l.prefix + `Subject","text":"x"}`), want: http.StatusBadRequest, check: problemNaming("Subject")},
		// Senders' display names, control characters, addresses as SES takes them.
		{name: "address in the from display name", body: mustJSON(posing), want: http.StatusBadRequest, check: problemNaming("from")},
		{name: "escape in metadata", body: mustJSON(ctlMeta), want: http.StatusBadRequest, check: problemNaming("metadata.team")},
		{name: "comment after an address", body: withTo("comment", "alice@example.org (Alice)"), want: http.StatusBadRequest, check: problemNaming("to[0]")},
		{name: "local part of 1000", body: withTo("long local part", strings.Repeat("a", 1000)+"@example.org"), want: http.StatusBadRequest, check: problemNaming("to[0]")},
		{name: "IP-literal domain", body: withTo("ip literal", "root@[127.0.0.1]"), want: http.StatusBadRequest, check: problemNaming("to[0]")},
		{name: "NUL in subject", body: mustJSON(notification{To: []string{"alice@example.org"}, Subject: l.prefix + "a\x00b", Text: "x"}), want: http.StatusBadRequest, check: problemNaming("subject")},
		{name: "ESC in subject", body: mustJSON(notification{To: []string{"alice@example.org"}, Subject: l.prefix + "a\x1bb", Text: "x"}), want: http.StatusBadRequest, check: problemNaming("subject")},
		{name: "DEL in subject", body: mustJSON(notification{To: []string{"alice@example.org"}, Subject: l.prefix + "a\x7fb", Text: "x"}), want: http.StatusBadRequest, check: problemNaming("subject")},
		{name: "VT in subject", body: mustJSON(notification{To: []string{"alice@example.org"}, Subject: l.prefix + "a\vb", Text: "x"}), want: http.StatusBadRequest, check: problemNaming("subject")},
		{name: "FF in subject", body: mustJSON(notification{To: []string{"alice@example.org"}, Subject: l.prefix + "a\fb", Text: "x"}), want: http.StatusBadRequest, check: problemNaming("subject")},
		{name: "U+2028 in subject", body: mustJSON(notification{To: []string{"alice@example.org"}, Subject: l.prefix + "a\u2028b", Text: "x"}), want: http.StatusBadRequest, check: problemNaming("subject")},
		{name: "U+0085 in subject", body: mustJSON(notification{To: []string{"alice@example.org"}, Subject: l.prefix + "a\u0085b", Text: "x"}), want: http.StatusBadRequest, check: problemNaming("subject")},
		{name: "unknown field", body: []byte(`{"to":["alice@example.org"],"subject":"s","text":"x","priority":"high"}`), want: http.StatusBadRequest},
		{name: "malformed JSON", body: []byte(`{"to":`), want: http.StatusBadRequest},
		{name: "no API key", key: "-", body: mustJSON(good("no key")), want: http.StatusUnauthorized},
		{name: "wrong API key", key: a.key + "x", body: mustJSON(good("wrong key")), want: http.StatusUnauthorized},
		// Sent as careful clients send large bodies (Expect: 100-continue):
		// the API answers before reading the body and closes the
		// connection, and a client that wrote 1 MiB on regardless could get
		// a reset before reading the 413.
		{name: "body over the size limit", body: mustJSON(notification{To: []string{"alice@example.org"}, Subject: l.prefix + "big", Text: strings.Repeat("x", 1<<20)}),
			header: map[string]string{"Expect": "100-continue"}, want: http.StatusRequestEntityTooLarge},
		{name: "envelope over the queue's message size", body: mustJSON(big), want: http.StatusRequestEntityTooLarge},
		{name: "not JSON", contentType: "text/plain", body: []byte("hello"), want: http.StatusUnsupportedMediaType},
		{name: "batch of 101", path: "/api/notifications/batch", body: mustJSON(map[string]any{"notifications": tooManyItems}),
			want: http.StatusBadRequest, check: problemNaming("notifications")},
		{name: "batch with only invalid items", path: "/api/notifications/batch",
			body: mustJSON(map[string]any{"notifications": []notification{bcc, tooMany}}), want: http.StatusBadRequest,
			check: func(t *testing.T, r reply) {
				var br batchReply
				if json.Unmarshal(r.Body, &br) != nil || br.Accepted != 0 || br.Rejected != 2 || len(br.Results) != 2 {
					t.Errorf("batch reply %s, want 2 results, both rejected", r.Body)
				}
			}},
	}
	// The API's OpenAPI document, as it serves it without a key: every
	// answer below must be one it has.
	doc, err := a.request(ctx, http.MethodGet, "/api/openapi.json", nil, nil)
	if err != nil || doc.Status != http.StatusOK {
		t.Fatalf("GET /api/openapi.json: %v %v", doc, err)
	}
	contract, err := apitest.Load(ctx, doc.Body)
	if err != nil {
		t.Fatal(err)
	}
	queued := 0
	depthIs := func(t *testing.T, want int, after string) {
		t.Helper()
		d, err := s.QueueDepth(ctx, s.QueueURL())
		if err != nil {
			t.Fatal(err)
		}
		if d.Total() != want {
			t.Errorf("after %s the queue holds %d messages (%d visible, %d in flight), want %d: bad input was queued", after, d.Total(), d.Visible, d.InFlight, want)
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path, contentType, key := c.path, c.contentType, c.key
			if path == "" {
				path = "/api/notifications"
			}
			if contentType == "" {
				contentType = jsonType
			}
			switch key {
			case "":
				key = a.key
			case "-":
				key = ""
			}
			hdr := map[string]string{"Content-Type": contentType}
			if key != "" {
				hdr["Authorization"] = "Bearer " + key
			}
			for k, v := range c.header {
				hdr[k] = v
			}
			r, err := a.request(ctx, http.MethodPost, path, hdr, c.body)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != c.want {
				t.Fatalf("got %s, want %d", r, c.want)
			}
			if r.Status == http.StatusAccepted {
				var acc accepted
				json.Unmarshal(r.Body, &acc)
				l.accept(l.prefix+c.name, acc.ID)
				queued++
			} else if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
				t.Errorf("error reply Content-Type %q, want application/problem+json", ct)
			}
			if c.check != nil {
				c.check(t, r)
			}
			checkAnswer(t, contract, path, contentType, key, c.body, r)
			depthIs(t, queued, c.name)
		})
	}

	t.Run("over the rate", func(t *testing.T) {
		// The burst is 40 per key at 1/s: well before 100 quick posts a 429
		// comes; each 202 before it is queued, the 429 is not.
		for i := range 100 {
			n := good(fmt.Sprintf("rate %d", i))
			r, err := a.post(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			switch r.Status {
			case http.StatusTooManyRequests:
				if r.Header.Get("Retry-After") == "" {
					t.Error("429 without Retry-After")
				}
				depthIs(t, queued, "a 429")
				t.Logf("429 after %d posts", i+1)
				return
			case http.StatusAccepted:
				var acc accepted
				json.Unmarshal(r.Body, &acc)
				l.accept(n.Subject, acc.ID)
				queued++
			default:
				t.Fatalf("post %d: %s", i, r)
			}
		}
		t.Fatal("no 429 in 100 posts at a burst of 40")
	})

	// A slow body without a key: answered at once, and the connection
	// closed, not held for the read timeout (30 s).
	var slowAnswer, slowClosed time.Duration
	t.Run("slow body without a key", func(t *testing.T) {
		c := dialAPI(t, s)
		start := time.Now()
		c.Send("POST /api/notifications HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"to\":[")
		resp := c.Reply()
		slowAnswer = time.Since(start)
		if resp.StatusCode != http.StatusUnauthorized || !resp.Close {
			t.Fatalf("status %d, Connection: close %v; want 401 closing", resp.StatusCode, resp.Close)
		}
		if !c.ClosedByServer(apitest.ReplyWait) {
			t.Fatalf("the connection is still open %s after the 401", apitest.ReplyWait)
		}
		slowClosed = time.Since(start)
	})

	// A flood of requests without a valid key: each refused, counted, and
	// logged at most 10 at once and 1 a second after.
	const flood = 200
	var logged401 int
	t.Run("a flood of bad keys is logged sampled", func(t *testing.T) {
		for i := range flood {
			r, err := a.do(ctx, "/api/notifications", jsonType, fmt.Sprintf("hk_guess%d", i), mustJSON(good("flood")))
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != http.StatusUnauthorized {
				t.Fatalf("request %d: %s", i, r)
			}
		}
		// Every 401 of the scenario so far is in the log or left out of it:
		// at least the burst of 10 shows (poll: the log is a file), never
		// more than 10 plus one a second since the stack started.
		waitFor(t, 10*time.Second, "the sampled 401 lines", func() (bool, string) {
			logged401 = countLogLines(t, s.LogPath(devstack.API), `"status":401`)
			return logged401 >= 10, fmt.Sprintf("%d lines", logged401)
		})
		most := 10 + int(time.Since(stackStart).Seconds()) + 1
		if logged401 > most {
			t.Errorf("%d request lines with status 401 in %s; the sampling allows at most %d", logged401, time.Since(stackStart).Round(time.Second), most)
		}
	})

	// More connections than HERALD_MAX_CONNECTIONS: every one is served,
	// because idle keep-alive connections are closed to make room, and at
	// most the cap are open at once.
	const extra = 4
	var shed int
	t.Run("more connections than the cap", func(t *testing.T) {
		a.http.CloseIdleConnections()
		conns := make([]*apitest.Conn, maxConns+extra)
		for i := range conns {
			conns[i] = dialAPI(t, s)
			conns[i].Send("GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n")
			if resp := conns[i].Reply(); resp.StatusCode != http.StatusOK {
				t.Fatalf("connection %d: status %d", i, resp.StatusCode)
			}
		}
		// Held open by this side, the server must have closed at least the
		// extra ones.
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, c := range conns {
			wg.Go(func() {
				if c.ClosedByServer(time.Second) {
					mu.Lock()
					shed++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if shed < extra {
			t.Errorf("%d of %d connections closed by the server; over a cap of %d at least %d must be", shed, len(conns), maxConns, extra)
		}
		n := good("after the cap")
		r, err := a.post(ctx, n)
		if err != nil || r.Status != http.StatusAccepted {
			t.Fatalf("post after the cap: %v %v", r, err)
		}
		var acc accepted
		json.Unmarshal(r.Body, &acc)
		l.accept(n.Subject, acc.ID)
		queued++
		depthIs(t, queued, "the post after the cap")
	})

	// The sender runs again: exactly the accepted notifications arrive.
	if err := s.Restart(ctx, devstack.Sender); err != nil {
		t.Fatal(err)
	}
	l.waitAllDelivered(t, s, 30*time.Second)
	waitDrained(t, s, 10*time.Second)
	l.report(t, s, "bad input", start, 0, fmt.Sprintf("%d bad requests refused, nothing of them queued or sent, every answer in the OpenAPI document; "+
		"slow body without a key answered in %s, closed in %s; %d requests without a valid key logged as %d lines; %d connections over a cap of %d served, %d closed by the server",
		len(cases)-1, slowAnswer.Round(10*time.Microsecond), slowClosed.Round(time.Millisecond), flood+3, logged401, maxConns+extra, maxConns, shed))
	if st := s.Gate().Stats(); st.Accepted != int64(l.len()) {
		t.Errorf("SES took %d mails, want exactly the %d accepted", st.Accepted, l.len())
	}
}

// problemNaming checks an RFC 9457 problem body that names each field.
func problemNaming(fields ...string) func(t *testing.T, r reply) {
	return func(t *testing.T, r reply) {
		t.Helper()
		var p map[string]any
		if err := json.Unmarshal(r.Body, &p); err != nil {
			t.Fatalf("problem body %s: %v", r.Body, err)
		}
		if p["status"] != float64(http.StatusBadRequest) || p["title"] == nil {
			t.Errorf("problem %s lacks status 400 or a title", r.Body)
		}
		for _, f := range fields {
			if !strings.Contains(string(r.Body), `"`+f) {
				t.Errorf("problem %s does not name field %q", r.Body, f)
			}
		}
	}
}

// checkAnswer checks one reply against the API's OpenAPI document.
func checkAnswer(t *testing.T, c *apitest.Contract, path, contentType, key string, body []byte, r reply) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://herald"+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if err := c.CheckAnswer(context.Background(), req, r.Status, r.Header, r.Body); err != nil {
		t.Errorf("answer not in the API's OpenAPI document: %v", err)
	}
}

// countLogLines counts the request lines of a component's log holding s.
func countLogLines(t *testing.T, path, s string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range bytes.Split(data, []byte("\n")) {
		if bytes.Contains(line, []byte(`"msg":"request"`)) && bytes.Contains(line, []byte(s)) {
			n++
		}
	}
	return n
}

// dialAPI opens a raw connection to the API.
func dialAPI(t *testing.T, s *devstack.Stack) *apitest.Conn {
	t.Helper()
	u, err := url.Parse(s.APIURL())
	if err != nil {
		t.Fatal(err)
	}
	return apitest.Dial(t, u.Host)
}
