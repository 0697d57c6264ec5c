// Package deployed is Herald's deployed-stack end-to-end suite: it
// synthesizes a throwaway copy of a configured environment under a unique
// name, deploys it to AWS with Terraform, checks it end to end and destroys
// it. It costs money and needs an AWS account, so it runs only when
// HERALD_E2E_AWS=1 (tests/README.md); a plain `go test ./...` skips it and
// needs neither Terraform nor credentials.
package deployed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/gruntwork-io/terratest/modules/random"
	"github.com/gruntwork-io/terratest/modules/terraform"

	"herald/services/devstack"
	"herald/stacks"
)

// Variables that drive the suite.
const (
	// GateVariable must be 1 for anything to be deployed.
	GateVariable = "HERALD_E2E_AWS"
	// BaseVariable names the environment of stacks/environments.go to copy
	// (default dev): its account, region, sizing and SES identity.
	BaseVariable = "HERALD_E2E_ENV"
	// ModesVariable lists the mesh modes to deploy, each its own stack,
	// in parallel (default "serviceconnect"; "appmesh" is skipped: AWS
	// ended App Mesh on 2026-09-30).
	ModesVariable = "HERALD_E2E_MODES"
)

// kmsLogGroupRace is the error a first apply can stop with when CloudWatch
// Logs uses the logs key before its new key policy is visible to it
// (terraform-provider-aws issue 29282). stacks/README.md's first-deploy
// steps say to run the deploy again; the suite retries the apply the same
// way.
const kmsLogGroupRace = `(?s).*The specified KMS key does not exist or is not allowed to be used with Arn.*log-group.*`

// skipMessage says how to run the suite and what it costs.
const skipMessage = `deployed-stack suite skipped: it deploys real AWS resources into your account and costs money
(about US$0.35 per run; tests/README.md has the estimate).
To run it (Terraform >= 1.5, AWS credentials for the environment's account, a verified SES identity):
  make push                                   # prints HERALD_API_IMAGE=... HERALD_SENDER_IMAGE=...
  export HERALD_API_IMAGE=<repository>@sha256:... HERALD_SENDER_IMAGE=<repository>@sha256:...
  HERALD_E2E_AWS=1 go test -v -timeout 90m ./tests/deployed
Optional: HERALD_E2E_ENV=<environment to copy, default dev>`

func TestDeployedStack(t *testing.T) {
	if os.Getenv(GateVariable) != "1" {
		t.Skip(skipMessage)
	}
	base := envOr(BaseVariable, "dev")
	for _, v := range []string{"HERALD_API_IMAGE", "HERALD_SENDER_IMAGE"} {
		if !strings.Contains(os.Getenv(v), "@sha256:") {
			t.Fatalf("%s is not set to an image digest: push the images first (`make push` prints both variables) and export them", v)
		}
	}
	for _, mode := range strings.Split(envOr(ModesVariable, "serviceconnect"), ",") {
		mode := strings.TrimSpace(mode)
		t.Run(mode, func(t *testing.T) {
			if mode == "appmesh" {
				t.Skip("AWS ended App Mesh on 2026-09-30: an appmesh stack cannot be deployed (creating the mesh fails); " +
					"the mode is synthesized and tested by go test ./stacks/ only")
			}
			t.Parallel()
			deployAndCheck(t, base, mode)
		})
	}
}

func envOr(name, def string) string {
	if v := strings.TrimSpace(os.Getenv(name)); v != "" {
		return v
	}
	return def
}

// deployAndCheck deploys one copy in one mesh mode, checks it and destroys
// it, whatever happens in between.
func deployAndCheck(t *testing.T, base, mode string) {
	ctx := context.Background()
	start := time.Now()
	// Environment names are lower-case letters and digits, at most 10.
	name := stacks.CICopyPrefix + strings.ToLower(random.UniqueId())
	stack := stacks.StackID(name, "")
	root, err := devstack.FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := synth(t, root, base, name, mode)
	doc := readStack(t, dir)
	t.Logf("synthesized %s (a copy of %s in %s mode) into %s", stack, base, mode, dir)

	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(doc.region))
	if err != nil {
		t.Fatalf("AWS configuration: %v", err)
	}
	preflight(t, ctx, cfg, doc)

	opts := applyOptions(t, dir)
	defer func() {
		terraform.Destroy(t, opts)
		// Local state lives at the repository root; gone with the stack.
		os.Remove(filepath.Join(root, "terraform."+stack+".tfstate"))
		os.Remove(filepath.Join(root, "terraform."+stack+".tfstate.backup"))
		t.Logf("destroyed %s after %s", stack, time.Since(start).Round(time.Second))
	}()

	// stacks/README.md, first deploy, step 3: deploy (again, if the logs
	// key's policy was not yet usable).
	terraform.InitAndApply(t, opts)
	t.Logf("applied %s in %s", stack, time.Since(start).Round(time.Second))

	d := &deployment{t: t, ctx: ctx, cfg: cfg, stack: stack, mode: mode, start: start, out: outputs(t, opts)}
	d.check()
}

// applyOptions are Terratest's options for the stack in dir: Terratest's
// retries for transient errors, and the first-apply KMS race, retried
// after the key policy has had time to propagate.
func applyOptions(t *testing.T, dir string) *terraform.Options {
	opts := terraform.WithDefaultRetryableErrors(t, &terraform.Options{TerraformDir: dir, NoColor: true})
	opts.RetryableTerraformErrors[kmsLogGroupRace] = "the logs key's policy was not yet usable by CloudWatch Logs (provider issue 29282): deploy again"
	opts.MaxRetries = 3
	opts.TimeBetweenRetries = 30 * time.Second
	return opts
}

// synth runs the cdktf app (main.go) as `cdktf synth` does, for a copy of
// base named name in mode, into a fresh directory, and returns the stack's
// directory.
func synth(t *testing.T, root, base, name, mode string) string {
	t.Helper()
	out := t.TempDir()
	cmd := exec.Command("go", "run", ".")
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"CDKTF_OUTDIR="+out,
		"HERALD_SYNTH_COPY="+base+":"+name+":"+mode,
		"HERALD_SYNTH_MESH_VARIANTS=",
		stacks.CopyStateBucketVariable+"="+os.Getenv(StateBucketVariable),
		"CHECKPOINT_DISABLE=1",
		"JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION=1",
	)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("synth %s: %v\n%s", name, err, b)
	}
	return filepath.Join(out, "stacks", "herald-"+name)
}

// stackDoc is what the suite reads from the synthesized stack.
type stackDoc struct {
	region, account string
	defaultFrom     string
	resources       map[string]map[string]json.RawMessage
}

func readStack(t *testing.T, dir string) stackDoc {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "cdk.tf.json"))
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Provider struct {
			AWS []struct {
				Region            string   `json:"region"`
				AllowedAccountIDs []string `json:"allowed_account_ids"`
			} `json:"aws"`
		} `json:"provider"`
		Resource map[string]map[string]json.RawMessage `json:"resource"`
	}
	if err := json.Unmarshal(b, &raw); err != nil || len(raw.Provider.AWS) != 1 || len(raw.Provider.AWS[0].AllowedAccountIDs) != 1 {
		t.Fatalf("synthesized stack in %s: %v (want one aws provider with one allowed account)", dir, err)
	}
	doc := stackDoc{region: raw.Provider.AWS[0].Region, account: raw.Provider.AWS[0].AllowedAccountIDs[0], resources: raw.Resource}
	for _, r := range raw.Resource["aws_ssm_parameter"] {
		var p struct{ Name, Value string }
		if json.Unmarshal(r, &p) == nil && strings.HasSuffix(p.Name, "/default-from") {
			doc.defaultFrom = p.Value
		}
	}
	if doc.defaultFrom == "" {
		t.Fatal("the stack has no default-from parameter: the suite needs the SES transport")
	}
	return doc
}

// preflight fails early, before anything is deployed, when the credentials
// are for another account than the environment's or SES cannot send as
// the default sender.
func preflight(t *testing.T, ctx context.Context, cfg aws.Config, doc stackDoc) {
	t.Helper()
	id, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("AWS credentials: %v", err)
	}
	if aws.ToString(id.Account) != doc.account {
		t.Fatalf("the credentials are for account %s; the environment is configured for %s (stacks/environments.go)", aws.ToString(id.Account), doc.account)
	}
	ses := sesv2.NewFromConfig(cfg)
	from := doc.defaultFrom
	candidates := []string{from, from[strings.LastIndexByte(from, '@')+1:]}
	var seen []string
	for _, c := range candidates {
		out, err := ses.GetEmailIdentity(ctx, &sesv2.GetEmailIdentityInput{EmailIdentity: aws.String(c)})
		if err != nil {
			seen = append(seen, fmt.Sprintf("%s: %v", c, err))
			continue
		}
		if out.VerifiedForSendingStatus {
			return
		}
		seen = append(seen, c+": not verified")
	}
	t.Fatalf("SES in %s cannot send as %s; verify the identity first (%s)", doc.region, from, strings.Join(seen, "; "))
}

// outputs reads the stack outputs the suite uses.
func outputs(t *testing.T, opts *terraform.Options) map[string]string {
	t.Helper()
	all, err := terraform.OutputAllE(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range all {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	for _, k := range []string{"api_url", "queue_url", "dlq_url", "cluster_name", "api_service_name", "sender_service_name",
		"api_log_group_name", "sender_log_group_name", "api_keys_secret_arn", "mesh_mode", "table_name", "table_arn", "parameter_path", "dashboard_url"} {
		if out[k] == "" {
			t.Fatalf("stack output %s is missing", k)
		}
	}
	return out
}

var errNotYet = errors.New("not yet")
