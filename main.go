// Command herald synthesizes Herald's infrastructure: one Terraform stack per
// environment declared in stacks/environments.go. `cdktf synth` and
// `make synth` run it; see stacks/README.md.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/hashicorp/terraform-cdk-go/cdktf"

	"herald/stacks"

	"herald/services/contract"
)

// meshVariantsVariable set to 1 also synthesizes every environment in the
// mesh mode it is not configured with (stack "herald-<env>-<mode>"), so that
// both modes are always checked. `make synth` sets it.
const meshVariantsVariable = contract.SynthMeshVariants

// stacks.CopyVariable ("<env>:<name>[:<mesh mode>]") synthesizes only a
// throwaway copy of one environment instead (tests/deployed deploys those).

func main() {
	if err := run(os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "herald synth:", err)
		os.Exit(1)
	}
}

func run(getenv func(string) string, stderr io.Writer) error {
	envs := stacks.ApplyImageOverrides(stacks.Environments(), getenv)
	if spec := getenv(stacks.CopyVariable); spec != "" {
		copied, err := stacks.SelectCopy(envs, spec)
		if err != nil {
			return err
		}
		if bucket := getenv(stacks.CopyStateBucketVariable); bucket != "" {
			copied[0].State = stacks.CopyState(bucket)
		}
		envs = copied
	}
	if err := stacks.ValidateAll(envs); err != nil {
		return fmt.Errorf("invalid environment configuration (stacks/environments.go):\n%w", err)
	}
	// cdktf creates its output directory but not the parents of it
	if dir := getenv("CDKTF_OUTDIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("output directory: %w", err)
		}
	}
	app := cdktf.NewApp(nil)
	for _, spec := range stacks.SynthPlan(envs, getenv(meshVariantsVariable) == "1") {
		stack := stacks.NewHeraldStack(app, spec.ID, &stacks.HeraldStackProps{Environment: spec.Environment})
		for _, w := range stack.Warnings {
			fmt.Fprintf(stderr, "WARNING %s: %s\n", spec.ID, w)
		}
	}
	app.Synth()
	fmt.Fprintf(stderr, "synthesized into %s\n", *app.Outdir())
	return nil
}
