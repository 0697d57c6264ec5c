package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/resourcegroupstaggingapi"
	tagtypes "github.com/aws/aws-sdk-go-v2/service/resourcegroupstaggingapi/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"herald/stacks"
)

// state renders a Terraform state (format 4) with the given resources.
func state(resources ...map[string]any) []byte {
	if resources == nil {
		resources = []map[string]any{}
	}
	b, _ := json.Marshal(map[string]any{"version": 4, "terraform_version": "1.11.4", "serial": 3, "lineage": "x", "outputs": map[string]any{}, "resources": resources})
	return b
}

const awsAddress = `provider["registry.terraform.io/hashicorp/aws"]`

func resource(typ, provider string, attributes map[string]any) map[string]any {
	return map[string]any{"mode": "managed", "type": typ, "name": "r", "provider": provider,
		"instances": []any{map[string]any{"schema_version": 0, "attributes": attributes}}}
}

// queue is a resource of a copy of dev: tagged, with its ARN.
func queue(copyOf string) map[string]any {
	tags := map[string]any{"Project": "herald"}
	if copyOf != "" {
		tags[stacks.CopyTag] = copyOf
	}
	return resource("aws_sqs_queue", awsAddress, map[string]any{
		"arn": "arn:aws:sqs:eu-west-1:111111111111:herald-e2eabc-notifications", "tags_all": tags})
}

func TestParseState(t *testing.T) {
	for _, c := range []struct {
		name    string
		state   []byte
		want    stateInfo
		wantErr string
	}{
		{"empty", state(), stateInfo{}, ""},
		{"a copy", state(queue("dev"), resource("aws_iam_role_policy", awsAddress, map[string]any{"name": "p"})),
			stateInfo{resources: 2, providers: []string{awsAddress[10 : len(awsAddress)-2]}, copyOf: "dev", region: "eu-west-1", account: "111111111111"}, ""},
		{"data sources only", state(map[string]any{"mode": "data", "type": "aws_iam_policy_document", "name": "d", "provider": awsAddress, "instances": []any{map[string]any{}}}), stateInfo{}, ""},
		{"not a copy", state(queue("")), stateInfo{resources: 1, providers: []string{"registry.terraform.io/hashicorp/aws"}, region: "eu-west-1", account: "111111111111"}, ""},
		{"alias", state(resource("aws_sqs_queue", awsAddress+".east", map[string]any{})), stateInfo{}, "provider alias"},
		{"old format", []byte(`{"version":3}`), stateInfo{}, "state format 3"},
		{"not JSON", []byte("terraform"), stateInfo{}, "not a Terraform state"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseState(c.state)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil || fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("parseState = %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

func TestDestroyConfig(t *testing.T) {
	info := stateInfo{resources: 1, providers: []string{awsProvider, builtinTerraform}, copyOf: "dev", region: "eu-west-1", account: "111111111111"}
	local, err := destroyConfig(stateRef{path: "terraform.herald-e2eabc.tfstate"}, info, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("terraform.herald-e2eabc.tfstate")
	var doc map[string]any
	if err := json.Unmarshal(local, &doc); err != nil {
		t.Fatal(err)
	}
	// The stack's own region and account, from its state, not the flag's.
	want := map[string]any{
		"terraform": map[string]any{
			"backend":            map[string]any{"local": map[string]any{"path": abs}},
			"required_providers": map[string]any{"aws": map[string]any{"source": "hashicorp/aws", "version": stacks.AWSProviderVersion}},
		},
		"provider": map[string]any{"aws": []any{map[string]any{"region": "eu-west-1", "allowed_account_ids": []any{"111111111111"}}}},
	}
	if fmt.Sprint(doc) != fmt.Sprint(want) {
		t.Errorf("local config\n%s\nwant\n%v", local, want)
	}
	remote, err := destroyConfig(stateRef{bucket: "b", key: "herald/herald-e2eabc.tfstate"}, stateInfo{resources: 1, providers: []string{awsProvider}, copyOf: "dev"}, "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"s3"`, `"bucket": "b"`, `"key": "herald/herald-e2eabc.tfstate"`, `"use_lockfile": true`, `"region": "eu-west-1"`} {
		if !bytes.Contains(remote, []byte(s)) {
			t.Errorf("remote config lacks %s:\n%s", s, remote)
		}
	}
	if bytes.Contains(remote, []byte("allowed_account_ids")) {
		t.Errorf("no account in the state, yet one in the config:\n%s", remote)
	}
	if _, err := destroyConfig(stateRef{path: "x"}, stateInfo{providers: []string{awsProvider}}, ""); err == nil || !strings.Contains(err.Error(), "no region") {
		t.Errorf("no region anywhere: %v", err)
	}
	if _, err := destroyConfig(stateRef{path: "x"}, stateInfo{providers: []string{"registry.terraform.io/hashicorp/google"}}, "eu-west-1"); err == nil || !strings.Contains(err.Error(), "hashicorp/google") {
		t.Errorf("another provider: %v", err)
	}
}

// fakeS3 is an in-memory bucket.
type fakeS3 struct{ objects map[string][]byte }

func (f *fakeS3) ListObjectsV2(_ context.Context, in *s3.ListObjectsV2Input, _ ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	out := &s3.ListObjectsV2Output{}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range f.objects {
			if strings.HasPrefix(k, aws.ToString(in.Prefix)) && !yield(k) {
				return
			}
		}
	}) {
		out.Contents = append(out.Contents, s3types.Object{Key: aws.String(k)})
	}
	return out, nil
}

func (f *fakeS3) GetObject(_ context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	b, ok := f.objects[aws.ToString(in.Key)]
	if !ok {
		return nil, &s3types.NoSuchKey{}
	}
	return &s3.GetObjectOutput{Body: io.NopCloser(bytes.NewReader(b))}, nil
}

func (f *fakeS3) DeleteObject(_ context.Context, in *s3.DeleteObjectInput, _ ...func(*s3.Options)) (*s3.DeleteObjectOutput, error) {
	delete(f.objects, aws.ToString(in.Key))
	return &s3.DeleteObjectOutput{}, nil
}

// fakeTerraform records its calls and, on destroy, runs onDestroy with the
// configuration it was given.
type fakeTerraform struct {
	calls     []string
	onDestroy func(config map[string]any)
}

func (f *fakeTerraform) Run(_ context.Context, dir string, args ...string) error {
	f.calls = append(f.calls, args[0])
	if args[0] != "destroy" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, "main.tf.json"))
	if err != nil {
		return err
	}
	var config map[string]any
	if err := json.Unmarshal(b, &config); err != nil {
		return err
	}
	f.onDestroy(config)
	return nil
}

func backendOf(config map[string]any) map[string]any {
	return config["terraform"].(map[string]any)["backend"].(map[string]any)
}

func TestCleanerLocal(t *testing.T) {
	for _, c := range []struct {
		name string
		// given the state of herald-e2eabc, and what the destroy leaves
		state, after []byte
		dryRun       bool
		// then
		wantErr     string
		wantCalls   []string
		wantRemoved bool
	}{
		{name: "a copy is destroyed", state: state(queue("dev")), after: state(), wantCalls: []string{"init", "destroy"}, wantRemoved: true},
		{name: "an empty state is removed", state: state(), wantRemoved: true},
		{name: "dry run", state: state(queue("dev")), dryRun: true},
		{name: "not a copy", state: state(queue("")), wantErr: "none tagged HeraldCopyOf"},
		{name: "resources remain", state: state(queue("dev")), after: state(queue("dev")), wantCalls: []string{"init", "destroy"}, wantErr: "1 resources remain"},
		{name: "not a state", state: []byte("{"), wantErr: "not a Terraform state"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "terraform.herald-e2eabc.tfstate")
			os.WriteFile(path, c.state, 0o644)
			os.WriteFile(path+".backup", c.state, 0o644)
			// the real stack's state and another copy's name never match
			for _, other := range []string{"terraform.herald-dev.tfstate", "terraform.herald-e2x.tfstate", "terraform.herald-e2eabc.tfstate.backup2"} {
				os.WriteFile(filepath.Join(dir, other), state(queue("")), 0o644)
			}
			tf := &fakeTerraform{onDestroy: func(config map[string]any) {
				if got := backendOf(config)["local"].(map[string]any)["path"]; got != path {
					t.Errorf("destroy with the local state %v, want %s", got, path)
				}
				os.WriteFile(path, c.after, 0o644)
			}}
			var out bytes.Buffer
			cl := &cleaner{out: &out, prefix: "herald-e2e", dir: dir, dryRun: c.dryRun, terraform: tf}
			err := cl.run(context.Background())
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Fatalf("error %v, want %q\n%s", err, c.wantErr, &out)
			}
			if !slices.Equal(tf.calls, c.wantCalls) {
				t.Errorf("terraform %v, want %v", tf.calls, c.wantCalls)
			}
			for _, p := range []string{path, path + ".backup"} {
				if _, err := os.Stat(p); os.IsNotExist(err) != c.wantRemoved {
					t.Errorf("%s removed: %v, want %v", filepath.Base(p), os.IsNotExist(err), c.wantRemoved)
				}
			}
			for _, other := range []string{"terraform.herald-dev.tfstate", "terraform.herald-e2x.tfstate", "terraform.herald-e2eabc.tfstate.backup2"} {
				if _, err := os.Stat(filepath.Join(dir, other)); err != nil {
					t.Errorf("%s touched: %v", other, err)
				}
			}
			if c.wantErr != "" && !strings.Contains(out.String(), "WARNING herald-e2eabc left behind") {
				t.Errorf("no warning printed:\n%s", &out)
			}
		})
	}
}

func TestCleanerRemote(t *testing.T) {
	const key = "herald/herald-e2eabc.tfstate"
	for _, c := range []struct {
		name       string
		objects    map[string][]byte
		breakLocks bool
		wantErr    string
		wantCalls  []string
		wantLeft   []string
	}{
		{name: "a copy is destroyed",
			objects:   map[string][]byte{key: state(queue("dev")), "herald/herald-dev.tfstate": state(queue(""))},
			wantCalls: []string{"init", "destroy"}, wantLeft: []string{"herald/herald-dev.tfstate"}},
		{name: "an empty state is removed", objects: map[string][]byte{key: state()}},
		{name: "locked", objects: map[string][]byte{key: state(queue("dev")), key + ".tflock": []byte(`{"Who":"runner@gh"}`)},
			wantErr: `locked ({"Who":"runner@gh"})`, wantLeft: []string{key, key + ".tflock"}},
		{name: "lock broken", breakLocks: true, objects: map[string][]byte{key: state(queue("dev")), key + ".tflock": []byte(`{"Who":"runner@gh"}`)},
			wantCalls: []string{"init", "destroy"}},
		{name: "other objects", objects: map[string][]byte{"herald/herald-e2eabc.tfstate.backup": state(queue("dev")), "herald/herald-e2e/x.tfstate": state(queue("dev"))},
			wantLeft: []string{"herald/herald-e2e/x.tfstate", "herald/herald-e2eabc.tfstate.backup"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			bucket := &fakeS3{objects: c.objects}
			tf := &fakeTerraform{onDestroy: func(config map[string]any) {
				s3 := backendOf(config)["s3"].(map[string]any)
				if s3["bucket"] != "states" || s3["key"] != key || s3["use_lockfile"] != true {
					t.Errorf("destroy with the backend %v", s3)
				}
				if _, locked := bucket.objects[key+".tflock"]; locked {
					t.Error("destroy while the lock is there")
				}
				bucket.objects[key] = state()
			}}
			var out bytes.Buffer
			cl := &cleaner{out: &out, prefix: "herald-e2e", dir: t.TempDir(), bucket: "states", region: "eu-west-1", breakLocks: c.breakLocks, terraform: tf, s3: bucket}
			err := cl.run(context.Background())
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Fatalf("error %v, want %q\n%s", err, c.wantErr, &out)
			}
			if !slices.Equal(tf.calls, c.wantCalls) {
				t.Errorf("terraform %v, want %v", tf.calls, c.wantCalls)
			}
			var left []string
			for k := range bucket.objects {
				left = append(left, k)
			}
			slices.Sort(left)
			if !slices.Equal(left, c.wantLeft) {
				t.Errorf("objects left %v, want %v", left, c.wantLeft)
			}
		})
	}
}

type fakeTagging struct{ mappings []tagtypes.ResourceTagMapping }

func (f fakeTagging) GetResources(_ context.Context, in *resourcegroupstaggingapi.GetResourcesInput, _ ...func(*resourcegroupstaggingapi.Options)) (*resourcegroupstaggingapi.GetResourcesOutput, error) {
	if len(in.TagFilters) != 1 || aws.ToString(in.TagFilters[0].Key) != stacks.CopyTag {
		return nil, fmt.Errorf("filters %v", in.TagFilters)
	}
	return &resourcegroupstaggingapi.GetResourcesOutput{ResourceTagMappingList: f.mappings}, nil
}

func tagged(arn, env string) tagtypes.ResourceTagMapping {
	return tagtypes.ResourceTagMapping{ResourceARN: aws.String(arn), Tags: []tagtypes.Tag{
		{Key: aws.String(stacks.CopyTag), Value: aws.String("dev")}, {Key: aws.String(stacks.EnvironmentTag), Value: aws.String(env)}}}
}

// Given a copy destroyed just now (still listed), a copy with no state, its
// key in its deletion window, and a copy outside the prefix: only the
// stateless copy is a warning, with its resources.
func TestReportTagged(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "terraform.herald-e2eaaa.tfstate"), state(), 0o644)
	var out bytes.Buffer
	cl := &cleaner{out: &out, prefix: "herald-e2e", dir: dir, annotate: true, terraform: &fakeTerraform{}, tagging: fakeTagging{[]tagtypes.ResourceTagMapping{
		tagged("arn:aws:sqs:eu-west-1:111111111111:herald-e2eaaa-notifications", "e2eaaa"),
		tagged("arn:aws:ec2:eu-west-1:111111111111:vpc/vpc-0123", "e2ezzz"),
		tagged("arn:aws:ecs:eu-west-1:111111111111:cluster/herald-e2ezzz", "e2ezzz"),
		tagged("arn:aws:kms:eu-west-1:111111111111:key/1234", "e2ezzz"),
		tagged("arn:aws:secretsmanager:eu-west-1:111111111111:secret:herald-e2ezzz/api-key-hashes-AbCdEf", "e2ezzz"),
		tagged("arn:aws:sqs:eu-west-1:111111111111:herald-mine-notifications", "mine"),
	}}}
	if err := cl.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	want := "::warning::herald-e2ezzz: no state found, 2 resources tagged HeraldCopyOf remain; destroy them by hand (tests/README.md): " +
		"arn:aws:ec2:eu-west-1:111111111111:vpc/vpc-0123 arn:aws:ecs:eu-west-1:111111111111:cluster/herald-e2ezzz\n"
	if !strings.Contains(got, want) {
		t.Errorf("output\n%s\nlacks\n%s", got, want)
	}
	if !strings.Contains(got, "herald-e2eaaa: the tagging API still lists 1 resources") || strings.Contains(got, "::warning::herald-e2eaaa") {
		t.Errorf("the copy destroyed just now:\n%s", got)
	}
	if strings.Contains(got, "herald-mine") || strings.Contains(got, ":kms:") || strings.Contains(got, "secretsmanager") {
		t.Errorf("reported what it should not:\n%s", got)
	}
}

func TestRunFlags(t *testing.T) {
	getenv := func(string) string { return "" }
	if err := run(context.Background(), []string{"extra"}, getenv, io.Discard); err == nil || !strings.Contains(err.Error(), "unexpected arguments") {
		t.Errorf("an argument: %v", err)
	}
	if err := run(context.Background(), []string{"-state-bucket", "b"}, getenv, io.Discard); err == nil || !strings.Contains(err.Error(), "no region") {
		t.Errorf("a bucket without a region: %v", err)
	}
	// Nothing to do locally, no AWS asked.
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-dir", t.TempDir(), "-tagged=false"}, getenv, &out); err != nil || !strings.Contains(out.String(), "no state of a herald-e2e* stack") {
		t.Errorf("run: %v\n%s", err, &out)
	}
}

// With the real terraform, offline: a state of three terraform_data
// resources, each depending on the one before, tagged as a copy, with its
// configuration gone. The cleanup destroys all three from the state alone
// and removes the state.
func TestDestroyWithTerraform(t *testing.T) {
	bin, err := exec.LookPath("terraform")
	if err != nil {
		t.Skip("terraform is not on PATH: the destroy through a real terraform is not checked here (the unit tests above still are)")
	}
	dir := t.TempDir()
	statePath := filepath.Join(dir, "terraform.herald-e2eint.tfstate")
	made := t.TempDir()
	config := fmt.Sprintf(`{
  "terraform": {"backend": {"local": {"path": %q}}},
  "resource": {"terraform_data": {
    "a": {"input": {"tags_all": {%q: "dev"}}},
    "b": {"input": "${terraform_data.a.id}"},
    "c": {"input": "${terraform_data.b.id}"}
  }}
}`, statePath, stacks.CopyTag)
	if err := os.WriteFile(filepath.Join(made, "main.tf.json"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"init", "-input=false", "-no-color"}, {"apply", "-auto-approve", "-input=false", "-no-color"}} {
		cmd := exec.Command(bin, append([]string{"-chdir=" + made}, args...)...)
		cmd.Env = append(os.Environ(), "CHECKPOINT_DISABLE=1")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("terraform %s: %v\n%s", args[0], err, b)
		}
	}
	b, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := parseState(b); err != nil || info.resources != 3 || info.copyOf != "dev" {
		t.Fatalf("the state made: %+v %v", info, err)
	}
	os.RemoveAll(made) // the configuration is gone, as on a new runner

	var out bytes.Buffer
	if err := run(context.Background(), []string{"-dir", dir, "-tagged=false", "-terraform", bin}, func(string) string { return "" }, &out); err != nil {
		t.Fatalf("cleanup: %v\n%s", err, &out)
	}
	for _, want := range []string{"herald-e2eint: a copy of dev with 3 resources", "Destroy complete! Resources: 3 destroyed.", "herald-e2eint: destroyed; removing the state"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, &out)
		}
	}
	// c goes before b before a: the order the state recorded
	order := []int{strings.Index(out.String(), "terraform_data.c: Destroying"), strings.Index(out.String(), "terraform_data.b: Destroying"), strings.Index(out.String(), "terraform_data.a: Destroying")}
	if order[0] < 0 || order[0] > order[1] || order[1] > order[2] {
		t.Errorf("destroyed in the order %v (c, b, a):\n%s", order, &out)
	}
	if _, err := os.Stat(statePath); !os.IsNotExist(err) {
		t.Errorf("the state is still there: %v", err)
	}
}
