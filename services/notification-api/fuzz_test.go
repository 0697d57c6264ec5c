package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"

	"herald/services/internal/herald"
)

// FuzzDecode sends arbitrary bodies through the real handler (with a key,
// JSON content type and an SQS that accepts everything) to both POST
// endpoints. Whatever the body: no panic, only documented codes, a reply in
// the documented shape (openapi.json's too), a body accepted whole only
// when openapi.json's schema takes it, and every notification answered as
// queued is on the queue as a valid envelope under the id the client was
// given.
//
//	go test ./services/notification-api -run '^$' -fuzz FuzzDecode -fuzztime 20s
func FuzzDecode(f *testing.F) {
	seeds := []string{
		valid(nil),
		`{"to":["a@example.com"],"cc":["B <b@example.com>"],"bcc":[],"from":"noreply@herald.test","replyTo":"r@example.com",` +
			`"subject":"s","text":"t","html":"<p>h</p>","delaySeconds":900,"metadata":{"k":"v"}}`,
		`{"to":["a@example.com"],"subject":"x\r\nBcc: v@example.com","text":"t"}`,
		`{"to":["\"E\nve\" <a@example.com>"],"subject":"s","text":"t"}`,
		`{"to":["a@example.com"],"subject":"s","text":"t","metadata":{"k\n":"v"}}`,
		`{"to":["a@example.com"],"subject":"s","text":"t","unknown":1}`,
		`{"to":"a@example.com"}`,
		`{"to":["a@example.com"],"subject":"s","text":"t","delaySeconds":1e3}`,
		`{"to":["a@example.com"],"subject":"s","text":"\ufffe\uffff\u2028 \xff"}`,
		`{"to":[null],"subject":null,"text":"t"}`,
		`null`, `[]`, `{}`, ``, `{"to":`, `{} {}`, `"\ud800"`,
		`{"notifications":[` + valid(nil) + `,{"to":[]},"x",null]}`,
		`{"notifications":[]}`,
		`{"notifications":{}}`,
		`{"to":["a@example.com"],"TO":["m@example.com"],"subject":"s","text":"t"}`,
		`{"to":["a@example.com"],"to":["m@example.com"],"subject":"s","text":"t"}`,
		`{"to":["a@example.com"],"Subject":"s","subject":"s","text":"t"}`,
		"{\"to\":[\"a@example.com\"],\"subject\":\"\xc0\xaf\",\"text\":\"t\"}",
		`{"to":["a@example.com"],"subject":"\ud83d\ude00 \udc00","text":"t"}`,
		`{"notifications":[{"to":["a@example.com"],"subject":"s","text":"t","text":"u"}]}`,
		`{"to":["a@example.com"],"cc":null,"from":"","replyTo":null,"subject":"s","text":"","html":"h","delaySeconds":-0,"metadata":null}`,
		`{"to":["\"x@y.z\" <a@example.com>"],"from":"=?utf-8?q?a=40b.c?= <noreply@herald.test>","subject":"s","text":"t"}`,
	}
	for _, s := range seeds {
		f.Add(false, []byte(s))
		f.Add(true, []byte(s))
	}
	cfg := testConfig()
	cfg.BatchLinger = 0
	cfg.MaxMessageBytes = 4096 // reach the size limits with small inputs
	sqs := &fakeSQS{}
	h := newHarness(f, cfg, sqs, deps{})
	f.Fuzz(func(t *testing.T, batch bool, body []byte) {
		sqs.mu.Lock()
		sqs.bodies = nil
		sqs.mu.Unlock()
		path := "/api/notifications"
		allowed := map[int]bool{202: true, 400: true, 413: true, 415: true}
		if batch {
			path += "/batch"
			allowed[207] = true
		}
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.h.ServeHTTP(rec, req)
		checkContract(t, req, body, rec)
		if !allowed[rec.Code] {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}

		queued := map[string]bool{}
		for _, b := range sqs.queued() {
			env, err := herald.DecodeEnvelope([]byte(b))
			if err != nil {
				t.Fatalf("queued a message that is no valid envelope (%v): %s", err, b)
			}
			if len(b) > cfg.MaxMessageBytes {
				t.Fatalf("queued %d bytes, over the %d limit", len(b), cfg.MaxMessageBytes)
			}
			queued[env.ID] = true
		}
		var accepted []string
		switch {
		case rec.Code == 202 && !batch:
			var reply struct{ ID, Status string }
			if err := json.Unmarshal(rec.Body.Bytes(), &reply); err != nil || reply.Status != "queued" {
				t.Fatalf("202 reply %s (%v)", rec.Body, err)
			}
			accepted = []string{reply.ID}
		case batch && (rec.Code == 202 || rec.Code == 207 || strings.Contains(rec.Body.String(), `"results"`)):
			var reply batchReply
			if err := json.Unmarshal(rec.Body.Bytes(), &reply); err != nil || reply.Status != rec.Code {
				t.Fatalf("batch reply %s (%v)", rec.Body, err)
			}
			for i, r := range reply.Results {
				if r.Index != i || (r.Status != 202 && r.Status != 400 && r.Status != 413) {
					t.Fatalf("result %d: %+v", i, r)
				}
				if r.Status == 202 {
					accepted = append(accepted, r.ID)
				}
			}
			if reply.Accepted != len(accepted) || reply.Accepted+reply.Rejected != len(reply.Results) {
				t.Fatalf("counts in %s", rec.Body)
			}
		default:
			var p problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != rec.Code || p.Type == "" {
				t.Fatalf("problem %s (%v)", rec.Body, err)
			}
			if rec.Code == 400 && len(p.Errors) == 0 {
				t.Fatalf("400 without errors: %s", rec.Body)
			}
		}
		// Whatever was accepted came in a body that is I-JSON: UTF-8, no
		// lone surrogate escape, each name once (issue 16).
		if len(accepted) > 0 && !jsontext.Value(body).IsValid() {
			t.Fatalf("accepted %d notifications of a body that is not valid I-JSON: %q", len(accepted), body)
		}
		if len(accepted) != len(queued) {
			t.Fatalf("%d accepted, %d queued", len(accepted), len(queued))
		}
		for _, id := range accepted {
			if !queued[id] {
				t.Fatalf("accepted %s is not on the queue", id)
			}
		}
	})
}
