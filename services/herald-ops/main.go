// Command herald-ops is Herald's on-call tool: it shows and redrives the
// dead-letter queue and manages the API keys, against a deployed stack or
// the local pipeline (make dev). `herald-ops -h` lists its commands;
// docs/runbook.md says when to use which.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"herald/services/contract"
	"herald/services/internal/herald"
)

func main() { herald.Main("herald-ops", run) }

// usage lists the commands; the variables are the contract's.
var usage = fmt.Sprintf(`herald-ops: on-call operations for Herald, on a deployed stack or the local pipeline (make dev).

Usage: herald-ops <command> [flags]

Commands:
  dlq list           the dead letters: failure class, reason, first attempt, attempts,
                     addresses masked (-json for JSON); a short peek, nothing deleted
  dlq redrive        move the dead letters back to the queue with SQS's message move
                     task (-rate, -dry-run) and show its progress until it is done
  dlq status         the dead-letter queue's recent move tasks
  dlq cancel         cancel the running move task
  keys add <id>      mint an API key for <id>, store its hash in the API-key secret and
                     wait until the running API uses it; the key is printed once
  keys rotate <id>   replace <id>'s key (the old one stops working), and wait
  keys revoke <id>   remove <id>'s key, and wait until the API refuses it

What they work on comes from flags, else the environment, else a stack outputs
file (-outputs: cdktf's --outputs-file, terraform output -json):
  -queue-url   %-27s output %s
  -dlq-url     %-27s output %s
  -secret-id   %-27s output %s
  -api-url     %-27s output %s
AWS credentials and region as for the AWS CLI; %s and
%s point it at emulators. make dev writes
.dev/herald-ops, which runs it against the local pipeline.

'herald-ops <command> -h' lists a command's flags.
`, contract.QueueURL.Name, outputQueueURL, contract.DLQURL.Name, outputDLQURL,
	contract.APIKeysSecretID.Name, outputSecretARN, contract.OpsAPIURL, outputAPIURL,
	contract.EndpointSQS.Name, contract.EndpointSecretsManager.Name)

// command is one subcommand: its flags and what it does with them.
type command struct {
	name, args, summary string
	// flags registers the command's own flags; run does the work.
	flags func(fs *flag.FlagSet) func(ctx context.Context, e *invocation, args []string) error
	// nargs is how many positional arguments it takes.
	nargs int
	// uses names the target settings (flags) it reads.
	uses []string
}

// invocation is what a command runs with: its target, clients and output.
type invocation struct {
	target
	stdout  io.Writer
	clients clients
	// every is how often progress is polled.
	every time.Duration
}

// clients makes the AWS clients a command needs, once it knows its target.
type clients interface {
	sqs(ctx context.Context, t *target) (sqsAPI, error)
	secrets(ctx context.Context, t *target) (secretsAPI, error)
	http() *http.Client
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	return execute(ctx, args, getenv, stdout, awsClients{getenv: getenv})
}

// execute parses args, finds the command and runs it with cl.
func execute(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, cl clients) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		_, err := io.WriteString(stdout, usage)
		if len(args) == 0 {
			return errors.New("no command given")
		}
		return err
	}
	name := args[0]
	rest := args[1:]
	if len(args) > 1 && !strings.HasPrefix(args[1], "-") {
		name, rest = args[0]+" "+args[1], args[2:]
	}
	var cmd *command
	for i := range commands {
		if commands[i].name == name {
			cmd = &commands[i]
		}
	}
	if cmd == nil {
		return fmt.Errorf("unknown command %q; herald-ops -h lists the commands", name)
	}
	fs := flag.NewFlagSet("herald-ops "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	e := &invocation{stdout: stdout, clients: cl}
	e.register(fs, cmd.uses)
	fs.DurationVar(&e.every, "every", 2*time.Second, "how often to poll progress")
	do := cmd.flags(fs)
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "herald-ops %s %s\n  %s\n\nFlags:\n", cmd.name, cmd.args, cmd.summary)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return nil
		}
		return fmt.Errorf("%s: %w (herald-ops %s -h lists its flags)", cmd.name, err, cmd.name)
	}
	// Flags may also follow the positional argument (keys add team-a -api-url ...).
	positional := fs.Args()
	if len(positional) > cmd.nargs {
		if err := fs.Parse(positional[cmd.nargs:]); err != nil {
			return fmt.Errorf("%s: %w", cmd.name, err)
		}
		positional = append(positional[:cmd.nargs:cmd.nargs], fs.Args()...)
	}
	if len(positional) != cmd.nargs {
		return fmt.Errorf("usage: herald-ops %s %s", cmd.name, cmd.args)
	}
	if e.every <= 0 {
		return fmt.Errorf("-every %s must be positive", e.every)
	}
	if err := e.resolve(getenv); err != nil {
		return err
	}
	return do(ctx, e, positional)
}

var commands = []command{
	{name: "dlq list", args: "[-json] [-max N] [-peek D]", summary: "the dead letters, masked; a short peek, nothing deleted", flags: dlqListFlags, uses: dlqOnly},
	{name: "dlq redrive", args: "[-rate N] [-dry-run] [-timeout D]", summary: "move the dead letters back to the queue (SQS message move task) and follow it", flags: dlqRedriveFlags, uses: queues},
	{name: "dlq status", args: "", summary: "the dead-letter queue's recent move tasks", flags: dlqStatusFlags, uses: dlqOnly},
	{name: "dlq cancel", args: "", summary: "cancel the running move task", flags: dlqCancelFlags, uses: dlqOnly},
	{name: "keys add", args: "<key-id>", summary: "mint a key, store its hash, wait until the API uses it", flags: keysFlags(addKey), nargs: 1, uses: keySettings},
	{name: "keys rotate", args: "<key-id>", summary: "replace a key, wait until the API uses the new one", flags: keysFlags(rotateKey), nargs: 1, uses: keySettings},
	{name: "keys revoke", args: "<key-id>", summary: "remove a key, wait until the API refuses it", flags: keysFlags(revokeKey), nargs: 1, uses: keySettings},
}

var (
	dlqOnly     = []string{"dlq-url"}
	queues      = []string{"dlq-url", "queue-url"}
	keySettings = []string{"secret-id", "api-url"}
)

// awsClients makes the real SDK clients, with the endpoint overrides of the
// environment (the local emulators).
type awsClients struct{ getenv func(string) string }

// config is the SDK configuration for the target's region.
func (c awsClients) config(ctx context.Context, t *target) (aws.Config, error) {
	cfg, err := herald.LoadAWSConfig(ctx, t.region, herald.AWSOptions{})
	if err != nil {
		return aws.Config{}, err
	}
	if cfg.Region == "" {
		return aws.Config{}, errors.New("no AWS region: set -region or AWS_REGION")
	}
	return cfg, nil
}

func (c awsClients) sqs(ctx context.Context, t *target) (sqsAPI, error) {
	cfg, err := c.config(ctx, t)
	if err != nil {
		return nil, err
	}
	return sqs.NewFromConfig(cfg, func(o *sqs.Options) {
		o.BaseEndpoint = herald.Endpoint(c.getenv(contract.EndpointSQS.Name))
	}), nil
}

func (c awsClients) secrets(ctx context.Context, t *target) (secretsAPI, error) {
	cfg, err := c.config(ctx, t)
	if err != nil {
		return nil, err
	}
	return secretsmanager.NewFromConfig(cfg, func(o *secretsmanager.Options) {
		o.BaseEndpoint = herald.Endpoint(c.getenv(contract.EndpointSecretsManager.Name))
	}), nil
}

func (awsClients) http() *http.Client { return &http.Client{Timeout: 10 * time.Second} }
