package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"herald/services/devstack/sesgate"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with a space and a parenthesis, as /proc allows.
	line := "4242 (node (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 11 0 123 456 789\n"
	got, err := parseStatCPU([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if want := 3250 * time.Millisecond; got != want {
		t.Errorf("cpu = %s, want %s (250 + 75 ticks of 10 ms)", got, want)
	}
	for _, bad := range []string{"4242 node S 1", "4242 (x) S 1 2 3", "4242 (x) S 1 2 3 4 5 6 7 8 9 10 x 75 0"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q): no error", bad)
		}
	}
}

func TestParseVmHWM(t *testing.T) {
	status := "Name:\tsqs-local\nVmPeak:\t 1300000 kB\nVmHWM:\t   23456 kB\nVmRSS:\t   20000 kB\n"
	got, err := parseVmHWM([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(23456 * 1024); got != want {
		t.Errorf("peak RSS = %d, want %d", got, want)
	}
	for _, bad := range []string{"Name:\tx\n", "VmHWM:\t 12 MB\n", "VmHWM:\t x kB\n"} {
		if _, err := parseVmHWM([]byte(bad)); err == nil {
			t.Errorf("parseVmHWM(%q): no error", bad)
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0.1, time.Millisecond}} {
		if got := percentile(d, c.p); got != c.want {
			t.Errorf("p%g = %s, want %s", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 99); got != 0 {
		t.Errorf("p99 of nothing = %s, want 0", got)
	}
	if got := percentile(d[:1], 99); got != time.Millisecond {
		t.Errorf("p99 of one = %s, want 1ms", got)
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.modes) != 4 || o.modes[0].name != "batching on" || o.modes[1].name != "batching off" || !o.modes[2].keyed || o.modes[0].keyed ||
		o.modes[2].writesOK || !o.modes[3].keyed || !o.modes[3].writesOK {
		t.Errorf("default modes = %v, want on, off, keyed, then keyed-ceiling", o.modes)
	}
	if o.deliverWait != 70*time.Second {
		t.Errorf("default deliver wait = %s, want 2 x 30s + 10s", o.deliverWait)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-n", "0"}, "-n 0"},
		{[]string{"-c", "0"}, "-c 0"},
		{[]string{"-rate", "0"}, "-rate 0"},
		{[]string{"-visibility", "1500ms"}, "whole seconds"},
		{[]string{"-modes", "on,fast"}, `unknown mode "fast"`},
		{[]string{"-modes", "on,on"}, `"on" twice`},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		_, err := parseFlags(c.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseFlags(%q) = %v, want an error with %q", c.args, err, c.want)
		}
	}
}

// A keyed loader sends each post with an Idempotency-Key of its own, an
// unkeyed one none.
func TestLoaderKeys(t *testing.T) {
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	for _, keyed := range []bool{false, true} {
		keys = nil
		l := newLoader(srv.URL, "k", 1, keyed)
		l.run(context.Background(), "s", 3, 0)
		l.close()
		distinct := map[string]bool{}
		for _, k := range keys {
			distinct[k] = true
		}
		if keyed && (len(distinct) != 3 || distinct[""]) || !keyed && (len(distinct) != 1 || !distinct[""]) {
			t.Errorf("keyed %t: keys %q", keyed, keys)
		}
	}
}

// The figures of a phase count a lost notification and a duplicate send,
// and only those of the phase's own posts.
func TestTallyCountsLostAndDuplicates(t *testing.T) {
	t0 := time.Now()
	posts := []post{
		{subject: "a", status: http.StatusAccepted, start: t0, end: t0.Add(2 * time.Millisecond)},
		{subject: "b", status: http.StatusAccepted, start: t0, end: t0.Add(3 * time.Millisecond)},
		{subject: "c", status: http.StatusAccepted, start: t0, end: t0.Add(4 * time.Millisecond)},
		{subject: "d", status: http.StatusServiceUnavailable, start: t0, end: t0.Add(time.Millisecond)},
	}
	sends := []sesgate.Send{
		{Subject: "a", At: t0.Add(50 * time.Millisecond)},
		{Subject: "b", At: t0.Add(90 * time.Millisecond)},
		{Subject: "b", At: t0.Add(40 * time.Millisecond)},
		{Subject: "other run", At: t0},
	}
	p := phase{posts: posts}
	p.tally(deliveries(sends, map[string]bool{"a": true, "b": true, "c": true}), span{})
	if p.accepted != 3 || p.rejected != 1 || p.delivered != 2 || p.lost != 1 || p.dupSends != 1 {
		t.Fatalf("accepted %d rejected %d delivered %d lost %d duplicates %d, want 3 1 2 1 1",
			p.accepted, p.rejected, p.delivered, p.lost, p.dupSends)
	}
	// b's latency runs from its 202 to its first accept.
	if got, want := p.e2eLatency, []time.Duration{37 * time.Millisecond, 48 * time.Millisecond}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("end-to-end latencies = %v, want %v", got, want)
	}
	if got := strings.Join(p.problems(), "; "); !strings.Contains(got, "1 of 4 posts not accepted") ||
		!strings.Contains(got, "1 accepted notifications never reached SES") || !strings.Contains(got, "1 duplicate sends") {
		t.Errorf("problems = %q", got)
	}
}

// A small run of the whole command, both modes, on a fresh pipeline each:
// it must deliver everything exactly once and print every figure.
func TestBenchSmallRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the pipeline twice")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, []string{"-n", "400", "-c", "8", "-warmup", "20", "-steady", "100", "-rate", "200", "-visibility", "10s"}, &out)
	t.Logf("bench output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"accepted requests/s", "API latency p99", "end-to-end p99", "SQS requests per delivered notification",
		"SendMessageBatch", "DeleteMessageBatch", "peak RSS email-sender", "CPU s per 1000 notifications, notification-api",
		"400 / 400 / 400", "100 / 100 / 100", "lost / duplicated", "targets (BENCHMARKS.md):",
		"accepted requests/s keyed / without keys", "accepted requests/s keyed ceiling / without keys",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output has no %q", want)
		}
	}
}
