package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"herald/services/devstack"
)

// opsRun runs the built herald-ops binary on the stack, with only the
// environment the stack gives it, and returns what it printed.
func opsRun(t *testing.T, s *devstack.Stack, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, devstack.BinHeraldOps), args...)
	cmd.Env = s.OpsVariables()
	out, err := cmd.CombinedOutput()
	t.Logf("herald-ops %s:\n%s", strings.Join(args, " "), out)
	return string(out), err
}

// redriven makes the doomed notifications deliverable: their cause is fixed
// and they are back on the queue, so each must now be delivered once.
func (l *ledger) redriven() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.doomed)
	for subject, id := range l.doomed {
		l.ids[subject] = id
	}
	l.doomed = map[string]string{}
	return n
}

// Mail from a sender SES has not verified is dead-lettered; herald-ops dlq
// list shows every one, masked; once the domain is verified, herald-ops dlq
// redrive moves them back through the SQS emulator's message move task and
// each is delivered exactly once, the DLQ empty, the good mail sent with
// them untouched.
func TestRedriveDeliversOnce(t *testing.T) {
	s := startStack(t, devstack.Config{APIVariables: fastPosting})
	a := newAPI(s)
	ctx := context.Background()
	l := newLedger("redrive")
	start := time.Now()
	const doomed, good = 60, 20

	// Given: notifications from example.net, which the API allows and SES
	// has not verified, among good ones.
	for batch := range doomed / 20 {
		var ns []notification
		for i := range 20 {
			n := batch*20 + i
			ns = append(ns, notification{From: "Alerts <alerts@example.net>", To: []string{fmt.Sprintf("victim%d@example.org", n)}, Subject: l.subject(n), Text: "held back"})
		}
		r, err := a.postBatch(ctx, ns)
		var br batchReply
		if err != nil || r.Status != http.StatusAccepted || json.Unmarshal(r.Body, &br) != nil || len(br.Results) != len(ns) {
			t.Fatalf("batch of doomed notifications: %v %s", err, r)
		}
		for i, res := range br.Results {
			l.acceptDoomed(ns[i].Subject, res.ID)
		}
	}
	var goods []notification
	for i := range good {
		goods = append(goods, notification{To: []string{fmt.Sprintf("reader%d@example.org", i)}, Subject: l.subject(doomed + i), Text: "on time"})
	}
	if err := l.postAll(a, 4, goods); err != nil {
		t.Fatal(err)
	}
	l.waitAllDelivered(t, s, 60*time.Second)
	waitDrained(t, s, 20*time.Second)

	// When: the on-call engineer looks at the DLQ.
	out, err := opsRun(t, s, time.Minute, "dlq", "list", "-json", "-max", "1000")
	if err != nil {
		t.Fatalf("dlq list: %v", err)
	}
	var listing struct {
		Visible  int
		Messages []struct {
			Notification string `json:"notificationId"`
			Class        string
			Reason       string
			Attempts     int
			FirstAttempt time.Time
			From         string
			To           []string
		}
	}
	if err := json.Unmarshal([]byte(out), &listing); err != nil {
		t.Fatalf("dlq list -json: %v", err)
	}
	// Then: every dead letter, with class, reason, attempts and when, and
	// no address in full.
	if len(listing.Messages) != doomed || listing.Visible != doomed {
		t.Fatalf("dlq list shows %d of %d visible, want all %d doomed", len(listing.Messages), listing.Visible, doomed)
	}
	for _, m := range listing.Messages {
		if m.Class != "permanent" || !strings.Contains(m.Reason, "not verified") || m.Attempts != 1 ||
			time.Since(m.FirstAttempt) > 5*time.Minute || m.From != "a***@example.net" || len(m.To) != 1 || m.To[0] != "v***@example.org" {
			t.Errorf("listed dead letter %+v", m)
		}
	}
	if strings.Contains(out, "alerts@") || strings.Contains(out, "victim") {
		t.Error("dlq list shows an address in full")
	}
	// The peek left them all there.
	if d, err := s.QueueDepth(ctx, s.DLQURL()); err != nil || d.Visible != doomed {
		t.Fatalf("DLQ after the listing: %+v %v", d, err)
	}

	// When: the cause is fixed (the domain verified at SES) and the DLQ
	// redriven with herald-ops.
	if err := s.Gate().SetVerified(append(s.Config().Verified, "example.net")); err != nil {
		t.Fatal(err)
	}
	if out, err := opsRun(t, s, time.Minute, "dlq", "redrive", "-dry-run"); err != nil || !strings.Contains(out, fmt.Sprintf("would move the %d visible messages", doomed)) {
		t.Fatalf("dry run: %v", err)
	}
	if d, _ := s.QueueDepth(ctx, s.DLQURL()); d.Visible != doomed {
		t.Fatalf("the dry run moved messages: DLQ %+v", d)
	}
	redriveStart := time.Now()
	out, err = opsRun(t, s, 2*time.Minute, "dlq", "redrive", "-rate", "30", "-every", "200ms")
	redrive := time.Since(redriveStart)
	if err != nil || !strings.Contains(out, fmt.Sprintf("COMPLETED: %d of %d moved (100%%)", doomed, doomed)) {
		t.Fatalf("dlq redrive: %v", err)
	}

	// Then: each redriven notification delivered once, the DLQ empty.
	l.redriven()
	l.waitAllDelivered(t, s, 60*time.Second)
	waitDrained(t, s, 20*time.Second)
	if d, err := s.QueueDepth(ctx, s.DLQURL()); err != nil || d.Total() != 0 {
		t.Errorf("DLQ after the redrive: %+v %v, want empty", d, err)
	}
	l.report(t, s, "redrive", start, 0, fmt.Sprintf("redriven %d in %s at -rate 30", doomed, redrive.Round(time.Millisecond)))
	// SES saw each doomed notification rejected once, then accepted once.
	if st := s.Gate().Stats(); st.Rejected != doomed || st.Accepted != doomed+good {
		t.Errorf("gate stats %+v, want %d rejected and %d accepted", st, doomed, doomed+good)
	}
	if out, err := opsRun(t, s, time.Minute, "dlq", "status"); err != nil || !strings.Contains(out, "0 visible, 0 in flight") || !strings.Contains(out, "COMPLETED") {
		t.Errorf("dlq status after the redrive: %v", err)
	}
}

// printedKey is the key herald-ops printed.
var printedKey = regexp.MustCompile(`(?m)^    (hk_[A-Za-z0-9_-]{43})$`)

// herald-ops keys add, rotate and revoke change the API-key secret in the
// Secrets Manager emulator, and each returns once the running API answers
// /readyz with the new version; from then on the API takes exactly the keys
// the secret holds, and the development key (from the environment) all
// along.
func TestKeysReachTheRunningAPI(t *testing.T) {
	s := startStack(t, devstack.Config{})
	a := newAPI(s)
	ctx := context.Background()
	l := newLedger("keys")
	post := func(key, subject string) int {
		r, err := a.do(ctx, "/api/notifications", "application/json", key, mustJSON(notification{To: []string{"keys@example.org"}, Subject: subject, Text: "k"}))
		if err != nil {
			t.Fatal(err)
		}
		if r.Status == http.StatusAccepted {
			var acc accepted
			json.Unmarshal(r.Body, &acc)
			l.accept(subject, acc.ID)
		}
		return r.Status
	}
	start := time.Now()
	n := 0
	step := func(args ...string) (key string, took time.Duration) {
		t.Helper()
		begin := time.Now()
		out, err := opsRun(t, s, 2*time.Minute, append(args, "-every", "200ms", "-confirm", "3", "-timeout", "90s")...)
		took = time.Since(begin)
		if err != nil || !strings.Contains(out, "the change is in force") {
			t.Fatalf("herald-ops %v: %v", args, err)
		}
		if m := printedKey.FindStringSubmatch(out); m != nil {
			key = m[1]
		}
		return key, took
	}
	subject := func() string { n++; return l.subject(n) }

	first, addTook := step("keys", "add", "team-e2e")
	if first == "" {
		t.Fatal("keys add printed no key")
	}
	if got := post(first, subject()); got != http.StatusAccepted {
		t.Fatalf("the added key: %d, want 202", got)
	}
	second, rotateTook := step("keys", "rotate", "team-e2e")
	if second == "" || second == first {
		t.Fatalf("keys rotate printed %q", second)
	}
	if got, got2 := post(first, subject()), post(second, subject()); got != http.StatusUnauthorized || got2 != http.StatusAccepted {
		t.Fatalf("after rotate: old key %d, new key %d; want 401, 202", got, got2)
	}
	_, revokeTook := step("keys", "revoke", "team-e2e")
	if got := post(second, subject()); got != http.StatusUnauthorized {
		t.Fatalf("the revoked key: %d, want 401", got)
	}
	if got := post(s.APIKey(), subject()); got != http.StatusAccepted {
		t.Fatalf("the dev key after the changes: %d, want 202", got)
	}
	l.waitAllDelivered(t, s, 30*time.Second)
	l.report(t, s, "keys", start, 0, fmt.Sprintf("picked up by the API after add %s, rotate %s, revoke %s (refresh %s)",
		addTook.Round(100*time.Millisecond), rotateTook.Round(100*time.Millisecond), revokeTook.Round(100*time.Millisecond), s.Config().KeysRefresh))
}
