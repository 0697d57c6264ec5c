// Package tests holds Herald's end-to-end tests: the real services against
// the real emulators (SQS, SES v2 behind the SES gate), each a process
// started by services/devstack, on loopback and free ports.
package tests

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"os"
	"strings"
	"testing"
	"time"

	"herald/services/devstack"
)

// binDir holds the binaries, built once for the package.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
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

// startStack runs the whole pipeline for one test and stops it afterwards,
// showing the components' last log lines if the test failed.
func startStack(t testing.TB, cfg devstack.Config) *devstack.Stack {
	t.Helper()
	cfg.BinDir = binDir
	cfg.LogDir = t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	s, err := devstack.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pipeline up in %s", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range devstack.Components {
				b, _ := os.ReadFile(s.LogPath(c))
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				if len(lines) > 25 {
					lines = lines[len(lines)-25:]
				}
				t.Logf("last lines of the %s log:\n%s", c, strings.Join(lines, "\n"))
			}
		}
		if err := s.Close(); err != nil {
			t.Errorf("stop the pipeline: %v", err)
		}
	})
	return s
}

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

// runID makes subjects unique to one test run.
func runID() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

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

// do sends a request; contentType "" leaves the header out, key "" sends no
// Authorization.
func (a *api) do(ctx context.Context, path, contentType, key string, body []byte) (reply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+path, bytes.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
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

// waitFor polls cond until it holds or timeout passes; cond says what it saw.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last seen: %s", what, timeout, saw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// delivered counts the gate's accepted sends per subject that has prefix.
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
