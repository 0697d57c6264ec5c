// Command cleanup destroys the copies of Herald's stacks that the
// deployed-stack suite (tests/deployed) left behind: a run stopped by its
// timeout, a cancelled job, a runner lost mid-run. The deployed workflow
// runs it before the suite and, always, after it.
//
// It finds copies by name, as the Terraform states of stacks
// "herald-e2e*" (stacks.CICopyPrefix): the local state files
// terraform.herald-e2e*.tfstate in -dir (the repository root, where the
// suite's synth puts them), and the objects herald/herald-e2e*.tfstate in
// the state bucket (-state-bucket, default $HERALD_E2E_STATE_BUCKET), which
// outlive the runner that wrote them. It destroys each with Terraform from
// the state alone: the configuration it writes has only the backend and the
// provider, so Terraform destroys every resource of the state in the order
// of the dependencies the state records, whatever the code that made the
// copy. It never destroys a state whose resources do not carry the copy tag
// (stacks.CopyTag). A state is removed only once it holds no resource.
//
// Then it lists the resources tagged as copies (Resource Groups Tagging
// API) of stacks it found no state for, which it cannot destroy: a copy
// whose runner was lost before Terraform first saved its state, or one
// deployed with local state elsewhere. They are printed as warnings to
// destroy by hand (tests/README.md); KMS keys and secrets are left out, as
// they wait out their deletion windows after any destroy.
//
//	go run ./tests/deployed/cleanup [-dir .] [-state-bucket <bucket>] [-break-locks] [-dry-run]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/resourcegroupstaggingapi"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"herald/stacks"
	"herald/tests/deployed"
)

func main() {
	// Interrupted (a cancelled job), Terraform gets the signal too and
	// stops cleanly, saving the state it has.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "cleanup:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("cleanup", flag.ContinueOnError)
	fs.SetOutput(stdout)
	dir := fs.String("dir", ".", "directory of the local state files (the repository root)")
	bucket := fs.String("state-bucket", getenv(deployed.StateBucketVariable), "S3 bucket of the copies' remote states (default $"+deployed.StateBucketVariable+")")
	region := fs.String("region", firstSet(getenv("AWS_REGION"), getenv("AWS_DEFAULT_REGION")), "region of the state bucket, and of a stack whose state names none (default $AWS_REGION)")
	breakLocks := fs.Bool("break-locks", false, "remove a remote state's lock before destroying it; only when no other run can hold it (the workflow's concurrency group)")
	dryRun := fs.Bool("dry-run", false, "say what would be destroyed, destroy nothing")
	tagged := fs.Bool("tagged", true, "list resources tagged as copies that no state accounts for (needs AWS credentials)")
	terraform := fs.String("terraform", "terraform", "the terraform binary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c := &cleaner{
		out:        stdout,
		prefix:     stacks.StackID(stacks.CICopyPrefix, ""),
		dir:        *dir,
		bucket:     *bucket,
		region:     *region,
		breakLocks: *breakLocks,
		dryRun:     *dryRun,
		terraform:  execTerraform{bin: *terraform, out: stdout},
		annotate:   getenv("GITHUB_ACTIONS") == "true",
	}
	if *bucket != "" || *tagged {
		if *region == "" {
			return errors.New("no region: set AWS_REGION or -region (the state bucket's and the stacks' region)")
		}
		cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(*region))
		if err != nil {
			return fmt.Errorf("AWS configuration: %w", err)
		}
		if *bucket != "" {
			c.s3 = s3.NewFromConfig(cfg)
		}
		if *tagged {
			c.tagging = resourcegroupstaggingapi.NewFromConfig(cfg)
		}
	}
	return c.run(ctx)
}

func firstSet(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
