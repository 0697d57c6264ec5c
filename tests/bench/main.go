// Command bench (`make bench`) measures Herald's local pipeline under a
// bounded load. It starts the pipeline (services/devstack: the SQS emulator,
// the SES v2 emulator behind the SES gate, the email sender and the
// notification API, each its own process on loopback) and, after a warm-up,
// runs two loads from a Go load generator:
//
//   - burst: a fixed number of notifications posted back to back by a fixed
//     number of clients while the sender is stopped (the API's throughput
//     and latency, its SQS sends), then the sender started to deliver that
//     backlog (its throughput, receives and deletes);
//   - steady: a fixed number of notifications at a fixed rate through the
//     running pipeline (end-to-end latency from the 202 to SES's accept, and
//     the SQS requests when the queue is nearly empty).
//
// It prints SQS requests per delivered notification (counted at the
// emulator, by action), CPU seconds per 1,000 notifications and peak RSS of
// each process, does all this with batching on (the services' defaults) and
// off (one SQS call per message at every step), each on a fresh pipeline,
// with every post carrying an Idempotency-Key (DynamoDB requests per
// notification, counted at the DynamoDB emulator's proxy), and keyed again
// with the API's DynamoDB writes answered at once (keyed-ceiling,
// writesok.go: the API's own ceiling with keys, where the emulator is the
// keyed mode's), and prints the ratios and which of the targets in
// BENCHMARKS.md are met. It exits
// non-zero when a notification was rejected, lost or duplicated.
// BENCHMARKS.md explains the figures.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"herald/services/contract"
	"herald/services/devstack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	notifications int
	concurrency   int
	warmup        int
	steady        int
	rate          float64
	modes         []mode
	visibility    time.Duration
	deliverWait   time.Duration
	logDir        string
	binDir        string
}

// mode is one configuration of the pipeline the load runs against.
type mode struct {
	name                          string
	apiVariables, senderVariables map[string]string
	// keyed: every post carries an Idempotency-Key of its own.
	keyed bool
	// noStore: the pipeline runs without the state store and SES feedback
	// (devstack.Config.NoStore). The batching modes measure the SQS path
	// alone: the local DynamoDB emulator (dynalite, one Node.js process)
	// would be the ceiling of every figure with the sender's two writes per
	// notification, and the SES gate's feedback events (SNS's SendMessage
	// on AWS) would count as the pipeline's SQS requests (BENCHMARKS.md).
	// The keyed mode runs with the store.
	noStore bool
	// writesOK: the API's DynamoDB is the bench's writes-ok endpoint
	// (writesok.go) instead of the emulator, which the sender keeps.
	writesOK bool
}

var modes = map[string]mode{
	// The services' defaults: the API coalesces concurrent sends into
	// SendMessageBatch, the sender receives and deletes in tens.
	"on": {name: "batching on", noStore: true},
	// One SQS call per message at every step: SendMessage, ReceiveMessage
	// of one, DeleteMessage.
	"off": {
		name:            "batching off",
		noStore:         true,
		apiVariables:    map[string]string{contract.BatchLinger.Name: "0"},
		senderVariables: map[string]string{contract.ReceiveBatch.Name: "1", contract.DeleteBatch.Name: "1"},
	},
	// The defaults, every post with an Idempotency-Key (a conditional
	// write to the state store before the queue, one after), and the
	// sender's claim and record in the store.
	"keyed": {name: "keyed", keyed: true},
	// keyed, but the API's writes answered at once (writesok.go): the
	// API's own ceiling with keys, where locally the emulator is the
	// ceiling of the keyed mode. The sender keeps the emulator.
	"keyed-ceiling": {name: "keyed ceiling", keyed: true, writesOK: true},
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	var modeList string
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.notifications, "n", 20000, "notifications of the burst: posted by the clients back to back while the sender is stopped, then delivered")
	fs.IntVar(&o.concurrency, "c", 32, "concurrent clients posting notifications")
	fs.IntVar(&o.warmup, "warmup", 2000, "notifications posted (and delivered) before the measured runs")
	fs.IntVar(&o.steady, "steady", 6000, "notifications of the steady run, posted at -rate through the running pipeline (0: no steady run)")
	fs.Float64Var(&o.rate, "rate", 300, "notifications per second of the steady run")
	fs.StringVar(&modeList, "modes", "on,off,keyed,keyed-ceiling", "comma list of modes to run, in order: on (batching), off (one SQS call per message), keyed (on, each post with an Idempotency-Key), keyed-ceiling (keyed, the API's DynamoDB writes answered at once: its own ceiling)")
	fs.DurationVar(&o.visibility, "visibility", 30*time.Second, "the queue's visibility timeout (whole seconds)")
	fs.DurationVar(&o.deliverWait, "deliver-wait", 0, "how long the wait for every accepted notification to reach SES after the load ends may go without a new delivery (default: twice the visibility timeout plus 10s)")
	fs.StringVar(&o.logDir, "logs", "", "keep the components' logs here, one folder per mode (default: a temporary folder, removed)")
	fs.StringVar(&o.binDir, "bin", "", "use the binaries in this folder instead of building them")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case o.notifications < 1 || o.notifications > 1_000_000:
		return o, fmt.Errorf("-n %d: want 1 to 1000000", o.notifications)
	case o.concurrency < 1 || o.concurrency > 1024:
		return o, fmt.Errorf("-c %d: want 1 to 1024", o.concurrency)
	case o.warmup < 0 || o.warmup > 1_000_000:
		return o, fmt.Errorf("-warmup %d: want 0 to 1000000", o.warmup)
	case o.steady < 0 || o.steady > 1_000_000:
		return o, fmt.Errorf("-steady %d: want 0 to 1000000", o.steady)
	case !(o.rate > 0 && o.rate <= 100_000):
		return o, fmt.Errorf("-rate %g: want more than 0, at most 100000", o.rate)
	case o.visibility < time.Second || o.visibility%time.Second != 0:
		return o, fmt.Errorf("-visibility %s: want whole seconds, at least 1s", o.visibility)
	case o.deliverWait < 0:
		return o, fmt.Errorf("-deliver-wait %s must not be negative", o.deliverWait)
	}
	if o.deliverWait == 0 {
		o.deliverWait = 2*o.visibility + 10*time.Second
	}
	seen := map[string]bool{}
	for _, name := range strings.Split(modeList, ",") {
		name = strings.TrimSpace(name)
		m, ok := modes[name]
		if !ok {
			return o, fmt.Errorf("-modes: unknown mode %q (want on, off, keyed, keyed-ceiling)", name)
		}
		if seen[name] {
			return o, fmt.Errorf("-modes: %q twice", name)
		}
		seen[name] = true
		o.modes = append(o.modes, m)
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	o, err := parseFlags(args, os.Stderr)
	if err != nil {
		return err
	}
	root, err := devstack.FindRoot(".")
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "herald-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if o.binDir == "" {
		o.binDir = filepath.Join(tmp, "bin")
		fmt.Fprintln(stdout, "building the services and the SQS emulator ...")
		if err := devstack.Build(ctx, root, o.binDir); err != nil {
			return err
		}
	}
	logRoot := o.logDir
	if logRoot == "" {
		logRoot = filepath.Join(tmp, "logs")
	}

	m := describeMachine()
	printHeader(stdout, o, m)
	var results []*result
	for _, md := range o.modes {
		fmt.Fprintf(stdout, "\n%s: starting a fresh pipeline ...\n", md.name)
		r, err := runMode(ctx, o, md, root, filepath.Join(logRoot, strings.ReplaceAll(md.name, " ", "-")), stdout)
		if err != nil {
			return fmt.Errorf("%s: %w", md.name, err)
		}
		results = append(results, r)
	}
	fmt.Fprintln(stdout)
	printResults(stdout, o, results)
	var bad []string
	for _, r := range results {
		if p := r.problems(); p != "" {
			bad = append(bad, r.mode.name+": "+p)
		}
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}
