package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"herald/services/devstack"
)

// Bad input through the real HTTP server, against the real queue: each gets
// its documented status (services/notification-api/doc.go) as a problem
// document, and nothing is queued. The sender is stopped while the requests
// are made, so the queue's depth counts exactly what the API queued: after
// every request it must equal the number of 202s so far. Then the sender
// runs again and delivers exactly the accepted notifications.
func TestBadInputQueuesNothing(t *testing.T) {
	s := startStack(t, devstack.Config{APIEnv: map[string]string{
		// A small burst, so 429 comes quickly once the cases below ran.
		"HERALD_RATE_LIMIT": "1",
		"HERALD_RATE_BURST": "40",
	}})
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

	cases := []struct {
		name        string
		path        string // "" is the single endpoint
		contentType string
		key         string
		body        []byte
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
		{name: "unknown field", body: []byte(`{"to":["alice@example.org"],"subject":"s","text":"x","priority":"high"}`), want: http.StatusBadRequest},
		{name: "malformed JSON", body: []byte(`{"to":`), want: http.StatusBadRequest},
		{name: "no API key", key: "-", body: mustJSON(good("no key")), want: http.StatusUnauthorized},
		{name: "wrong API key", key: a.key + "x", body: mustJSON(good("wrong key")), want: http.StatusUnauthorized},
		{name: "body over the size limit", body: mustJSON(notification{To: []string{"alice@example.org"}, Subject: l.prefix + "big", Text: strings.Repeat("x", 1<<20)}),
			want: http.StatusRequestEntityTooLarge},
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
			r, err := a.do(ctx, path, contentType, key, c.body)
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

	// The sender runs again: exactly the accepted notifications arrive.
	if err := s.Restart(ctx, devstack.Sender); err != nil {
		t.Fatal(err)
	}
	l.waitAllDelivered(t, s, 30*time.Second)
	waitDrained(t, s, 10*time.Second)
	l.report(t, s, "bad input", start, 0, fmt.Sprintf("%d bad requests refused, nothing of them queued or sent", len(cases)-1))
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
