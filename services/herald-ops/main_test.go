package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// -h lists every command; a command's -h its flags; mistakes name the way out.
func TestUsage(t *testing.T) {
	out, err := runWith(t, &fakeClients{}, nil, "-h")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range commands {
		if !strings.Contains(out, "  "+c.name) {
			t.Errorf("-h does not list %q", c.name)
		}
	}
	out, err = runWith(t, &fakeClients{}, nil, "dlq", "redrive", "-h")
	if err != nil || !strings.Contains(out, "-rate") || !strings.Contains(out, "-dry-run") || !strings.Contains(out, "HERALD_DLQ_URL") || strings.Contains(out, "-secret-id") {
		t.Errorf("dlq redrive -h: %v\n%s", err, out)
	}
	cl := &fakeClients{}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no command"},
		{[]string{"dlq"}, `unknown command "dlq"`},
		{[]string{"purge", "all"}, `unknown command "purge all"`},
		{[]string{"dlq", "list", "-nope"}, "flag provided but not defined: -nope"},
		{[]string{"keys", "add"}, "usage: herald-ops keys add <key-id>"},
		{[]string{"keys", "add", "a", "b"}, "usage: herald-ops keys add <key-id>"},
		{[]string{"dlq", "list"}, "missing -dlq-url (or HERALD_DLQ_URL, or output dlq_url with -outputs)"},
		{[]string{"dlq", "redrive"}, "missing -dlq-url"},
		{[]string{"dlq", "list", "-every", "0s", "-dlq-url", testDLQURL}, "-every 0s must be positive"},
	} {
		if _, err := runWith(t, cl, nil, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.args, err, tc.want)
		}
	}
	if len(cl.made) != 0 {
		t.Errorf("clients made for calls that were refused: %v", cl.made)
	}
	// The real entry point refuses the same way (no AWS call).
	if err := run(context.Background(), []string{"nope"}, func(string) string { return "" }, &strings.Builder{}); err == nil {
		t.Error("run accepted an unknown command")
	}
}

// Each setting comes from its flag, else its variable, else the stack
// outputs file, in any of the forms the tools write.
func TestTargetResolution(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flat := write("flat.json", `{"dlq_url": "from-flat", "queue_url": "q-flat", "dashboard_name": "d", "count": 3}`)
	terraform := write("tf.json", `{"dlq_url": {"value": "from-terraform", "type": "string", "sensitive": false}, "api_url": {"value": "http://alb", "type": "string"}}`)
	oneStack := write("one.json", `{"herald-dev": {"dlq_url": "from-cdktf", "api_keys_secret_arn": "arn:aws:secretsmanager:eu-west-1:1:secret:x"}}`)
	twoStacks := write("two.json", `{"herald-dev": {"dlq_url": "dev"}, "herald-prod": {"dlq_url": "prod"}}`)
	notJSON := write("bad.json", `dlq_url=x`)

	cases := []struct {
		name    string
		env     map[string]string
		args    []string
		wantDLQ string
		wantErr string
	}{
		{name: "flat file", args: []string{"-outputs", flat}, wantDLQ: "from-flat"},
		{name: "terraform output -json", args: []string{"-outputs", terraform}, wantDLQ: "from-terraform"},
		{name: "cdktf outputs file, one stack", args: []string{"-outputs", oneStack}, wantDLQ: "from-cdktf"},
		{name: "two stacks need -stack", args: []string{"-outputs", twoStacks}, wantErr: "herald-dev, herald-prod: choose one with -stack"},
		{name: "-stack chooses", args: []string{"-outputs", twoStacks, "-stack", "herald-prod"}, wantDLQ: "prod"},
		{name: "HERALD_STACK chooses", env: map[string]string{"HERALD_OUTPUTS": twoStacks, "HERALD_STACK": "herald-dev"}, wantDLQ: "dev"},
		{name: "unknown stack", args: []string{"-outputs", twoStacks, "-stack", "herald-qa"}, wantErr: `no stack "herald-qa"`},
		{name: "variable beats the file", env: map[string]string{"HERALD_DLQ_URL": "from-env"}, args: []string{"-outputs", flat}, wantDLQ: "from-env"},
		{name: "flag beats the variable", env: map[string]string{"HERALD_DLQ_URL": "from-env"}, args: []string{"-dlq-url", "from-flag"}, wantDLQ: "from-flag"},
		{name: "missing file", args: []string{"-outputs", filepath.Join(dir, "none.json")}, wantErr: "stack outputs"},
		{name: "not JSON", args: []string{"-outputs", notJSON}, wantErr: "not a JSON object"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got target
			cl := &recordTarget{got: &got}
			err := execute(context.Background(), append([]string{"dlq", "status"}, tc.args...), func(k string) string { return tc.env[k] }, &strings.Builder{}, cl)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != errRecorded {
				t.Fatalf("error %v", err)
			}
			if got.dlqURL != tc.wantDLQ {
				t.Errorf("dlq URL %q, want %q", got.dlqURL, tc.wantDLQ)
			}
		})
	}
	if r := regionOf("", "https://sqs.eu-central-1.amazonaws.com/1/q"); r != "eu-central-1" {
		t.Errorf("region from a queue URL: %q", r)
	}
	if r := regionOf("http://127.0.0.1:4566/000000000000/q", "arn:aws:secretsmanager:ap-south-1:1:secret:x"); r != "ap-south-1" {
		t.Errorf("region from an ARN: %q", r)
	}
	if r := regionOf("http://127.0.0.1:4566/000000000000/q"); r != "" {
		t.Errorf("region from a local URL: %q", r)
	}
}

// recordTarget stops a command at its first client, keeping its target.
type recordTarget struct {
	fakeClients
	got *target
}

var errRecorded = errorString("target recorded")

type errorString string

func (e errorString) Error() string { return string(e) }

func (r *recordTarget) sqs(_ context.Context, t *target) (sqsAPI, error) {
	*r.got = *t
	return nil, errRecorded
}
