package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"herald/services/devstack"
	"herald/services/internal/herald/heraldtest"
)

// shellSplit splits a POSIX shell command line made of plain words and
// single-quoted strings (all CurlLine writes).
func shellSplit(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, inQuote := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case inQuote:
			if c == '\'' {
				inQuote = false
			} else {
				cur.WriteByte(c)
			}
		case c == '\'':
			inQuote, inWord = true, true
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unterminated quote in %q", line)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// curlRequest turns the words of the printed curl line into the request
// curl would send.
func curlRequest(words []string) (*http.Request, error) {
	if len(words) == 0 || words[0] != "curl" {
		return nil, fmt.Errorf("not a curl command: %q", words)
	}
	method, target, body := "", "", ""
	hasBody := false
	header := http.Header{}
	for i := 1; i < len(words); i++ {
		w := words[i]
		next := func() (string, error) {
			if i+1 >= len(words) {
				return "", fmt.Errorf("%s without a value", w)
			}
			i++
			return words[i], nil
		}
		switch w {
		case "-sS", "-s", "-S", "-i":
		case "-X":
			v, err := next()
			if err != nil {
				return nil, err
			}
			method = v
		case "-H":
			v, err := next()
			if err != nil {
				return nil, err
			}
			name, value, ok := strings.Cut(v, ":")
			if !ok {
				return nil, fmt.Errorf("header %q", v)
			}
			header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
		case "-d":
			v, err := next()
			if err != nil {
				return nil, err
			}
			body, hasBody = v, true
		default:
			if strings.HasPrefix(w, "-") {
				return nil, fmt.Errorf("unexpected curl option %q", w)
			}
			target = w
		}
	}
	if method == "" {
		method = http.MethodGet
		if hasBody {
			method = http.MethodPost
		}
	}
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header = header
	return req, nil
}

func TestCurlLineRoundTrip(t *testing.T) {
	line := CurlLine("http://127.0.0.1:1234", "key'with\"quotes")
	words, err := shellSplit(line)
	if err != nil {
		t.Fatal(err)
	}
	req, err := curlRequest(words)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(req.Body)
	if req.Method != http.MethodPost || req.URL.String() != "http://127.0.0.1:1234/api/notifications" ||
		req.Header.Get("Authorization") != "Bearer key'with\"quotes" || string(b) != CurlBody ||
		req.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("parsed %s %s %v %s", req.Method, req.URL, req.Header, b)
	}
	if !json.Valid([]byte(CurlBody)) {
		t.Fatal("CurlBody is not JSON")
	}
}

func TestFlags(t *testing.T) {
	env := map[string]string{"HERALD_DEV_API_ADDR": "127.0.0.1:8080", "HERALD_DEV_MAX_SEND_RATE": "50"}
	o, err := parseFlags([]string{"-sqs-addr", "127.0.0.1:9324"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.apiAddr != "127.0.0.1:8080" || o.sqsAddr != "127.0.0.1:9324" || o.maxSendRate != 50 || o.sesAddr != "" || !o.logs {
		t.Fatalf("options %+v", o)
	}
	for _, bad := range [][]string{{"-max-send-rate", "-1"}, {"extra"}, {"-nope"}} {
		if _, err := parseFlags(bad, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("flags %q accepted", bad)
		}
	}
	if _, err := parseFlags(nil, func(k string) string { return map[string]string{"HERALD_DEV_MAX_SEND_RATE": "fast"}[k] }, io.Discard); err == nil {
		t.Error("a bad HERALD_DEV_MAX_SEND_RATE was accepted")
	}
}

// childrenOf lists the pids whose parent is pid (Linux /proc).
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc to find child processes: %v", err)
	}
	var kids []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, ok := procStat(n); ok && ppid == pid {
			kids = append(kids, n)
		}
	}
	return kids
}

// procStat reads a process's parent pid and state from /proc.
func procStat(pid int) (ppid int, state string, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", false
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return 0, "", false
	}
	ppid, err = strconv.Atoi(fields[1])
	return ppid, fields[0], err == nil
}

func alive(pid int) bool {
	_, state, ok := procStat(pid)
	return ok && state != "Z"
}

func TestLauncherEndToEnd(t *testing.T) {
	root, err := devstack.FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	if api, sender := devstack.Available(root); !api || !sender {
		t.Fatal("the launcher needs services/notification-api and services/email-sender")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "herald-dev")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build herald-dev: %v\n%s", err, out)
	}

	// Given: the launcher runs as `make dev` would run it.
	cmd := exec.Command(bin, "-dir", t.TempDir(), "-logs=false")
	cmd.Dir = root
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr heraldtest.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var kids []int
	exited := make(chan error, 1)
	var out heraldtest.Buffer
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.Write([]byte(sc.Text() + "\n"))
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		// Whatever happened, nothing may stay behind.
		cmd.Process.Kill()
		for _, k := range kids {
			syscall.Kill(-k, syscall.SIGKILL)
		}
		if t.Failed() {
			t.Logf("herald-dev stdout:\n%s\nstderr:\n%s", out.String(), stderr.String())
		}
	})

	// When: it prints its summary.
	var curl, sesURL, ops string
	sesLine := regexp.MustCompile(`Sent mail \(SES\)\s+(http://\S+)/`)
	opsLine := regexp.MustCompile(`On-call tool\s+(\S+) dlq list`)
	for curl == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("herald-dev stopped before printing a curl line: %v", <-exited)
			}
			if m := sesLine.FindStringSubmatch(l); m != nil {
				sesURL = m[1]
			}
			if m := opsLine.FindStringSubmatch(l); m != nil {
				ops = m[1]
			}
			if strings.HasPrefix(l, "curl ") {
				curl = l
			}
		case <-ctx.Done():
			t.Fatal("no curl line within the deadline")
		}
	}
	if sesURL == "" {
		t.Fatal("no sent-mail URL printed")
	}
	// The printed on-call tool works on this pipeline as it is.
	if !filepath.IsAbs(ops) {
		ops = filepath.Join(root, ops)
	}
	listing, err := exec.CommandContext(ctx, ops, "dlq", "list", "-json").Output()
	var dlq struct {
		Queue    string
		Messages []json.RawMessage
	}
	if err != nil || json.Unmarshal(listing, &dlq) != nil || !strings.HasSuffix(dlq.Queue, "/herald-notifications-dlq") || len(dlq.Messages) != 0 {
		t.Fatalf("printed herald-ops %q: %v\n%s", ops, err, listing)
	}
	kids = childrenOf(t, cmd.Process.Pid)
	if len(kids) != 5 {
		t.Fatalf("herald-dev has %d child processes %v, want 5 (sqs, ses, dynamodb, sender, api)", len(kids), kids)
	}

	// Then: the exact printed request is accepted ...
	words, err := shellSplit(curl)
	if err != nil {
		t.Fatal(err)
	}
	req, err := curlRequest(words)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("printed curl request: %d %s, want 202", resp.StatusCode, body)
	}
	var accepted struct{ ID, Status string }
	if err := json.Unmarshal(body, &accepted); err != nil || accepted.ID == "" || accepted.Status != "queued" {
		t.Fatalf("202 body %s, want {id, status: queued}", body)
	}

	// ... and the mail shows up in the SES emulator's store.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var store struct{ Emails []devstack.Email }
		if r, err := http.Get(sesURL + "/store"); err == nil {
			json.NewDecoder(r.Body).Decode(&store)
			r.Body.Close()
		}
		if len(store.Emails) == 1 {
			m := store.Emails[0]
			if m.Subject != "Hello from Herald" || len(m.Destination.To) != 1 || m.Destination.To[0] != "alice@example.com" ||
				m.Body.Text != "It works." || m.From == "" {
				t.Fatalf("stored mail %+v does not match the curl body", m)
			}
			break
		}
		if len(store.Emails) > 1 {
			t.Fatalf("%d mails stored for one request", len(store.Emails))
		}
		if time.Now().After(deadline) {
			t.Fatal("the mail never reached the SES emulator")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// When: Ctrl-C. Then: it stops cleanly and every child is gone.
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("herald-dev exit after SIGINT: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("herald-dev still running 60 s after SIGINT")
	}
	if !strings.Contains(out.String(), "Stopped.") {
		t.Errorf("no clean stop reported")
	}
	for _, k := range kids {
		if alive(k) {
			t.Errorf("child %d still alive after herald-dev exited", k)
		}
	}
	if _, err := os.Stat(ops); !os.IsNotExist(err) {
		t.Errorf("%s outlived the run: %v", ops, err)
	}
}
