package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"herald/services/contract"
	"herald/services/devstack"
	"herald/services/devstack/dynamolocal"
	"herald/services/devstack/sesgate"
	"herald/services/devstack/sqslocal"
)

// measured are the processes whose CPU time and peak RSS are reported, in
// report order.
var measured = []devstack.Component{devstack.API, devstack.Sender, devstack.SQS, devstack.SES}

// usage is what the processes and the SQS emulator had used at one moment.
type usage struct {
	at   time.Time
	sqs  sqslocal.Stats
	dyn  dynamolocal.Stats
	pids map[devstack.Component]int
	cpu  map[devstack.Component]time.Duration
	self time.Duration // this process: load generator and SES gate
}

// sample reads the use so far; w, when not nil, is the API's writes-ok
// DynamoDB, whose requests count with the emulator's.
func sample(ctx context.Context, s *devstack.Stack, w *writesOK) (usage, error) {
	u := usage{at: time.Now(), pids: map[devstack.Component]int{}, cpu: map[devstack.Component]time.Duration{}, self: selfCPU()}
	for _, c := range measured {
		pid, ok := s.Running(c)
		if !ok {
			continue // stopped on purpose (the sender, during the accept phase)
		}
		t, err := cpuTime(pid)
		if err != nil {
			return u, fmt.Errorf("%s: %w", c, err)
		}
		u.pids[c], u.cpu[c] = pid, t
	}
	st, err := s.SQSStats(ctx)
	if err != nil {
		return u, err
	}
	u.sqs = st
	u.dyn = dynamolocal.Stats{Operations: map[string]dynamolocal.OpStats{}}
	if d := s.Dynamo(); d != nil {
		u.dyn = d.Stats()
	}
	if w != nil {
		u.dyn = u.dyn.Add(w.Stats())
	}
	return u, nil
}

// span is what was used between two samples.
type span struct {
	elapsed time.Duration
	sqs     map[string]sqslocal.ActionStats
	dyn     dynamolocal.Stats
	cpu     map[devstack.Component]time.Duration
	self    time.Duration
}

// since is the use from a to b. A process started in between (a restarted
// sender) counts from its start.
func since(a, b usage) span {
	sp := span{elapsed: b.at.Sub(a.at), sqs: sqsDelta(a.sqs, b.sqs), dyn: b.dyn.Sub(a.dyn), cpu: map[devstack.Component]time.Duration{}, self: b.self - a.self}
	for c, t := range b.cpu {
		if a.pids[c] == b.pids[c] {
			t -= a.cpu[c]
		}
		sp.cpu[c] = t
	}
	return sp
}

// plus adds two spans of the same run.
func (sp span) plus(o span) span {
	out := span{elapsed: sp.elapsed + o.elapsed, sqs: map[string]sqslocal.ActionStats{}, dyn: dynamolocal.Stats{Operations: map[string]dynamolocal.OpStats{}},
		cpu: map[devstack.Component]time.Duration{}, self: sp.self + o.self}
	out.dyn = sp.dyn.Add(o.dyn)
	for _, m := range []map[string]sqslocal.ActionStats{sp.sqs, o.sqs} {
		for name, a := range m {
			x := out.sqs[name]
			x.Requests += a.Requests
			x.Errors += a.Errors
			x.Entries += a.Entries
			x.Messages += a.Messages
			x.Empty += a.Empty
			x.InFlight = a.InFlight // the later span's
			out.sqs[name] = x
		}
	}
	for _, m := range []map[devstack.Component]time.Duration{sp.cpu, o.cpu} {
		for c, t := range m {
			out.cpu[c] += t
		}
	}
	return out
}

// phase is one measured load and what became of its notifications.
type phase struct {
	posts    []post
	loadTime time.Duration // from the first post to the last answer
	use      span          // from the first post until all were delivered and deleted

	accepted  int
	rejected  int // answered other than 202, or not at all
	delivered int // accepted notifications SES accepted at least once
	lost      int // accepted and never accepted by SES
	dupSends  int // SES accepts beyond the first of a notification
	errs      []string

	apiLatency []time.Duration // sorted, accepted posts only
	e2eLatency []time.Duration // sorted: from the 202 to SES's first accept
}

// result is one mode's figures.
type result struct {
	mode mode
	// burst: the API accepts N notifications while the sender is stopped,
	// then the sender delivers the backlog.
	burst      phase
	accept     span // the API's part
	drain      span // the sender's part, from its start
	drainStart time.Time
	// steady: notifications at a fixed rate through the running pipeline.
	steady phase
	rate   float64

	undeleted int // messages still on the queue at the end
	deadLet   int // messages in the dead-letter queue
	rss       map[devstack.Component]int64
}

// runMode starts a pipeline in mode md, warms it up, runs the burst and the
// steady load, and stops the pipeline.
func runMode(ctx context.Context, o options, md mode, root, logDir string, progress io.Writer) (r *result, err error) {
	apiVariables := map[string]string{
		// The per-key rate limit would be what is measured.
		contract.RateLimit.Name: "0",
	}
	for k, v := range md.apiVariables {
		apiVariables[k] = v
	}
	var w *writesOK
	if md.writesOK {
		if w, err = startWritesOK(); err != nil {
			return nil, err
		}
		defer w.Close()
		apiVariables[contract.EndpointDynamoDB.Name] = w.URL
	}
	cfg := devstack.Config{
		Root:   root,
		BinDir: o.binDir,
		LogDir: logDir,
		// The SES account's send rate must not be what is measured.
		MaxSendRate:       1e6,
		VisibilityTimeout: o.visibility,
		APIVariables:      apiVariables,
		SenderVariables:   md.senderVariables,
		NoStore:           md.noStore,
	}
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	s, err := devstack.Start(startCtx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := s.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("stop the pipeline: %w", cerr))
		}
	}()

	id := runID()
	l := newLoader(s.APIURL(), s.APIKey(), o.concurrency, md.keyed)
	defer l.close()
	r = &result{mode: md, rate: o.rate, rss: map[devstack.Component]int64{}}
	if o.warmup > 0 {
		fmt.Fprintf(progress, "%s: warm-up, %d notifications ...\n", md.name, o.warmup)
		warm := l.run(ctx, fmt.Sprintf("herald-bench %s warm-up #", id), o.warmup, 0)
		if _, err := settle(ctx, s, warm, o.deliverWait); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}

	// Burst: the API alone, then the sender alone.
	fmt.Fprintf(progress, "%s: burst, %d notifications from %d clients while the sender is stopped, then its drain ...\n", md.name, o.notifications, o.concurrency)
	if err := s.Stop(devstack.Sender); err != nil {
		return nil, err
	}
	before, err := sample(ctx, s, w)
	if err != nil {
		return nil, err
	}
	r.burst.posts = l.run(ctx, fmt.Sprintf("herald-bench %s burst #", id), o.notifications, 0)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	accepted, err := sample(ctx, s, w)
	if err != nil {
		return nil, err
	}
	r.accept = since(before, accepted)
	if err := s.Restart(ctx, devstack.Sender); err != nil {
		return nil, err
	}
	got, err := settle(ctx, s, r.burst.posts, o.deliverWait)
	if err != nil {
		return nil, err
	}
	drained, err := sample(ctx, s, w)
	if err != nil {
		return nil, err
	}
	r.drain = since(accepted, drained)
	r.burst.tally(got, r.accept.plus(r.drain))

	// Steady: the whole pipeline at a fixed rate.
	if o.steady > 0 {
		fmt.Fprintf(progress, "%s: steady, %d notifications at %g/s ...\n", md.name, o.steady, o.rate)
		before, err := sample(ctx, s, w)
		if err != nil {
			return nil, err
		}
		r.steady.posts = l.run(ctx, fmt.Sprintf("herald-bench %s steady #", id), o.steady, o.rate)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		got, err := settle(ctx, s, r.steady.posts, o.deliverWait)
		if err != nil {
			return nil, err
		}
		after, err := sample(ctx, s, w)
		if err != nil {
			return nil, err
		}
		r.steady.tally(got, since(before, after))
	}

	st, err := s.SQSStats(ctx)
	if err != nil {
		return nil, err
	}
	q := st.Queues[s.Config().QueueName]
	r.undeleted = q.Visible + q.Hidden
	d := st.Queues[s.Config().DLQName]
	r.deadLet = d.Visible + d.Hidden
	for _, c := range measured {
		pid, ok := s.Running(c)
		if !ok {
			return nil, fmt.Errorf("%s is not running at the end", c)
		}
		if r.rss[c], err = peakRSS(pid); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// delivery is what the SES gate recorded for one notification.
type delivery struct {
	first time.Time
	sends int
}

// settle waits until SES accepted every accepted post of posts and the queue
// holds no message any more, or until wait has passed without a new
// delivery (a slow drain, such as the keyed modes' sender on the DynamoDB
// emulator, is waited for as long as it moves; each extension takes a
// delivery, so the wait is bounded). It returns the gate's record per
// subject of posts.
func settle(ctx context.Context, s *devstack.Stack, posts []post, wait time.Duration) (map[string]delivery, error) {
	want := map[string]bool{}
	for i := range posts {
		if posts[i].accepted() {
			want[posts[i].subject] = true
		}
	}
	gate := s.Gate()
	queue := s.Config().QueueName
	deadline := time.Now().Add(wait)
	var got map[string]delivery
	var lastAccepted int64 = -1
	for {
		// Reading every send is only worth it when the count moved.
		if n := gate.Stats().Accepted; n != lastAccepted {
			lastAccepted = n
			before := len(got)
			got = deliveries(gate.Sends(), want)
			if len(got) > before {
				deadline = time.Now().Add(wait)
			}
		}
		if len(got) == len(want) {
			st, err := s.SQSStats(ctx)
			if err != nil {
				return nil, err
			}
			if d := st.Queues[queue]; d.Visible+d.Hidden == 0 {
				return got, nil
			}
		}
		if time.Now().After(deadline) {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// deliveries picks the sends of the wanted subjects: the first accept and
// how many there were.
func deliveries(sends []sesgate.Send, want map[string]bool) map[string]delivery {
	out := map[string]delivery{}
	for _, x := range sends {
		if !want[x.Subject] {
			continue
		}
		d := out[x.Subject]
		if d.sends == 0 || x.At.Before(d.first) {
			d.first = x.At
		}
		d.sends++
		out[x.Subject] = d
	}
	return out
}

// tally counts outcomes and latencies from the posts and the deliveries.
func (p *phase) tally(got map[string]delivery, use span) {
	p.use = use
	var first, last time.Time
	for i := range p.posts {
		x := &p.posts[i]
		if first.IsZero() || x.start.Before(first) {
			first = x.start
		}
		if x.end.After(last) {
			last = x.end
		}
		if !x.accepted() {
			p.rejected++
			if len(p.errs) < 3 {
				if x.err != nil {
					p.errs = append(p.errs, x.err.Error())
				} else {
					p.errs = append(p.errs, fmt.Sprintf("status %d", x.status))
				}
			}
			continue
		}
		p.accepted++
		p.apiLatency = append(p.apiLatency, x.latency())
		d, ok := got[x.subject]
		if !ok {
			p.lost++
			continue
		}
		p.delivered++
		p.dupSends += d.sends - 1
		p.e2eLatency = append(p.e2eLatency, d.first.Sub(x.end))
	}
	p.loadTime = last.Sub(first)
	sortDurations(p.apiLatency)
	sortDurations(p.e2eLatency)
}

// problems says what makes a phase fail: notifications rejected, lost or
// duplicated.
func (p *phase) problems() []string {
	var out []string
	if p.rejected > 0 {
		out = append(out, fmt.Sprintf("%d of %d posts not accepted (e.g. %s)", p.rejected, len(p.posts), strings.Join(p.errs, "; ")))
	}
	if p.lost > 0 {
		out = append(out, fmt.Sprintf("%d accepted notifications never reached SES", p.lost))
	}
	if p.dupSends > 0 {
		out = append(out, fmt.Sprintf("%d duplicate sends", p.dupSends))
	}
	return out
}

// problems says what makes the run of a mode fail.
func (r *result) problems() string {
	var p []string
	for _, x := range r.burst.problems() {
		p = append(p, "burst: "+x)
	}
	for _, x := range r.steady.problems() {
		p = append(p, "steady: "+x)
	}
	if r.undeleted > 0 {
		p = append(p, fmt.Sprintf("%d messages left on the queue (they would be sent again)", r.undeleted))
	}
	if r.deadLet > 0 {
		p = append(p, fmt.Sprintf("%d messages in the dead-letter queue", r.deadLet))
	}
	return strings.Join(p, ", ")
}

func sortDurations(d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
}

// sqsDelta is after minus before, per action; InFlight is after's.
func sqsDelta(before, after sqslocal.Stats) map[string]sqslocal.ActionStats {
	out := map[string]sqslocal.ActionStats{}
	for name, a := range after.Actions {
		b := before.Actions[name]
		d := sqslocal.ActionStats{
			Requests: a.Requests - b.Requests,
			InFlight: a.InFlight,
			Errors:   a.Errors - b.Errors,
			Entries:  a.Entries - b.Entries,
			Messages: a.Messages - b.Messages,
			Empty:    a.Empty - b.Empty,
		}
		if d.Requests > 0 || d.Messages > 0 || d.InFlight > 0 {
			out[name] = d
		}
	}
	return out
}

// selfCPU is this process's user plus system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runID makes the subjects of one run unique.
func runID() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// machine describes where the benchmark ran.
type machine struct {
	cpus   int
	model  string
	memory string
	goVer  string
}

func describeMachine() machine {
	m := machine{cpus: runtime.NumCPU(), model: "unknown CPU", memory: "unknown", goVer: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && k == "MemTotal" {
				var kb int64
				fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb)
				m.memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
				break
			}
		}
	}
	return m
}
