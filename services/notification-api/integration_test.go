package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"herald/services/devstack/sqslocal"
	"herald/services/internal/herald"
	"herald/services/internal/herald/heraldtest"
)

// TestIntegration runs the real program (run) against the goaws SQS emulator
// in this process, in both enqueue modes: messages it accepts are on the
// queue as envelopes, a stopped queue gets 503 and never 202, and the API
// recovers when the queue is back.
func TestIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the SQS emulator")
	}
	// The SDK's credential chain reads the process environment: give it
	// dummy credentials and nothing from the machine.
	none := filepath.Join(t.TempDir(), "none")
	t.Setenv("AWS_ACCESS_KEY_ID", "local")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "local")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", none)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", none)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	for _, linger := range []string{"2ms", "0"} {
		t.Run("linger="+linger, func(t *testing.T) { integration(t, linger) })
	}
}

func integration(t *testing.T, linger string) {
	emu := startEmulator(t, "127.0.0.1:0")
	sum := hashEntry("it", testKey).Hash
	env := map[string]string{
		"AWS_REGION":              "us-east-1",
		"AWS_ENDPOINT_URL_SQS":    emu.Endpoint,
		"HERALD_QUEUE_URL":        emu.QueueURL("herald"),
		"HERALD_HTTP_ADDR":        "127.0.0.1:0",
		"HERALD_DEFAULT_FROM":     "noreply@herald.test",
		"HERALD_API_KEY_HASHES":   "it:" + hex.EncodeToString(sum[:]),
		"HERALD_BATCH_LINGER":     linger,
		"HERALD_READY_CACHE":      "0",
		"HERALD_METRICS_INTERVAL": "1m",
		"HERALD_SHUTDOWN_TIMEOUT": "5s",
	}
	api := startAPI(t, env)
	sqsc := sqs.New(sqs.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(emu.Endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
	})

	t.Run("single", func(t *testing.T) {
		status, body, _ := api.post(t, "/api/notifications", valid(func(m map[string]any) { m["cc"] = []string{"bob@example.com"} }))
		if status != 202 {
			t.Fatalf("status %d: %s", status, body)
		}
		var reply struct{ ID string }
		json.Unmarshal(body, &reply)
		got := receive(t, sqsc, emu.QueueURL("herald"), 1)
		e := got[reply.ID]
		if e.ID == "" || !slices.Equal(e.To, []string{"alice@example.com"}) || !slices.Equal(e.Cc, []string{"bob@example.com"}) ||
			e.KeyID != "it" || e.From != "noreply@herald.test" || e.Subject != "Your order shipped" {
			t.Errorf("queued %+v for reply %s", got, body)
		}
	})

	t.Run("batch of 25", func(t *testing.T) {
		items := make([]json.RawMessage, 25)
		for i := range items {
			items[i] = json.RawMessage(valid(func(m map[string]any) { m["subject"] = fmt.Sprintf("n%d", i) }))
		}
		status, body, _ := api.post(t, "/api/notifications/batch", jsonBody(t, map[string]any{"notifications": items}))
		var reply batchReply
		if err := json.Unmarshal(body, &reply); err != nil || status != 202 || reply.Accepted != 25 {
			t.Fatalf("status %d: %s", status, body)
		}
		got := receive(t, sqsc, emu.QueueURL("herald"), 25)
		for i, r := range reply.Results {
			if got[r.ID].Subject != fmt.Sprintf("n%d", i) {
				t.Errorf("item %d (%s) queued as %+v", i, r.ID, got[r.ID])
			}
		}
	})

	t.Run("concurrent singles", func(t *testing.T) {
		const n = 40
		ids := make(chan string, n)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				status, body, _ := api.post(t, "/api/notifications", valid(nil))
				var reply struct{ ID string }
				json.Unmarshal(body, &reply)
				if status != 202 || reply.ID == "" {
					t.Errorf("status %d: %s", status, body)
				}
				ids <- reply.ID
			})
		}
		wg.Wait()
		close(ids)
		got := receive(t, sqsc, emu.QueueURL("herald"), n)
		for id := range ids {
			if _, ok := got[id]; !ok {
				t.Errorf("%s answered 202 but not on the queue", id)
			}
		}
	})

	t.Run("health", func(t *testing.T) {
		if status := api.get(t, "/readyz"); status != 200 {
			t.Errorf("readyz %d", status)
		}
		if err := run(context.Background(), []string{"healthcheck"}, getenvOf(map[string]string{"HERALD_HTTP_ADDR": api.addr}), io.Discard); err != nil {
			t.Errorf("healthcheck: %v", err)
		}
	})

	t.Run("queue stopped, then back", func(t *testing.T) {
		addr := strings.TrimPrefix(emu.Endpoint, "http://")
		emu.Close()
		for i := range 3 {
			status, body, hdr := api.post(t, "/api/notifications", valid(nil))
			if status != 503 || hdr.Get("Retry-After") == "" {
				t.Fatalf("attempt %d with the queue stopped: status %d, Retry-After %q: %s\n%s", i, status, hdr.Get("Retry-After"), body, api.out)
			}
		}
		status, body, hdr := api.post(t, "/api/notifications/batch", jsonBody(t, map[string]any{"notifications": []json.RawMessage{json.RawMessage(valid(nil))}}))
		if status != 503 || hdr.Get("Retry-After") == "" {
			t.Fatalf("batch with the queue stopped: status %d: %s", status, body)
		}
		if status := api.get(t, "/readyz"); status != 503 {
			t.Errorf("readyz with the queue stopped: %d", status)
		}

		emu = startEmulator(t, addr)
		var id string
		deadline := time.Now().Add(20 * time.Second)
		for {
			status, body, _ := api.post(t, "/api/notifications", valid(nil))
			if status == 202 {
				var reply struct{ ID string }
				json.Unmarshal(body, &reply)
				id = reply.ID
				break
			}
			if status != 503 || time.Now().After(deadline) {
				t.Fatalf("after restart: status %d: %s", status, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if got := receive(t, sqsc, emu.QueueURL("herald"), 1); got[id].ID != id {
			t.Errorf("after restart, queued %+v, answered %s", got, id)
		}
	})

	// SIGTERM: run drains and returns without error, writing its metrics.
	if err := api.stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
	logs := api.out.String()
	for _, want := range []string{`"msg":"stopped"`, `"Accepted":`, `"Reason":"unavailable"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("output lacks %s", want)
		}
	}
	if strings.Contains(logs, "alice@example.com") || strings.Contains(logs, testKey) {
		t.Error("output holds an address or the key")
	}
}

// emulator is a running SQS emulator that the test or its cleanup stops,
// whichever comes first.
type emulator struct {
	*sqslocal.Server
	once sync.Once
}

func (e *emulator) Close() { e.once.Do(func() { e.Server.Close() }) }

func startEmulator(t testing.TB, addr string) *emulator {
	t.Helper()
	s, err := sqslocal.Start(sqslocal.Config{Addr: addr, Queues: []sqslocal.Queue{{Name: "herald"}}})
	if err != nil {
		t.Fatal(err)
	}
	e := &emulator{Server: s}
	t.Cleanup(e.Close)
	return e
}

type runningAPI struct {
	addr   string
	out    *heraldtest.Buffer
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// startAPI runs the program on a free loopback port and waits until it
// listens; the test's cleanup stops it.
func startAPI(t *testing.T, env map[string]string) *runningAPI {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a := &runningAPI{out: &heraldtest.Buffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { a.done <- run(ctx, nil, getenvOf(env), a.out) }()
	t.Cleanup(func() { a.stop() })
	deadline := time.Now().Add(20 * time.Second)
	for a.addr == "" {
		select {
		case err := <-a.done:
			t.Fatalf("run ended at start: %v\n%s", err, a.out)
		default:
		}
		for _, line := range strings.Split(a.out.String(), "\n") {
			var l struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "listening" {
				a.addr = l.Addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("API not listening:\n%s", a.out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if host, _, _ := net.SplitHostPort(a.addr); host != "127.0.0.1" {
		t.Fatalf("listening on %s", a.addr)
	}
	return a
}

func (a *runningAPI) stop() error {
	a.once.Do(func() {
		a.cancel()
		a.err = <-a.done
	})
	return a.err
}

var client = &http.Client{Timeout: 30 * time.Second}

func (a *runningAPI) post(t *testing.T, path, body string) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+a.addr+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

func (a *runningAPI) get(t *testing.T, path string) int {
	t.Helper()
	resp, err := client.Get("http://" + a.addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// receive takes n messages off the queue (deleting them), decodes each as an
// envelope, and fails on anything else or on more than n.
//
// Against the in-process emulator a ReceiveMessage now and then fails on the
// client side while reading the answer ("use of closed network connection",
// a known aws-sdk-go-v2 symptom); the messages it took are then invisible
// until their visibility timeout. A short visibility timeout brings them back
// within the deadline, so such a failure costs time, not a false result.
func receive(t *testing.T, c *sqs.Client, url string, n int) map[string]herald.Envelope {
	t.Helper()
	ctx := context.Background()
	got := map[string]herald.Envelope{}
	deadline := time.Now().Add(20 * time.Second)
	failures := 0
	for len(got) < n && time.Now().Before(deadline) {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 2})
		if err != nil {
			if failures++; failures > 5 {
				t.Fatalf("receive: %v", err)
			}
			t.Logf("receive (the messages come back after 2 s): %v", err)
			continue
		}
		for _, m := range out.Messages {
			e, err := herald.DecodeEnvelope([]byte(aws.ToString(m.Body)))
			if err != nil {
				t.Fatalf("queued message is no envelope: %v", err)
			}
			if _, dup := got[e.ID]; dup {
				t.Errorf("envelope %s twice", e.ID)
			}
			got[e.ID] = e
			if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatalf("delete: %v", err)
			}
		}
	}
	if len(got) != n {
		t.Fatalf("%d messages on the queue, want %d", len(got), n)
	}
	// Nothing more than what was accepted.
	out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, VisibilityTimeout: 2})
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	if len(out.Messages) != 0 {
		t.Fatalf("%d unexpected messages on the queue", len(out.Messages))
	}
	return got
}

// TestShutdownFinishesRequestsInFlight: on SIGTERM (ctx ending) the server
// stops taking connections, but a request whose SQS call is in flight still
// gets its 202, and serve returns cleanly after it.
func TestShutdownFinishesRequestsInFlight(t *testing.T) {
	f := &fakeSQS{gate: make(chan struct{}), started: make(chan struct{}, 10)}
	cfg := testConfig()
	lg := &heraldtest.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, deps{sqs: f}, slog.New(slog.NewJSONHandler(lg, nil)), nil) }()
	var addr string
	pollUntil(t, "listening", func() bool {
		for _, line := range strings.Split(lg.String(), "\n") {
			var l struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "listening" {
				addr = l.Addr
			}
		}
		return addr != ""
	})
	type reply struct {
		status int
		err    error
	}
	res := make(chan reply, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/api/notifications", strings.NewReader(valid(nil)))
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			res <- reply{err: err}
			return
		}
		resp.Body.Close()
		res <- reply{status: resp.StatusCode}
	}()
	<-f.started // the SendMessageBatch is in flight
	cancel()
	pollUntil(t, "shutdown begun", func() bool { return strings.Contains(lg.String(), `"msg":"shutting down"`) })
	close(f.gate)
	if r := <-res; r.status != 202 {
		t.Errorf("in-flight request: %d %v", r.status, r.err)
	}
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
	if len(f.queued()) != 1 {
		t.Errorf("%d queued", len(f.queued()))
	}
}
