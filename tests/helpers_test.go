// Package tests holds Herald's local end-to-end suite: the real services
// against the real emulators (goaws for SQS, aws-ses-v2-local for SES v2
// behind the SES gate), each a process started by services/devstack on
// loopback and free ports, the way `make dev` starts them.
//
// One test per scenario, each printing one FIGURES line (posted, accepted,
// delivered, duplicates, lost, dead-lettered, elapsed) so a regression shows
// in the CI log:
//
//	TestDeliveryExactlyOnce         delivery_test.go
//	TestPermanentFailureDeadLettered deadletter_test.go
//	TestSenderKilled, TestSenderSIGTERMDrains, TestSESOutage, TestSQSOutage
//	                                faults_test.go
//	TestSESFaultsDuringSteadyFlow, TestSendersShareTheAccountQuota,
//	TestRetryWindowRunsOut, TestCrashingMessageIsRedriven
//	                                retry_test.go
//	TestSendersKilledEvery10s, TestStoreOutageSenderPauses
//	                                dedup_test.go (the state store)
//	TestFeedbackStatuses, TestFeedbackEventsTwiceAndReordered
//	                                feedback_test.go (SES feedback)
//	TestBadInputQueuesNothing       badinput_test.go
//	TestRedriveDeliversOnce, TestKeysReachTheRunningAPI
//	                                ops_test.go (the built herald-ops)
//	TestIdempotencyKeySameRequestTwice, TestIdempotencyKeyReusedWithAnotherBody,
//	TestAPIKilledClientsRetryWithKeys, TestStoreOutage
//	                                idempotency_test.go (the state store)
//	TestRateLimitHoldsAcrossTwoAPIs ratelimit_test.go (two APIs, one store)
//
// The deployed-stack suite lives in tests/aws (README.md).
package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gruntwork-io/terratest/modules/logger"
	"github.com/gruntwork-io/terratest/modules/random"
	"github.com/gruntwork-io/terratest/modules/retry"

	"herald/services/devstack"
)

// binDir holds the binaries, built once for the package.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	// terratest's retry logs two lines per try; at a 100 ms poll that would
	// bury the figures. waitFor reports what it last saw instead.
	logger.Default = logger.Discard
	root, err := devstack.FindRoot(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "herald-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := devstack.Build(ctx, root, dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	binDir = dir
	return m.Run()
}

// startStack runs the whole pipeline for one test and stops it when the test
// ends, showing the components' last log lines if the test failed.
func startStack(t testing.TB, cfg devstack.Config) *devstack.Stack {
	t.Helper()
	cfg.BinDir = binDir
	cfg.LogDir = t.TempDir()
	if d := os.Getenv("HERALD_E2E_LOG_DIR"); d != "" {
		// Keep the components' logs after the run, a folder per test.
		cfg.LogDir = filepath.Join(d, strings.ReplaceAll(t.Name(), "/", "_"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	s, err := devstack.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range s.Components() {
				b, _ := os.ReadFile(s.LogPath(c))
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				if len(lines) > 25 {
					lines = lines[len(lines)-25:]
				}
				t.Logf("last lines of the %s log:\n%s", c, strings.Join(lines, "\n"))
			}
		}
		// The scenarios' clients (http.DefaultTransport) may hold a
		// connection they dialled and never used (net/http's dial race);
		// the API's drain waits for such a connection up to 5 s, its whole
		// shutdown timeout, and then exits 1. Close them first.
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		if err := s.Close(); err != nil {
			t.Errorf("stop the pipeline: %v", err)
		}
	})
	t.Logf("pipeline up in %s", time.Since(start).Round(time.Millisecond))
	return s
}

// fastPosting lifts the API's per-key rate limit, for scenarios that post
// hundreds of notifications at once.
var fastPosting = map[string]string{"HERALD_RATE_LIMIT": "100000", "HERALD_RATE_BURST": "100000"}

// Dead-letter message attributes, from the contract in services/README.md.
const (
	attrFailureClass    = "herald.failure.class"
	attrFailureReason   = "herald.failure.reason"
	attrSourceMessageID = "herald.source.messageId"
)

// bareAddress is the address part of "Name <addr>", lower-cased.
func bareAddress(s string) string {
	if a, err := mail.ParseAddress(s); err == nil {
		return strings.ToLower(a.Address)
	}
	return strings.ToLower(strings.TrimSpace(s))
}

// bareSorted is a list of addresses reduced to bare addresses, sorted.
func bareSorted(list []string) []string {
	out := make([]string, len(list))
	for i, a := range list {
		out[i] = bareAddress(a)
	}
	sort.Strings(out)
	return out
}

// runID makes subjects unique to one test run (terratest's unique id).
func runID() string { return random.UniqueId() }

// reply is what the API answered.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Body)) }

// api talks to the notification API over real HTTP.
type api struct {
	base, key string
	http      *http.Client
}

func newAPI(s *devstack.Stack) *api {
	return &api{base: s.APIURL(), key: s.APIKey(), http: &http.Client{Timeout: 30 * time.Second}}
}

// do sends a POST; contentType "" leaves the header out, key "" sends no
// Authorization.
func (a *api) do(ctx context.Context, path, contentType, key string, body []byte) (reply, error) {
	hdr := map[string]string{}
	if contentType != "" {
		hdr["Content-Type"] = contentType
	}
	if key != "" {
		hdr["Authorization"] = "Bearer " + key
	}
	return a.request(ctx, http.MethodPost, path, hdr, body)
}

// request sends a request with exactly the headers given.
func (a *api) request(ctx context.Context, method, path string, hdr map[string]string, body []byte) (reply, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, bytes.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: b}, err
}

// notification is the API's request body.
type notification struct {
	To           []string          `json:"to,omitempty"`
	Cc           []string          `json:"cc,omitempty"`
	Bcc          []string          `json:"bcc,omitempty"`
	From         string            `json:"from,omitempty"`
	ReplyTo      string            `json:"replyTo,omitempty"`
	Subject      string            `json:"subject"`
	Text         string            `json:"text,omitempty"`
	HTML         string            `json:"html,omitempty"`
	DelaySeconds int               `json:"delaySeconds,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// post sends one notification with the dev key.
func (a *api) post(ctx context.Context, n notification) (reply, error) {
	return a.do(ctx, "/api/notifications", "application/json", a.key, mustJSON(n))
}

// postBatch sends notifications to the batch endpoint with the dev key.
func (a *api) postBatch(ctx context.Context, ns []notification) (reply, error) {
	return a.do(ctx, "/api/notifications/batch", "application/json", a.key, mustJSON(map[string]any{"notifications": ns}))
}

// batchReply is the batch endpoint's answer: a result per notification.
type batchReply struct {
	Status   int `json:"status"`
	Accepted int `json:"accepted"`
	Rejected int `json:"rejected"`
	Results  []struct {
		Index  int    `json:"index"`
		Status int    `json:"status"`
		ID     string `json:"id"`
	} `json:"results"`
}

// accepted is the 202 body.
type accepted struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// pollEvery is how often waitFor looks again.
const pollEvery = 100 * time.Millisecond

// waitFor polls cond with terratest's retry, pollEvery apart, for about
// timeout, and fails the test with what cond last saw if it never held.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	if ok, last := poll(t, timeout, what, cond); !ok {
		t.Fatalf("%s: not within %s; last seen: %s", what, timeout, last)
	}
}

// poll is waitFor without the failure: it reports whether cond held in
// time, and what cond last saw.
func poll(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) (bool, string) {
	var last string
	start := time.Now()
	_, err := retry.DoWithRetryE(t, what, int(timeout/pollEvery), pollEvery, func() (string, error) {
		ok, saw := cond()
		last = saw
		if ok {
			return saw, nil
		}
		if time.Since(start) > timeout {
			// Slow tries (a long read) must not stretch the deadline.
			return "", retry.FatalError{Underlying: errors.New("deadline passed")}
		}
		return "", errors.New(saw)
	})
	return err == nil, last
}

// waitDrained waits until the queue holds nothing, visible or in flight.
func waitDrained(t testing.TB, s *devstack.Stack, timeout time.Duration) {
	t.Helper()
	ctx := context.Background()
	waitFor(t, timeout, "queue drained (visible + in flight = 0)", func() (bool, string) {
		d, err := s.QueueDepth(ctx, s.QueueURL())
		return err == nil && d.Total() == 0, fmt.Sprintf("%+v %v", d, err)
	})
}

// delivered counts the gate's accepted sends per subject that has prefix.
// The gate records each send SES accepted, in the test process, so its
// record survives a restart of the SES emulator (whose store is in memory).
func delivered(s *devstack.Stack, prefix string) (perSubject map[string]int, total int) {
	perSubject = map[string]int{}
	for _, send := range s.Gate().Sends() {
		if strings.HasPrefix(send.Subject, prefix) {
			perSubject[send.Subject]++
			total++
		}
	}
	return perSubject, total
}

// ledger is what the API accepted in one scenario: subject -> envelope id.
// Every subject starts with the scenario's unique prefix, so deliveries and
// dead letters can be told apart from other scenarios' and matched one to
// one. Doomed notifications are accepted but must end in the dead-letter
// queue, never at SES.
type ledger struct {
	prefix string
	mu     sync.Mutex
	posted int // notifications posted, whatever the answer
	ids    map[string]string
	doomed map[string]string
}

// post records one notification posted, before its answer is known.
func (l *ledger) post() {
	l.mu.Lock()
	l.posted++
	l.mu.Unlock()
}

func newLedger(name string) *ledger {
	return &ledger{prefix: name + " " + runID() + " #", ids: map[string]string{}, doomed: map[string]string{}}
}

// subject is the i-th subject of the scenario (not ASCII only, as mail
// subjects are).
func (l *ledger) subject(i int) string { return fmt.Sprintf("%s%d ✉", l.prefix, i) }

func (l *ledger) accept(subject, id string) {
	l.mu.Lock()
	l.ids[subject] = id
	l.mu.Unlock()
}

// acceptDoomed records an accepted notification that must be dead-lettered.
func (l *ledger) acceptDoomed(subject, id string) {
	l.mu.Lock()
	l.doomed[subject] = id
	l.mu.Unlock()
}

func (l *ledger) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ids)
}

// postAll posts ns one by one from clients concurrent clients and records
// each 202 {id, status: queued}; it returns an error naming the first other
// answer.
func (l *ledger) postAll(a *api, clients int, ns []notification) error {
	ctx := context.Background()
	work := make(chan notification)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for range clients {
		wg.Go(func() {
			for n := range work {
				l.post()
				r, err := a.post(ctx, n)
				var acc accepted
				if err == nil && r.Status == http.StatusAccepted && json.Unmarshal(r.Body, &acc) == nil && acc.ID != "" && acc.Status == "queued" {
					l.accept(n.Subject, acc.ID)
					continue
				}
				mu.Lock()
				failures = append(failures, fmt.Sprintf("%q: %v %s", n.Subject, err, r))
				mu.Unlock()
			}
		})
	}
	for _, n := range ns {
		work <- n
	}
	close(work)
	wg.Wait()
	if len(failures) > 0 {
		return fmt.Errorf("%d of %d posts not accepted with 202 {id, status: queued}; first: %s", len(failures), len(ns), failures[0])
	}
	return nil
}

// tally compares what SES accepted (the gate's records) and what the
// dead-letter queue holds with the ledger.
type tally struct {
	posted     int // notifications posted (scenarios that post otherwise count them as accepted)
	accepted   int // notifications the API answered 202 for
	delivered  int // distinct deliverable notifications SES took
	sends      int // SES sends of this scenario's notifications
	duplicates int // sends beyond the first per notification
	lost       int // deliverable notifications SES never took
	unexpected int // sends of notifications the API never accepted, or doomed ones
	dead       int // this scenario's messages in the dead-letter queue
	wrongDead  int // dead letters that are not doomed ones, or doomed ones twice
	dupList    []string
	lostList   []string
	deadList   []devstack.DeadLetter
}

// count reads the gate's records, and the dead-letter queue when dlq.
func (l *ledger) count(s *devstack.Stack, dlq bool) (tally, error) {
	per, sends := delivered(s, l.prefix)
	var dead []devstack.DeadLetter
	if dlq {
		var err error
		if dead, err = s.PeekDeadLetters(context.Background()); err != nil {
			return tally{}, err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c := tally{posted: max(l.posted, len(l.ids)+len(l.doomed)), accepted: len(l.ids) + len(l.doomed), sends: sends}
	for subject := range l.ids {
		switch n := per[subject]; {
		case n == 0:
			c.lost++
			c.lostList = append(c.lostList, subject)
		default:
			c.delivered++
			if n > 1 {
				c.duplicates += n - 1
				c.dupList = append(c.dupList, fmt.Sprintf("%q x%d", subject, n))
			}
		}
	}
	for subject, n := range per {
		if _, ok := l.ids[subject]; !ok {
			c.unexpected += n
		}
	}
	seen := map[string]bool{}
	for _, d := range dead {
		var env struct{ ID, Subject string }
		if json.Unmarshal([]byte(d.Body), &env) != nil || !strings.HasPrefix(env.Subject, l.prefix) {
			continue
		}
		c.dead++
		c.deadList = append(c.deadList, d)
		if id, ok := l.doomed[env.Subject]; !ok || id != env.ID || seen[env.Subject] {
			c.wrongDead++
		}
		seen[env.Subject] = true
	}
	sort.Strings(c.dupList)
	sort.Strings(c.lostList)
	return c, nil
}

// waitAllDelivered waits until SES took every deliverable notification and
// the dead-letter queue holds every doomed one.
func (l *ledger) waitAllDelivered(t testing.TB, s *devstack.Stack, timeout time.Duration) {
	t.Helper()
	// Not fatal: report then names what is missing.
	ok, last := poll(t, timeout, "every accepted notification delivered or dead-lettered", func() (bool, string) {
		l.mu.Lock()
		doomed := len(l.doomed)
		l.mu.Unlock()
		c, err := l.count(s, doomed > 0)
		if err != nil {
			return false, err.Error()
		}
		return c.lost == 0 && c.dead >= doomed, fmt.Sprintf("%d of %d delivered, %d of %d dead-lettered", c.delivered, c.accepted-doomed, c.dead, doomed)
	})
	if !ok {
		t.Errorf("not every accepted notification delivered or dead-lettered within %s; last seen: %s", timeout, last)
	}
}

// report prints the scenario's FIGURES line, then fails the test loudly for
// every lost notification, every send the API never accepted, every dead
// letter that should not be there (or doomed one that is missing), and for
// duplicates above maxDuplicates. It returns the tally it judged.
func (l *ledger) report(t testing.TB, s *devstack.Stack, scenario string, start time.Time, maxDuplicates int, extra string) tally {
	t.Helper()
	c, err := l.count(s, true)
	if err != nil {
		t.Fatal(err)
	}
	if extra != "" {
		extra = "; " + extra
	}
	t.Logf("FIGURES %s: posted %d, accepted %d, delivered %d, duplicates %d, lost %d, dead-lettered %d, elapsed %s%s",
		scenario, c.posted, c.accepted, c.delivered, c.duplicates, c.lost, c.dead, time.Since(start).Round(time.Millisecond), extra)
	if c.lost > 0 {
		t.Errorf("LOST %d of %d accepted notifications: %s", c.lost, c.accepted, strings.Join(first(c.lostList, 10), ", "))
	}
	if c.unexpected > 0 {
		t.Errorf("%d sends of notifications that must never be sent", c.unexpected)
	}
	l.mu.Lock()
	doomed := len(l.doomed)
	l.mu.Unlock()
	if c.wrongDead > 0 || c.dead != doomed {
		t.Errorf("DEAD-LETTERED %d of this scenario's notifications (%d of them wrongly), want exactly the %d doomed ones", c.dead, c.wrongDead, doomed)
	}
	if c.duplicates > maxDuplicates {
		t.Errorf("DUPLICATED: %d extra sends, at most %d allowed here: %s", c.duplicates, maxDuplicates, strings.Join(first(c.dupList, 10), ", "))
	} else if c.duplicates > 0 {
		t.Logf("duplicates (at-least-once, within the bound of %d): %s", maxDuplicates, strings.Join(first(c.dupList, 10), ", "))
	}
	return c
}

func first(list []string, n int) []string {
	if len(list) > n {
		return append(list[:n:n], fmt.Sprintf("... %d more", len(list)-n))
	}
	return list
}

// senderMetrics sums the email sender's EMF counters in its log file (all
// of its runs): "Sent", "DeadLettered", "Failed", and "Failed.<class>" for
// the breakdown by Class; and "<name>.sumMs" for the sum of a duration's
// samples ("PausedTime.sumMs"). It checks each document is well formed EMF on the
// way: namespace Herald, the Class dimension declared where it is set.
func senderMetrics(t testing.TB, s *devstack.Stack) map[string]float64 {
	t.Helper()
	return senderMetricsOf(t, s, devstack.Sender)
}

// senderMetricsOf is senderMetrics of one sender c of the stack, or the
// notification-api's metrics when c is one of its APIs.
func senderMetricsOf(t testing.TB, s *devstack.Stack, c devstack.Component) map[string]float64 {
	t.Helper()
	wantService := "email-sender"
	if devstack.IsAPI(c) {
		wantService = "notification-api"
	}
	f, err := os.Open(s.LogPath(c))
	if err != nil {
		t.Fatalf("sender log: %v", err)
	}
	defer f.Close()
	totals := map[string]float64{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(`"_aws"`)) {
			continue
		}
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(line, &doc); err != nil {
			t.Fatalf("metric line is not JSON: %v: %s", err, line)
		}
		var meta struct {
			CloudWatchMetrics []struct {
				Namespace  string
				Dimensions [][]string
				Metrics    []struct{ Name, Unit string }
			}
		}
		var service, class string
		json.Unmarshal(doc["Service"], &service)
		json.Unmarshal(doc["Class"], &class)
		if err := json.Unmarshal(doc["_aws"], &meta); err != nil || len(meta.CloudWatchMetrics) != 1 {
			t.Fatalf("metric line without one CloudWatchMetrics directive: %s", line)
		}
		cw := meta.CloudWatchMetrics[0]
		if cw.Namespace != "Herald" || service != wantService {
			t.Fatalf("metric line of namespace %q, service %q: %s", cw.Namespace, service, line)
		}
		if class != "" && (len(cw.Dimensions) != 1 || !slices.Contains(cw.Dimensions[0], "Class")) {
			t.Fatalf("metric line sets Class but does not declare it a dimension: %s", line)
		}
		// Another breakdown (EventType, BounceType, Reason): by its value,
		// as Failed by Class (the line without it holds the total).
		if len(cw.Dimensions) == 1 && class == "" {
			for _, d := range cw.Dimensions[0] {
				if d != "Environment" && d != "Service" {
					json.Unmarshal(doc[d], &class)
				}
			}
		}
		for _, m := range cw.Metrics {
			if m.Unit == "Milliseconds" {
				// Samples: their sum, as CloudWatch's Sum statistic gives.
				var vals []float64
				if err := json.Unmarshal(doc[m.Name], &vals); err != nil {
					t.Fatalf("metric %s has no values: %s", m.Name, line)
				}
				for _, v := range vals {
					totals[m.Name+".sumMs"] += v
				}
				continue
			}
			if m.Unit != "Count" {
				continue
			}
			var v float64
			if err := json.Unmarshal(doc[m.Name], &v); err != nil {
				t.Fatalf("metric %s has no number: %s", m.Name, line)
			}
			if class != "" {
				totals[m.Name+"."+class] += v
			} else {
				totals[m.Name] += v
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read the sender log: %v", err)
	}
	return totals
}
