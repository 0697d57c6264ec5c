package sesgate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
)

// fakeSES stands in for the emulator: it accepts every send, as the
// emulator does, and counts what reached it.
type fakeSES struct {
	calls atomic.Int64
	last  atomic.Value // string: last request body
}

func (f *fakeSES) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := f.calls.Add(1)
	body, _ := io.ReadAll(r.Body)
	f.last.Store(string(body))
	switch r.URL.Path {
	case "/v2/email/outbound-emails":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"MessageId":"fake-%d"}`, n)
	case "/store":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"emails":[]}`)
	default:
		http.NotFound(w, r)
	}
}

func newGate(t *testing.T, cfg Config) (*Gate, *fakeSES, string) {
	t.Helper()
	up := &fakeSES{}
	upSrv := httptest.NewServer(up)
	t.Cleanup(upSrv.Close)
	cfg.Upstream = upSrv.URL
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, up, srv.URL
}

// client is the real SDK client, with its retries off so each call shows
// what the gate answered.
func client(endpoint string) *sesv2.Client {
	return sesv2.New(sesv2.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(endpoint),
		Credentials:      credentials.NewStaticCredentialsProvider("local", "local", ""),
		RetryMaxAttempts: 1,
	})
}

func send(ctx context.Context, c *sesv2.Client, from, subject string) (*sesv2.SendEmailOutput, error) {
	return c.SendEmail(ctx, &sesv2.SendEmailInput{
		FromEmailAddress: aws.String(from),
		Destination:      &types.Destination{ToAddresses: []string{"alice@example.org"}},
		Content: &types.EmailContent{Simple: &types.Message{
			Subject: &types.Content{Data: aws.String(subject)},
			Body:    &types.Body{Text: &types.Content{Data: aws.String("hello")}},
		}},
	})
}

func statusOf(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func TestVerifiedIdentities(t *testing.T) {
	g, up, url := newGate(t, Config{Verified: []string{"example.com", "Ops@Example.net"}, MaxSendRate: 1000})
	c := client(url)
	ctx := context.Background()

	for _, from := range []string{
		"noreply@example.com",
		"Herald <noreply@EXAMPLE.com>",
		"alerts@mail.example.com", // subdomain of a verified domain
		"ops@example.net",         // verified address, case-insensitive
	} {
		t.Run("accepts "+from, func(t *testing.T) {
			out, err := send(ctx, c, from, "hi")
			if err != nil {
				t.Fatalf("send from %q: %v", from, err)
			}
			if !strings.HasPrefix(aws.ToString(out.MessageId), "fake-") {
				t.Fatalf("MessageId %q did not come from the emulator", aws.ToString(out.MessageId))
			}
		})
	}
	for _, from := range []string{
		"someone@example.net", // only one address of example.net is verified
		"noreply@notexample.com",
		"noreply@example.com.evil.org",
	} {
		t.Run("rejects "+from, func(t *testing.T) {
			before := up.calls.Load()
			_, err := send(ctx, c, from, "hi")
			var rejected *types.MessageRejected
			if !errors.As(err, &rejected) {
				t.Fatalf("send from %q: got %v (%T), want *types.MessageRejected", from, err, err)
			}
			if !strings.Contains(rejected.ErrorMessage(), "Email address is not verified") {
				t.Errorf("message %q does not say the address is not verified", rejected.ErrorMessage())
			}
			if statusOf(err) != http.StatusBadRequest {
				t.Errorf("status %d, want 400", statusOf(err))
			}
			if up.calls.Load() != before {
				t.Error("a rejected send reached the emulator")
			}
		})
	}
	if st := g.Stats(); st.Accepted != 4 || st.Rejected != 3 {
		t.Errorf("stats %+v, want 4 accepted and 3 rejected", st)
	}
}

func TestRecordsSendsWithMilliseconds(t *testing.T) {
	g, up, url := newGate(t, Config{MaxSendRate: 1000})
	before := time.Now()
	out, err := send(context.Background(), client(url), "a@example.com", "subject one")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(up.last.Load().(string), `"subject one"`) {
		t.Fatalf("emulator got %q, not the request body", up.last.Load())
	}
	sends := g.Sends()
	if len(sends) != 1 {
		t.Fatalf("%d sends recorded, want 1", len(sends))
	}
	s := sends[0]
	if s.MessageID != aws.ToString(out.MessageId) || s.Subject != "subject one" || s.From != "a@example.com" ||
		len(s.To) != 1 || s.To[0] != "alice@example.org" {
		t.Errorf("record %+v does not match the send (MessageId %s)", s, aws.ToString(out.MessageId))
	}
	if s.AtMs < before.UnixMilli() || s.AtMs > time.Now().UnixMilli() || s.AtMs != s.At.UnixMilli() {
		t.Errorf("timestamp %d (%s) outside the call", s.AtMs, s.At)
	}
}

func TestRawContentFrom(t *testing.T) {
	g, _, url := newGate(t, Config{Verified: []string{"example.com"}, MaxSendRate: 1000})
	raw := func(from string) *sesv2.SendEmailInput {
		msg := "From: " + from + "\r\nTo: b@example.org\r\nSubject: raw one\r\n\r\nbody\r\n"
		return &sesv2.SendEmailInput{Content: &types.EmailContent{Raw: &types.RawMessage{Data: []byte(msg)}}}
	}
	c := client(url)
	if _, err := c.SendEmail(context.Background(), raw("x@example.com")); err != nil {
		t.Fatalf("raw send from a verified domain: %v", err)
	}
	var rejected *types.MessageRejected
	if _, err := c.SendEmail(context.Background(), raw("x@other.org")); !errors.As(err, &rejected) {
		t.Fatalf("raw send from an unverified domain: %v, want MessageRejected", err)
	}
	if s := g.Sends(); len(s) != 1 || s[0].Subject != "raw one" {
		t.Errorf("records %+v, want the one raw send", s)
	}
}

func TestMaxSendRate(t *testing.T) {
	g, _, url := newGate(t, Config{MaxSendRate: 2})
	c := client(url)
	ctx := context.Background()
	// The bucket holds one second of sends; a burst well over it is throttled.
	var ok, throttled int
	for i := 0; i < 10; i++ {
		_, err := send(ctx, c, "a@example.com", "s")
		var tmr *types.TooManyRequestsException
		switch {
		case err == nil:
			ok++
		case errors.As(err, &tmr):
			if statusOf(err) != http.StatusTooManyRequests {
				t.Fatalf("throttle status %d, want 429", statusOf(err))
			}
			throttled++
		default:
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if ok < 2 || ok > 4 || throttled == 0 {
		t.Fatalf("%d accepted, %d throttled in a burst of 10 at 2/s", ok, throttled)
	}
	if st := g.Stats(); st.Throttled != int64(throttled) {
		t.Errorf("stats count %d throttled, calls saw %d", st.Throttled, throttled)
	}
}

func TestGetAccount(t *testing.T) {
	_, _, url := newGate(t, Config{MaxSendRate: 40, Max24HourSend: 1000})
	c := client(url)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := send(ctx, c, "a@example.com", "s"); err != nil {
			t.Fatal(err)
		}
	}
	acct, err := c.GetAccount(ctx, &sesv2.GetAccountInput{})
	if err != nil {
		t.Fatal(err)
	}
	q := acct.SendQuota
	if q == nil || q.MaxSendRate != 40 || q.Max24HourSend != 1000 || q.SentLast24Hours != 3 {
		t.Fatalf("SendQuota %+v, want rate 40, 24h 1000, sent 3", q)
	}
	if !acct.SendingEnabled || !acct.ProductionAccessEnabled {
		t.Errorf("account %+v: sending or production access off", acct)
	}
}

func TestFaults(t *testing.T) {
	ctx := context.Background()
	t.Run("unavailable for a count of calls", func(t *testing.T) {
		g, up, url := newGate(t, Config{MaxSendRate: 1000})
		if err := g.SetFault(Fault{Mode: FaultUnavailable, Count: 2}); err != nil {
			t.Fatal(err)
		}
		c := client(url)
		for i := 0; i < 2; i++ {
			if _, err := send(ctx, c, "a@example.com", "s"); statusOf(err) != http.StatusServiceUnavailable {
				t.Fatalf("call %d during the fault: %v, want 503", i, err)
			}
		}
		if _, err := send(ctx, c, "a@example.com", "s"); err != nil {
			t.Fatalf("call after the fault: %v", err)
		}
		if up.calls.Load() != 1 || g.Stats().Faulted != 2 {
			t.Errorf("emulator saw %d calls and %d were faulted; want 1 and 2", up.calls.Load(), g.Stats().Faulted)
		}
	})
	t.Run("throttle", func(t *testing.T) {
		g, _, url := newGate(t, Config{MaxSendRate: 1000})
		g.SetFault(Fault{Mode: FaultThrottle, Count: 1})
		var tmr *types.TooManyRequestsException
		if _, err := send(ctx, client(url), "a@example.com", "s"); !errors.As(err, &tmr) {
			t.Fatalf("got %v, want TooManyRequestsException", err)
		}
	})
	t.Run("refuse drops the connection", func(t *testing.T) {
		g, _, url := newGate(t, Config{MaxSendRate: 1000})
		g.SetFault(Fault{Mode: FaultRefuse, Count: 1})
		_, err := send(ctx, client(url), "a@example.com", "s")
		if err == nil || statusOf(err) != 0 {
			t.Fatalf("got %v (status %d), want a transport error with no HTTP status", err, statusOf(err))
		}
	})
	t.Run("expires after its duration", func(t *testing.T) {
		g, _, url := newGate(t, Config{MaxSendRate: 1000})
		start := time.Now()
		g.SetFault(Fault{Mode: FaultUnavailable, For: Duration(200 * time.Millisecond)})
		c := client(url)
		if _, err := send(ctx, c, "a@example.com", "s"); statusOf(err) != http.StatusServiceUnavailable {
			t.Fatalf("call during the fault: %v, want 503", err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := send(ctx, c, "a@example.com", "s")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("fault still on after 5 s: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if time.Since(start) < 200*time.Millisecond {
			t.Error("fault ended before its duration")
		}
	})
	t.Run("only sends with the subject", func(t *testing.T) {
		g, up, url := newGate(t, Config{MaxSendRate: 1000})
		if err := g.SetFault(Fault{Mode: FaultUnavailable, Count: 1, Subject: "doomed"}); err != nil {
			t.Fatal(err)
		}
		c := client(url)
		// Other sends and other calls pass, and do not use up the count.
		_, okErr := send(ctx, c, "a@example.com", "fine #1")
		_, accountErr := c.GetAccount(ctx, &sesv2.GetAccountInput{})
		_, faultErr := send(ctx, c, "a@example.com", "the doomed one")
		_, afterErr := send(ctx, c, "a@example.com", "the doomed one")
		if okErr != nil || accountErr != nil || statusOf(faultErr) != http.StatusServiceUnavailable || afterErr != nil {
			t.Fatalf("other send %v, GetAccount %v, the subject's send %v (want 503), after its count %v", okErr, accountErr, faultErr, afterErr)
		}
		if up.calls.Load() != 2 || g.Stats().Faulted != 1 {
			t.Errorf("emulator saw %d sends, %d faulted; want 2 and 1", up.calls.Load(), g.Stats().Faulted)
		}
	})
	t.Run("hang holds the call until the caller gives up", func(t *testing.T) {
		g, up, url := newGate(t, Config{MaxSendRate: 1000})
		g.SetFault(Fault{Mode: FaultHang, Subject: "frozen"})
		c := client(url)
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		done := make(chan error, 1)
		go func() { _, err := send(short, c, "a@example.com", "frozen"); done <- err }()
		waitHanging := func(n int64, what string) {
			t.Helper()
			deadline := time.Now().Add(5 * time.Second)
			for g.Stats().Hanging != n {
				if time.Now().After(deadline) {
					t.Fatalf("%s: %d calls held, want %d", what, g.Stats().Hanging, n)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		waitHanging(1, "the call")
		if err := <-done; err == nil || time.Since(start) < 300*time.Millisecond {
			t.Fatalf("a held call ended with %v after %s", err, time.Since(start))
		}
		waitHanging(0, "after its caller left")
		// Clearing the fault releases a held call (dropped, never passed on).
		go func() { _, err := send(ctx, c, "a@example.com", "frozen"); done <- err }()
		waitHanging(1, "the second call")
		g.ClearFault()
		if err := <-done; err == nil || statusOf(err) != 0 {
			t.Fatalf("a released call: %v, want a dropped connection", err)
		}
		if up.calls.Load() != 0 {
			t.Errorf("%d held calls reached the emulator", up.calls.Load())
		}
	})
	t.Run("rejects an unknown mode", func(t *testing.T) {
		g, _, _ := newGate(t, Config{})
		if err := g.SetFault(Fault{Mode: "flaky"}); err == nil {
			t.Fatal("unknown mode accepted")
		}
	})
}

func TestControlEndpoints(t *testing.T) {
	g, _, url := newGate(t, Config{MaxSendRate: 1000})
	do := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	c := client(url)
	ctx := context.Background()

	if code, body := do("PUT", "/_gate/fault", `{"mode":"unavailable","count":1}`); code != http.StatusNoContent {
		t.Fatalf("PUT fault: %d %s", code, body)
	}
	if _, err := send(ctx, c, "a@example.com", "first"); statusOf(err) != http.StatusServiceUnavailable {
		t.Fatalf("send with the fault set over HTTP: %v, want 503", err)
	}
	if code, _ := do("PUT", "/_gate/fault", `{"mode":"unavailable","for":"1h"}`); code != http.StatusNoContent {
		t.Fatal("PUT a timed fault failed")
	}
	if code, _ := do("DELETE", "/_gate/fault", ""); code != http.StatusNoContent {
		t.Fatal("DELETE fault failed")
	}
	for _, bad := range []string{`{"mode":"flaky"}`, `{"mode":"refuse","for":"soon"}`, `{"mode":"refuse","extra":1}`} {
		if code, _ := do("PUT", "/_gate/fault", bad); code != http.StatusBadRequest {
			t.Errorf("PUT fault %s: %d, want 400", bad, code)
		}
	}

	if _, err := send(ctx, c, "a@example.com", "second"); err != nil {
		t.Fatal(err)
	}
	code, body := do("GET", "/_gate/sends", "")
	var got struct{ Sends []Send }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil || len(got.Sends) != 1 || got.Sends[0].Subject != "second" {
		t.Fatalf("GET sends: %d %s", code, body)
	}
	future := time.Now().Add(time.Hour).UnixMilli()
	if _, body := do("GET", fmt.Sprintf("/_gate/sends?since=%d", future), ""); strings.TrimSpace(body) != `{"sends":[]}` {
		t.Errorf("sends since the future: %s", body)
	}
	if code, _ := do("GET", "/_gate/sends?since=yesterday", ""); code != http.StatusBadRequest {
		t.Errorf("bad since: %d, want 400", code)
	}
	var st Stats
	if _, body := do("GET", "/_gate/stats", ""); json.Unmarshal([]byte(body), &st) != nil || st.Accepted != 1 || st.Faulted != 1 {
		t.Errorf("stats %s, want 1 accepted and 1 faulted", body)
	}
	if code, _ := do("POST", "/_gate/reset", ""); code != http.StatusNoContent || len(g.Sends()) != 0 || g.Stats() != (Stats{}) {
		t.Error("reset did not forget")
	}
	// Anything else passes through to the emulator.
	if code, body := do("GET", "/store", ""); code != http.StatusOK || !strings.Contains(body, `"emails"`) {
		t.Errorf("GET /store through the gate: %d %s", code, body)
	}
	if code, _ := do("GET", "/_gate/nothing", ""); code != http.StatusNotFound {
		t.Errorf("unknown gate path: %d, want 404", code)
	}
}

func TestUpstreamDown(t *testing.T) {
	upSrv := httptest.NewServer(http.NotFoundHandler())
	upURL := upSrv.URL
	upSrv.Close()
	g, err := New(Config{Upstream: upURL, MaxSendRate: 1000})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	defer srv.Close()
	_, err = send(context.Background(), client(srv.URL), "a@example.com", "s")
	if statusOf(err) != http.StatusBadGateway {
		t.Fatalf("send with the emulator down: %v, want 502 (transient for the SDK)", err)
	}
	if g.Stats().UpstreamErrors != 1 || len(g.Sends()) != 0 {
		t.Errorf("stats %+v, sends %d", g.Stats(), len(g.Sends()))
	}
}

func TestBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no upstream":   {},
		"relative url":  {Upstream: "localhost:1"},
		"negative rate": {Upstream: "http://127.0.0.1:1", MaxSendRate: -1},
		"bad identity":  {Upstream: "http://127.0.0.1:1", Verified: []string{"@example.com"}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestStartAndClose(t *testing.T) {
	up := httptest.NewServer(&fakeSES{})
	defer up.Close()
	s, err := Start("127.0.0.1:0", Config{Upstream: up.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := send(context.Background(), client(s.URL), "a@example.com", "s"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(s.URL + "/_gate/stats"); err == nil {
		t.Fatal("gate still answers after Close")
	}
}
