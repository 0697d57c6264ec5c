// Command herald-dev (`make dev`) runs Herald's whole pipeline on this
// machine: it builds the binaries, starts the SQS emulator, the SES v2
// emulator behind the SES gate, the Secrets Manager emulator, the email
// sender and the notification API on loopback, prints their URLs, a
// development API key and a ready curl line, writes <dir>/herald-ops (the
// on-call tool, set up for this pipeline), and stops everything on Ctrl-C
// (SIGINT) or SIGTERM.
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
	"strconv"
	"strings"
	"syscall"
	"time"

	"herald/services/contract"
	"herald/services/devstack"
	"herald/services/internal/herald"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "herald-dev:", err)
		os.Exit(1)
	}
}

type options struct {
	dir                                             string
	apiAddr, senderAddr, sqsAddr, sesAddr, gateAddr string
	maxSendRate                                     float64
	logs                                            bool
	logLevel                                        string
}

// parseFlags reads flags, each defaulting to an environment variable, so
// `make dev` can be configured either way.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("herald-dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	// str and flag register a flag that defaults to its variable, named in
	// its usage.
	str := func(p *string, name, variable, def, usage string) {
		if v := getenv(variable); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, usage+" ["+variable+"]")
	}
	str(&o.dir, "dir", contract.DevDir, "", "directory for built binaries and logs (default .dev at the repository root)")
	str(&o.apiAddr, "api-addr", contract.DevAPIAddr, "", "notification API listen address, e.g. 127.0.0.1:8080 (default: a free port)")
	str(&o.senderAddr, "sender-addr", contract.DevSenderAddr, "", "email sender health address (default: a free port)")
	str(&o.sqsAddr, "sqs-addr", contract.DevSQSAddr, "", "SQS emulator address (default: a free port)")
	str(&o.sesAddr, "ses-addr", contract.DevSESAddr, "", "SES emulator address, where the sent-mail page is (default: a free port)")
	str(&o.gateAddr, "gate-addr", contract.DevGateAddr, "", "SES gate address (default: a free port)")
	rate := 200.0
	if v := getenv(contract.DevMaxSendRate); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			return o, fmt.Errorf("%s %q is not a positive number", contract.DevMaxSendRate, v)
		}
		rate = f
	}
	fs.Float64Var(&o.maxSendRate, "max-send-rate", rate, "the local SES account's sends per second ["+contract.DevMaxSendRate+"]")
	logs := getenv(contract.DevLogs)
	fs.BoolVar(&o.logs, "logs", logs == "" || logs == "true", "also print the services' logs here, prefixed, on stderr ["+contract.DevLogs+"]")
	str(&o.logLevel, "log-level", contract.LogLevel.Name, contract.LogLevel.Default, "herald-dev's own log level")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.maxSendRate <= 0 {
		return o, fmt.Errorf("-max-send-rate %g must be positive", o.maxSendRate)
	}
	return o, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	o, err := parseFlags(args, getenv, os.Stderr)
	if err != nil {
		return err
	}
	stderr := herald.NewSyncWriter(os.Stderr)
	log := herald.NewLogger(stderr, o.logLevel, "local", "herald-dev")

	root, err := devstack.FindRoot(".")
	if err != nil {
		return err
	}
	if o.dir == "" {
		o.dir = filepath.Join(root, ".dev")
	}
	binDir, logDir := filepath.Join(o.dir, "bin"), filepath.Join(o.dir, "logs")

	fmt.Fprintln(stdout, "Building the services and the SQS emulator ...")
	start := time.Now()
	if err := devstack.Build(ctx, root, binDir); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Built in %s. Starting the pipeline ...\n", time.Since(start).Round(100*time.Millisecond))

	cfg := devstack.Config{
		Root:        root,
		BinDir:      binDir,
		LogDir:      logDir,
		Logger:      log,
		SQSAddr:     o.sqsAddr,
		SESAddr:     o.sesAddr,
		GateAddr:    o.gateAddr,
		APIAddr:     o.apiAddr,
		SenderAddr:  o.senderAddr,
		MaxSendRate: o.maxSendRate,
	}
	if o.logs {
		cfg.Echo = stderr
	}
	stack, err := devstack.Start(ctx, cfg)
	if err != nil {
		return err
	}
	ops := filepath.Join(o.dir, devstack.BinHeraldOps)
	if err := writeOpsWrapper(ops, filepath.Join(binDir, devstack.BinHeraldOps), stack.OpsVariables()); err != nil {
		return errors.Join(err, stack.Close())
	}
	defer os.Remove(ops) // it names this run's ports
	printSummary(stdout, stack, root, ops)

	// Run until Ctrl-C, or until a component dies on its own.
	var died error
	select {
	case <-ctx.Done():
	case c := <-exitedAny(stack):
		died = fmt.Errorf("%s exited on its own (%v); see %s", c, stack.ExitErr(c), stack.LogPath(c))
	}
	fmt.Fprintln(stdout, "Stopping ...")
	closeErr := stack.Close()
	if died == nil && closeErr == nil {
		fmt.Fprintln(stdout, "Stopped.")
	}
	return errors.Join(died, closeErr)
}

// exitedAny yields the first component whose process exits.
func exitedAny(s *devstack.Stack) <-chan devstack.Component {
	components := s.Components()
	ch := make(chan devstack.Component, len(components))
	for _, c := range components {
		go func() {
			<-s.Exited(c)
			ch <- c
		}()
	}
	return ch
}

// CurlBody is the notification the printed curl line sends.
const CurlBody = `{"to":["alice@example.com"],"subject":"Hello from Herald","text":"It works.","html":"<p>It <b>works</b>.</p>"}`

// CurlLine is a shell command that posts one notification to the API.
func CurlLine(apiURL, key string) string {
	return "curl -sS -i -X POST " + shellQuote(apiURL+"/api/notifications") +
		" -H " + shellQuote("Authorization: Bearer "+key) +
		" -H " + shellQuote("Content-Type: application/json") +
		" -d " + shellQuote(CurlBody)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// writeOpsWrapper writes an executable script that runs herald-ops with the
// pipeline's settings, so `.dev/herald-ops dlq list` works as on a stack.
func writeOpsWrapper(path, bin string, env []string) error {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# herald-ops on the local pipeline of this herald-dev run (make dev); removed when it stops.\nexec env")
	for _, kv := range env {
		b.WriteString(" " + shellQuote(kv))
	}
	b.WriteString(" " + shellQuote(bin) + " \"$@\"\n")
	if err := os.WriteFile(path, []byte(b.String()), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func printSummary(w io.Writer, s *devstack.Stack, root, ops string) {
	rel := func(p string) string {
		if r, err := filepath.Rel(root, p); err == nil && !strings.HasPrefix(r, "..") {
			return r
		}
		return p
	}
	cfg := s.Config()
	fmt.Fprintf(w, `
Herald is running locally. Press Ctrl-C to stop everything.

  Notification API    %s   (POST /api/notifications, /api/notifications/batch)
  Email sender        %s/healthz
  Sent mail (SES)     %s/   open in a browser; JSON at /store
  SES gate            %s   (verified: %s; max %g sends/s)
  SQS endpoint        %s
  Queue               %s
  Dead-letter queue   %s
  SES feedback queue  %s   (the gate's events of configuration set %s; the sender applies them)
  Secrets Manager     %s   (API-key secret %s, read every %s)
  DynamoDB            %s   (state store table %s)
  Logs                %s/{api,sender,sqs,ses,dynamodb}.log

  Dev API key         %s
  On-call tool        %s dlq list   (dlq redrive, keys add <id>, ...: -h lists them)

Send a notification (expect HTTP/1.1 202 Accepted), then open the sent-mail page:

%s

A From address at example.net passes the API but is not verified at SES:
its notification ends in the dead-letter queue (the on-call tool's dlq list shows it).
`,
		s.APIURL(), s.SenderURL(), s.SESURL(), s.GateURL(), strings.Join(cfg.Verified, ", "), cfg.MaxSendRate,
		s.SQSEndpoint(), s.QueueURL(), s.DLQURL(), s.FeedbackURL(), devstack.ConfigurationSet, s.SecretsURL(), s.KeysSecretID(), cfg.KeysRefresh,
		s.Dynamo().Endpoint, s.StoreTable(),
		rel(s.LogDir()), s.APIKey(), rel(ops),
		CurlLine(s.APIURL(), s.APIKey()))
}
