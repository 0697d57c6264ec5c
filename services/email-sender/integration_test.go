package main

// Integration tests: the sender's run() against the real emulators, started
// and stopped by each test: goaws in this process (sqslocal), the SES v2
// emulator (npm aws-ses-v2-local) and mailpit as child processes on loopback.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"herald/services/devstack/sqslocal"
	"herald/services/internal/herald"
	"herald/services/internal/herald/heraldtest"
)

// repoRoot is the directory holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startProcess runs a child process that the test stops, whatever happens,
// and waits until ready answers true.
func startProcess(t *testing.T, name string, ready func() bool, cmd *exec.Cmd) {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !ready() {
		select {
		case <-exited:
			t.Fatalf("%s exited at start:\n%s", name, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within 30 s:\n%s", name, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpOK(u string) bool {
	resp, err := http.Get(u)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// startSES runs the SES v2 emulator and returns its base URL.
func startSES(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "node_modules", ".bin", "aws-ses-v2-local")); err != nil {
		t.Fatal("the SES v2 emulator is not installed: run `make tools` (or `npm ci` at the repository root)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not on PATH; the SES v2 emulator needs Node.js")
	}
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	base := "http://" + addr
	cmd := exec.Command(node, filepath.Join(root, "node_modules", "aws-ses-v2-local", "dist", "cli.js"), "--host", "127.0.0.1", "--port", port)
	startProcess(t, "aws-ses-v2-local", func() bool { return httpOK(base + "/health-check") }, cmd)
	return base
}

// startSQS runs goaws in this process with a queue and its DLQ.
func startSQS(t *testing.T) (*sqslocal.Server, *sqs.Client) {
	t.Helper()
	s, err := sqslocal.Start(sqslocal.Config{Queues: []sqslocal.Queue{
		{Name: "q", VisibilityTimeout: 30, DeadLetter: "dlq", MaxReceiveCount: 5},
		{Name: "dlq"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	client := sqs.New(sqs.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(s.Endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
	})
	return s, client
}

// senderEnv is the environment the local launcher gives the sender.
func senderEnv(s *sqslocal.Server) map[string]string {
	return map[string]string{
		"AWS_REGION":                "us-east-1",
		"AWS_ACCESS_KEY_ID":         "local",
		"AWS_SECRET_ACCESS_KEY":     "local",
		"AWS_ENDPOINT_URL_SQS":      s.Endpoint,
		"HERALD_QUEUE_URL":          s.QueueURL("q"),
		"HERALD_DLQ_URL":            s.QueueURL("dlq"),
		"HERALD_WAIT_TIME":          "1s",
		"HERALD_STALL_AFTER":        "30s",
		"HERALD_SEND_RATE":          "200",
		"HERALD_METRICS_INTERVAL":   "1s",
		"HERALD_SHUTDOWN_TIMEOUT":   "10s",
		"HERALD_VISIBILITY_TIMEOUT": "30s",
		"HERALD_ALLOWED_FROM":       "@herald.example",
	}
}

// startSender runs the service as main would, until stop is called.
func startSender(t *testing.T, env map[string]string) (stop func() error, stdout *heraldtest.Buffer) {
	t.Helper()
	stdout = &heraldtest.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, getenvFrom(env), stdout) }()
	var once sync.Once
	var result error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case result = <-done:
			case <-time.After(30 * time.Second):
				result = fmt.Errorf("the sender did not stop within 30 s")
			}
		})
		return result
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("sender output:\n%s", stdout.String())
		}
	})
	eventually(t, 20*time.Second, "the sender's health endpoint", func() bool {
		return httpOK("http://" + env["HERALD_HTTP_ADDR"] + "/healthz")
	})
	return stop, stdout
}

func enqueue(t *testing.T, c *sqs.Client, queueURL, body string) string {
	t.Helper()
	out, err := c.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String(body)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.MessageId)
}

func enqueueEnvelope(t *testing.T, c *sqs.Client, queueURL string, e herald.Envelope) string {
	t.Helper()
	e.ID, e.CreatedAt = herald.NewID(), time.Now().UTC()
	body, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return enqueue(t, c, queueURL, string(body))
}

func queueLength(t *testing.T, c *sqs.Client, queueURL string) int {
	t.Helper()
	out, err := c.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(queueURL),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages},
	})
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
	return n
}

// drainDLQ receives what the dead-letter queue holds, with attributes.
func drainDLQ(t *testing.T, c *sqs.Client, queueURL string, want int) []types.Message {
	t.Helper()
	var got []types.Message
	eventually(t, 20*time.Second, fmt.Sprintf("%d dead-lettered messages", want), func() bool {
		out, err := c.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
			MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, out.Messages...)
		return len(got) >= want
	})
	return got
}

type sesStored struct {
	From        string   `json:"from"`
	ReplyTo     []string `json:"replyTo"`
	Subject     string   `json:"subject"`
	Destination struct {
		To  []string `json:"to"`
		Cc  []string `json:"cc"`
		Bcc []string `json:"bcc"`
	} `json:"destination"`
	Body struct {
		Text string `json:"text"`
		HTML string `json:"html"`
	} `json:"body"`
}

func sesStore(t *testing.T, base string) []sesStored {
	t.Helper()
	resp, err := http.Get(base + "/store")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var store struct{ Emails []sesStored }
	if err := json.NewDecoder(resp.Body).Decode(&store); err != nil {
		t.Fatal(err)
	}
	return store.Emails
}

// logLines decodes the sender's JSON output (log lines and EMF documents).
func logLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("stdout line is not JSON: %q", sc.Text())
		}
		lines = append(lines, m)
	}
	return lines
}

// metricTotal sums a counter over the EMF documents without a breakdown dimension.
func metricTotal(lines []map[string]any, name, dim string) float64 {
	total := 0.0
	for _, l := range lines {
		if _, emf := l["_aws"]; !emf {
			continue
		}
		if _, hasDim := l[dim]; hasDim {
			continue
		}
		if v, ok := l[name].(float64); ok {
			total += v
		}
	}
	return total
}

func TestIntegrationDeliversThroughSESEmulator(t *testing.T) {
	sesURL := startSES(t)
	s, client := startSQS(t)
	env := senderEnv(s)
	env["AWS_ENDPOINT_URL_SESV2"] = sesURL
	env["HERALD_HTTP_ADDR"] = freeAddr(t)
	stop, stdout := startSender(t, env)

	want := []herald.Envelope{
		{
			From: "Herald <noreply@herald.example>", ReplyTo: "support@herald.example",
			To: []string{"alice@example.com", "Bob <bob@example.org>"}, Cc: []string{"carol@example.net"}, Bcc: []string{"dave@example.com"},
			Subject: "Your order shipped — Grüße", Text: "Hello Alice,\n.\nBye", HTML: "<p>Hello <b>Alice</b></p>",
			Metadata: map[string]string{"campaign": "spring"},
		},
		{From: "noreply@herald.example", To: []string{"erin@example.com"}, Subject: "Text only", Text: "plain"},
		{From: "noreply@herald.example", Bcc: []string{"frank@example.com"}, Subject: "HTML only, Bcc only", HTML: "<h1>hi</h1>"},
	}
	for _, e := range want {
		enqueueEnvelope(t, client, s.QueueURL("q"), e)
	}
	enqueue(t, client, s.QueueURL("q"), "this is not an envelope")

	eventually(t, 20*time.Second, "three mails in the SES emulator", func() bool { return len(sesStore(t, sesURL)) >= 3 })
	got := map[string]sesStored{}
	for _, m := range sesStore(t, sesURL) {
		got[m.Subject] = m
	}
	if len(got) != 3 {
		t.Fatalf("SES store holds %d mails, want 3: %+v", len(got), got)
	}
	for _, e := range want {
		m, ok := got[e.Subject]
		if !ok {
			t.Errorf("no mail with subject %q", e.Subject)
			continue
		}
		if m.From != e.From || m.Body.Text != e.Text || m.Body.HTML != e.HTML {
			t.Errorf("%q: from %q text %q html %q", e.Subject, m.From, m.Body.Text, m.Body.HTML)
		}
		if !equalList(m.Destination.To, e.To) || !equalList(m.Destination.Cc, e.Cc) || !equalList(m.Destination.Bcc, e.Bcc) {
			t.Errorf("%q: to %v cc %v bcc %v; want %v %v %v", e.Subject, m.Destination.To, m.Destination.Cc, m.Destination.Bcc, e.To, e.Cc, e.Bcc)
		}
		if e.ReplyTo != "" && !equalList(m.ReplyTo, []string{e.ReplyTo}) {
			t.Errorf("%q: reply-to %v", e.Subject, m.ReplyTo)
		}
	}

	dead := drainDLQ(t, client, s.QueueURL("dlq"), 1)
	if body := aws.ToString(dead[0].Body); body != "this is not an envelope" {
		t.Errorf("dead-lettered body %q", body)
	}
	if class := aws.ToString(dead[0].MessageAttributes[herald.AttrFailureClass].StringValue); class != "unreadable" {
		t.Errorf("dead-letter class %q, want unreadable", class)
	}
	eventually(t, 10*time.Second, "an empty queue", func() bool { return queueLength(t, client, s.QueueURL("q")) == 0 })

	if err := stop(); err != nil {
		t.Fatalf("sender stopped with %v", err)
	}
	out := stdout.String()
	for _, full := range []string{"alice@example.com", "dave@example.com", "Hello Alice"} {
		if strings.Contains(out, full) {
			t.Errorf("the log holds %q (an address or a body)", full)
		}
	}
	lines := logLines(t, out)
	if sent := metricTotal(lines, "Sent", "Class"); sent != 3 {
		t.Errorf("EMF Sent total %v, want 3", sent)
	}
	if dl := metricTotal(lines, "DeadLettered", "Class"); dl != 1 {
		t.Errorf("EMF DeadLettered total %v, want 1", dl)
	}
	sentLogs := 0
	for _, l := range lines {
		if l["outcome"] == "sent" {
			sentLogs++
			if l["envelopeId"] == nil || l["sqsMessageId"] == nil || l["latencyMs"] == nil {
				t.Errorf("a sent log line lacks ids or latency: %v", l)
			}
		}
	}
	if sentLogs != 3 {
		t.Errorf("%d sent log lines, want 3", sentLogs)
	}
}

func equalList(got, want []string) bool {
	return slices.Equal(got, want) || len(got) == 0 && len(want) == 0
}

// rejectingProxy forwards to the SES emulator but answers SES's real
// MessageRejected error for one sender, as SES does for an unverified identity.
func rejectingProxy(t *testing.T, sesURL, blockedFrom string) string {
	t.Helper()
	target, err := url.Parse(sesURL)
	if err != nil {
		t.Fatal(err)
	}
	forward := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v2/email/outbound-emails" {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var in struct{ FromEmailAddress string }
			json.Unmarshal(body, &in)
			if in.FromEmailAddress == blockedFrom {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("x-amzn-ErrorType", "MessageRejected")
				w.Header().Set("x-amzn-RequestId", "b5a1f0e2-0000-4000-8000-000000000001")
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprintf(w, `{"message":"Email address is not verified. The following identities failed the check in region US-EAST-1: %s"}`, blockedFrom)
				return
			}
		}
		forward.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestIntegrationSESRejectionGoesToDeadLetterQueue(t *testing.T) {
	sesURL := startSES(t)
	const blocked = "blocked@herald.example"
	proxyURL := rejectingProxy(t, sesURL, blocked)
	s, client := startSQS(t)
	env := senderEnv(s)
	env["AWS_ENDPOINT_URL_SESV2"] = proxyURL
	env["HERALD_HTTP_ADDR"] = freeAddr(t)
	stop, _ := startSender(t, env)

	rejectedID := enqueueEnvelope(t, client, s.QueueURL("q"), herald.Envelope{From: blocked, To: []string{"alice@example.com"}, Subject: "Rejected", Text: "x"})
	enqueueEnvelope(t, client, s.QueueURL("q"), herald.Envelope{From: "ok@herald.example", To: []string{"alice@example.com"}, Subject: "Accepted", Text: "y"})

	dead := drainDLQ(t, client, s.QueueURL("dlq"), 1)
	attr := func(name string) string { return aws.ToString(dead[0].MessageAttributes[name].StringValue) }
	if attr(herald.AttrFailureClass) != "permanent" || attr(herald.AttrSourceMessageID) != rejectedID {
		t.Errorf("dead letter attributes %+v, want class permanent and source %s", dead[0].MessageAttributes, rejectedID)
	}
	if reason := attr(herald.AttrFailureReason); !strings.Contains(reason, "MessageRejected") || strings.Contains(reason, "@") {
		t.Errorf("reason %q: want MessageRejected, without the address", reason)
	}
	if e, err := herald.DecodeEnvelope([]byte(aws.ToString(dead[0].Body))); err != nil || e.Subject != "Rejected" {
		t.Errorf("dead-lettered body is not the original envelope: %v", err)
	}
	eventually(t, 20*time.Second, "the accepted mail in the SES emulator", func() bool {
		store := sesStore(t, sesURL)
		return len(store) == 1 && store[0].Subject == "Accepted"
	})
	eventually(t, 10*time.Second, "an empty queue", func() bool { return queueLength(t, client, s.QueueURL("q")) == 0 })
	if err := stop(); err != nil {
		t.Fatalf("sender stopped with %v", err)
	}
}

// startMailpit runs mailpit with STARTTLS required (a self-signed
// certificate) and AUTH, and returns its SMTP address, API base URL and the
// certificate file.
func startMailpit(t *testing.T, user, pass string) (smtpAddr, apiURL, certFile string) {
	t.Helper()
	bin := filepath.Join(repoRoot(t), "bin", "mailpit")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("mailpit is not built (%s): run `make tools`", bin)
	}
	dir := t.TempDir()
	certFile, keyFile := selfSignedCert(t, dir)
	authFile := filepath.Join(dir, "smtp-auth")
	if err := os.WriteFile(authFile, []byte(user+":"+pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	smtpAddr, httpAddr := freeAddr(t), freeAddr(t)
	apiURL = "http://" + httpAddr
	cmd := exec.Command(bin,
		"--smtp", smtpAddr, "--listen", httpAddr,
		"--database", filepath.Join(dir, "mailpit.db"),
		"--smtp-tls-cert", certFile, "--smtp-tls-key", keyFile, "--smtp-require-starttls",
		"--smtp-auth-file", authFile,
		"--disable-version-check", "--quiet",
	)
	startProcess(t, "mailpit", func() bool { return httpOK(apiURL + "/readyz") }, cmd)
	return smtpAddr, apiURL, certFile
}

type mailpitAddress struct{ Name, Address string }

type mailpitMessage struct {
	ID, Subject, Text, HTML string
	From                    mailpitAddress
	To, Cc, Bcc, ReplyTo    []mailpitAddress
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

func addrs(list []mailpitAddress) []string {
	var out []string
	for _, a := range list {
		out = append(out, a.Address)
	}
	return out
}

func TestIntegrationDeliversThroughSMTPWithSTARTTLS(t *testing.T) {
	smtpAddr, apiURL, certFile := startMailpit(t, "herald", "relay-password")
	s, client := startSQS(t)
	env := senderEnv(s)
	env["HERALD_TRANSPORT"] = "smtp"
	env["HERALD_SMTP_ADDR"] = smtpAddr
	env["HERALD_SMTP_TLS"] = "starttls"
	env["HERALD_SMTP_CA_FILE"] = certFile
	env["HERALD_SMTP_USERNAME"] = "herald"
	env["HERALD_SMTP_PASSWORD"] = "relay-password"
	env["HERALD_HTTP_ADDR"] = freeAddr(t)
	stop, stdout := startSender(t, env)

	e := herald.Envelope{
		From: "Herald <noreply@herald.example>", ReplyTo: "support@herald.example",
		To: []string{"alice@example.com"}, Cc: []string{"carol@example.net"}, Bcc: []string{"dave@example.com"},
		Subject: "Grüße — your report is ready",
		Text:    "Hello Alice,\n.\n..a line starting with dots\nBye",
		HTML:    "<p>Hello <b>Alice</b> — voilà</p>",
	}
	enqueueEnvelope(t, client, s.QueueURL("q"), e)

	var list struct{ Messages []mailpitMessage }
	eventually(t, 20*time.Second, "the mail in mailpit", func() bool {
		getJSON(t, apiURL+"/api/v1/messages", &list)
		return len(list.Messages) == 1
	})
	var m mailpitMessage
	getJSON(t, apiURL+"/api/v1/message/"+list.Messages[0].ID, &m)
	if m.Subject != e.Subject || m.From.Address != "noreply@herald.example" || m.From.Name != "Herald" {
		t.Errorf("subject %q from %+v", m.Subject, m.From)
	}
	if !equalList(addrs(m.To), e.To) || !equalList(addrs(m.Cc), e.Cc) || !equalList(addrs(m.Bcc), e.Bcc) || !equalList(addrs(m.ReplyTo), []string{e.ReplyTo}) {
		t.Errorf("to %v cc %v bcc %v reply-to %v", addrs(m.To), addrs(m.Cc), addrs(m.Bcc), addrs(m.ReplyTo))
	}
	if got := strings.TrimRight(strings.ReplaceAll(m.Text, "\r\n", "\n"), "\n"); got != e.Text {
		t.Errorf("text %q, want %q", got, e.Text)
	}
	if !strings.Contains(m.HTML, e.HTML) {
		t.Errorf("html %q, want %q", m.HTML, e.HTML)
	}
	resp, err := http.Get(apiURL + "/api/v1/message/" + m.ID + "/raw")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// mailpit stores its own trace headers (Bcc, Return-Path, Received) above
	// the message; what the sender wrote starts at its Date header.
	i := bytes.Index(raw, []byte("\nDate: "))
	if i < 0 {
		t.Fatalf("no Date header in the stored message:\n%s", raw)
	}
	if sent := raw[i:]; bytes.Contains(sent, []byte("dave@example.com")) || bytes.Contains(bytes.ToLower(sent), []byte("\nbcc:")) {
		t.Errorf("the Bcc recipient shows in the message sent:\n%s", sent)
	}
	eventually(t, 10*time.Second, "an empty queue", func() bool { return queueLength(t, client, s.QueueURL("q")) == 0 })
	if err := stop(); err != nil {
		t.Fatalf("sender stopped with %v", err)
	}
	if strings.Contains(stdout.String(), "relay-password") {
		t.Error("the SMTP password is in the log")
	}
}

// buildSender compiles the service binary into a temporary directory.
func buildSender(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "email-sender")
	cmd := exec.Command("go", "build", "-o", bin, "herald/services/email-sender")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the sender: %v\n%s", err, out)
	}
	return bin
}

// senderProcess starts the binary with env; the test kills it if it is still
// running at the end.
func senderProcess(t *testing.T, bin string, env map[string]string) (*exec.Cmd, <-chan error) {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out := &heraldtest.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("sender process %d output:\n%s", cmd.Process.Pid, out.String())
		}
	})
	return cmd, exited
}

// TestIntegrationSIGKILLLosesNothing kills the sender with SIGKILL while
// hundreds of messages are in flight, starts it again, and expects every
// notification in the SES emulator (duplicates are allowed: at-least-once)
// and an empty queue; the second process then stops cleanly on SIGTERM.
func TestIntegrationSIGKILLLosesNothing(t *testing.T) {
	bin := buildSender(t)
	sesURL := startSES(t)
	s, client := startSQS(t)
	env := senderEnv(s)
	env["AWS_ENDPOINT_URL_SESV2"] = sesURL
	env["HERALD_SEND_RATE"] = "150"         // slow enough to kill mid-run
	env["HERALD_VISIBILITY_TIMEOUT"] = "2s" // what the killed process held returns soon
	env["HERALD_METRICS_INTERVAL"] = "0"

	const total = 300
	for i := 0; i < total; i += 10 {
		in := &sqs.SendMessageBatchInput{QueueUrl: aws.String(s.QueueURL("q"))}
		for j := i; j < i+10; j++ {
			e := herald.Envelope{ID: herald.NewID(), CreatedAt: time.Now().UTC(), From: "noreply@herald.example",
				To: []string{"load@example.com"}, Subject: fmt.Sprintf("kill-test %03d", j), Text: "x"}
			body, err := e.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			in.Entries = append(in.Entries, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(j)), MessageBody: aws.String(string(body))})
		}
		if out, err := client.SendMessageBatch(context.Background(), in); err != nil || len(out.Failed) > 0 {
			t.Fatalf("enqueue: %v %+v", err, out)
		}
	}

	env["HERALD_HTTP_ADDR"] = freeAddr(t)
	first, _ := senderProcess(t, bin, env)
	eventually(t, 30*time.Second, "the first sender to send some", func() bool { return len(sesStore(t, sesURL)) >= 60 })
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAt := len(sesStore(t, sesURL))
	if killedAt >= total {
		t.Fatalf("all %d were sent before the kill; nothing was in flight", total)
	}

	env["HERALD_HTTP_ADDR"] = freeAddr(t)
	second, exited := senderProcess(t, bin, env)
	subjects := map[string]int{}
	eventually(t, 60*time.Second, fmt.Sprintf("all %d notifications in the SES emulator", total), func() bool {
		clear(subjects)
		for _, m := range sesStore(t, sesURL) {
			subjects[m.Subject]++
		}
		return len(subjects) == total
	})
	eventually(t, 20*time.Second, "an empty queue", func() bool { return queueLength(t, client, s.QueueURL("q")) == 0 })
	duplicates := 0
	for _, n := range subjects {
		duplicates += n - 1
	}
	t.Logf("killed after %d of %d sends; %d duplicates delivered after the restart (at-least-once)", killedAt, total, duplicates)
	if n := queueLength(t, client, s.QueueURL("dlq")); n != 0 {
		t.Errorf("%d messages dead-lettered", n)
	}

	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the sender exited with %v on SIGTERM, want status 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("the sender did not exit within 15 s of SIGTERM (shutdown timeout 10 s)")
	}
}
