package tests

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"herald/services/devstack"
)

// Every status code the API answers, through the real HTTP server against
// the real queue: 202, 400, 401, 413, 415, 429, 503.
func TestAPIStatusCodes(t *testing.T) {
	s := startStack(t, devstack.Config{APIEnv: map[string]string{
		// A small burst, so 429 comes quickly once the cases above it ran.
		"HERALD_RATE_LIMIT": "1",
		"HERALD_RATE_BURST": "20",
	}})
	a := newAPI(s)
	ctx := context.Background()
	good := notification{To: []string{"alice@example.org"}, Subject: "status " + runID(), Text: "hello"}
	const jsonType = "application/json"

	cases := []struct {
		name        string
		contentType string
		key         string
		body        []byte
		want        int
		check       func(t *testing.T, r reply)
	}{
		{name: "accepted", contentType: jsonType, key: a.key, body: mustJSON(good), want: http.StatusAccepted,
			check: func(t *testing.T, r reply) {
				var acc accepted
				if json.Unmarshal(r.Body, &acc) != nil || acc.ID == "" || acc.Status != "queued" {
					t.Errorf("202 body %s, want {id, status: queued}", r.Body)
				}
			}},
		{name: "missing subject and body", contentType: jsonType, key: a.key,
			body: mustJSON(notification{To: []string{"alice@example.org"}}), want: http.StatusBadRequest,
			check: problemNaming("subject", "text")},
		{name: "header injection in subject", contentType: jsonType, key: a.key,
			body: mustJSON(notification{To: []string{"alice@example.org"}, Subject: "hi\r\nBcc: victim@example.org", Text: "x"}),
			want: http.StatusBadRequest, check: problemNaming("subject")},
		{name: "bad address", contentType: jsonType, key: a.key,
			body: mustJSON(notification{To: []string{"not an address"}, Subject: "s", Text: "x"}), want: http.StatusBadRequest,
			check: problemNaming("to")},
		{name: "sender not allowed", contentType: jsonType, key: a.key,
			body: mustJSON(notification{From: "ceo@elsewhere.org", To: []string{"alice@example.org"}, Subject: "s", Text: "x"}),
			want: http.StatusBadRequest, check: problemNaming("from")},
		{name: "unknown field", contentType: jsonType, key: a.key,
			body: []byte(`{"to":["alice@example.org"],"subject":"s","text":"x","priority":"high"}`), want: http.StatusBadRequest},
		{name: "malformed JSON", contentType: jsonType, key: a.key, body: []byte(`{"to":`), want: http.StatusBadRequest},
		{name: "no API key", contentType: jsonType, body: mustJSON(good), want: http.StatusUnauthorized},
		{name: "wrong API key", contentType: jsonType, key: a.key + "x", body: mustJSON(good), want: http.StatusUnauthorized},
		{name: "over the size limit", contentType: jsonType, key: a.key,
			body: mustJSON(notification{To: []string{"alice@example.org"}, Subject: "big", Text: strings.Repeat("x", 1<<20)}),
			want: http.StatusRequestEntityTooLarge},
		{name: "not JSON", contentType: "text/plain", key: a.key, body: []byte("hello"), want: http.StatusUnsupportedMediaType},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := a.do(ctx, "/api/notifications", c.contentType, c.key, c.body)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != c.want {
				t.Fatalf("got %s, want %d", r, c.want)
			}
			if c.want != http.StatusAccepted && !strings.Contains(r.Header.Get("Content-Type"), "json") {
				t.Errorf("error reply Content-Type %q, want problem JSON", r.Header.Get("Content-Type"))
			}
			if c.check != nil {
				c.check(t, r)
			}
		})
	}

	t.Run("over the rate", func(t *testing.T) {
		// The burst is 20 per key at 1/s: well before 60 quick posts a 429 comes.
		for i := 0; i < 60; i++ {
			r, err := a.do(ctx, "/api/notifications", jsonType, a.key, mustJSON(good))
			if err != nil {
				t.Fatal(err)
			}
			if r.Status == http.StatusTooManyRequests {
				if r.Header.Get("Retry-After") == "" {
					t.Error("429 without Retry-After")
				}
				t.Logf("429 after %d posts", i+1)
				return
			}
			if r.Status != http.StatusAccepted {
				t.Fatalf("post %d: %s", i, r)
			}
		}
		t.Fatal("no 429 in 60 posts at a burst of 20")
	})

	t.Run("queue unreachable", func(t *testing.T) {
		if err := s.Stop(devstack.SQS); err != nil {
			t.Fatal(err)
		}
		// A fresh key's bucket is not needed: the rate limiter refills at
		// 1/s; wait for one token rather than mistake a 429 for the answer.
		waitFor(t, 30*time.Second, "an answer other than 429", func() (bool, string) {
			r, err := a.do(ctx, "/api/notifications", jsonType, a.key, mustJSON(good))
			if err != nil {
				return false, err.Error()
			}
			if r.Status == http.StatusTooManyRequests {
				return false, r.String()
			}
			if r.Status != http.StatusServiceUnavailable {
				t.Fatalf("with SQS stopped: %s, want 503", r)
			}
			if r.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			return true, ""
		})
	})
}

// problemNaming checks an RFC 9457 problem body that names each field.
func problemNaming(fields ...string) func(t *testing.T, r reply) {
	return func(t *testing.T, r reply) {
		t.Helper()
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
			t.Errorf("Content-Type %q, want application/problem+json", ct)
		}
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
