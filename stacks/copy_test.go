package stacks

import (
	"sort"
	"strings"
	"testing"

	"github.com/aws/jsii-runtime-go"
	"github.com/hashicorp/terraform-cdk-go/cdktf"
)

func TestSelectCopy(t *testing.T) {
	envs := Environments()
	for _, c := range []struct{ spec, wantErr string }{
		{"dev", "want <environment>:<name>"},
		{"dev:", "want <environment>:<name>"},
		{"qa:e2etest", `no environment "qa"`},
		{"dev:prod", "already an environment's name"},
		{"dev:e2etest:istio", `mesh mode "istio"`},
		{"dev:e2etest:appmesh:x", "want <environment>:<name>"},
	} {
		if _, err := SelectCopy(envs, c.spec); err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("SelectCopy(%q): error %v, want one saying %q", c.spec, err, c.wantErr)
		}
	}
	// Given prod, which keeps remote state, protects its load balancer,
	// mails on-call and manages its identity: the copy does none of that.
	got, err := SelectCopy(envs, "prod:e2eabc123:appmesh")
	if err != nil || len(got) != 1 {
		t.Fatalf("SelectCopy: %v %v", got, err)
	}
	c := got[0]
	if c.Name != "e2eabc123" || c.State != (StateConfig{}) || c.Email.ManageIdentity || c.Ingress.DeletionProtection || c.Store.DeletionProtection ||
		!c.Repositories.ForceDelete || c.Observability.AlarmEmail != "" || c.Mesh.Mode != MeshAppMesh || c.Tags["HeraldCopyOf"] != "prod" {
		t.Errorf("copy of prod: %+v", c)
	}
	if c.Email.Identity != "herald.example.com" || c.Account != "222222222222" || c.API.MinTasks != 3 {
		t.Errorf("the copy lost the original's identity, account or sizing: %+v", c)
	}
	// Every environment's copy is valid, in both modes.
	for _, e := range envs {
		for _, mode := range []MeshMode{"", MeshServiceConnect, MeshAppMesh} {
			if err := e.Copy("e2e1a2b3c", mode).Validate(); err != nil {
				t.Errorf("copy of %s (%q): %v", e.Name, mode, err)
			}
		}
	}
}

// A copy synthesizes the same resources under the same construct ids as its
// original (less the SES identity it does not manage), with no resource
// name of the original left: it deploys beside it.
func TestCopySynthesizesBesideOriginal(t *testing.T) {
	var dev builtStack
	for _, s := range allStacks(t) {
		if s.id == "herald-dev" {
			dev = s
		}
	}
	got, err := SelectCopy(Environments(), "dev:e2etest")
	if err != nil {
		t.Fatal(err)
	}
	app := cdktf.Testing_App(nil)
	h := NewHeraldStack(app, StackID(got[0].Name, ""), &HeraldStackProps{Environment: got[0]})
	text := *cdktf.Testing_Synth(h.TerraformStack, jsii.Bool(false))
	copied := decode(t, text)

	addresses := func(d tfDoc) []string {
		var out []string
		for typ, byName := range d["resource"].(map[string]any) {
			// the copy neither manages the identity nor owns the domain
			if typ == "aws_sesv2_email_identity" || typ == "aws_route53_record" {
				continue
			}
			for name := range byName.(map[string]any) {
				out = append(out, typ+"."+name)
			}
		}
		sort.Strings(out)
		return out
	}
	want, have := addresses(dev.doc), addresses(copied)
	if strings.Join(want, "\n") != strings.Join(have, "\n") {
		t.Errorf("the copy's resource addresses differ from dev's:\n dev:  %v\n copy: %v", want, have)
	}
	if len(copied.resources("aws_sesv2_email_identity")) != 0 {
		t.Error("the copy manages the SES identity")
	}
	if len(dev.doc.resources("aws_route53_record")) != 1 || len(copied.resources("aws_route53_record")) != 0 {
		t.Error("the copy takes over the original's domain (or dev has none)")
	}
	if strings.Contains(text, "herald-dev") {
		i := strings.Index(text, "herald-dev")
		t.Errorf("the copy still names something after the original: ...%s...", text[max(0, i-80):min(len(text), i+40)])
	}
	if !strings.Contains(text, "herald-e2etest") {
		t.Error("the copy's resources are not named after it")
	}
}

// Given a state bucket, a copy keeps its state there under StateKey,
// locked with a lock file; every stack pins the provider version the
// cleanup of copies destroys with.
func TestCopyRemoteState(t *testing.T) {
	got, err := SelectCopy(Environments(), "dev:e2estate")
	if err != nil {
		t.Fatal(err)
	}
	c := got[0]
	c.State = CopyState("herald-ci-state")
	if err := c.Validate(); err != nil {
		t.Fatalf("a copy with remote state: %v", err)
	}
	app := cdktf.Testing_App(nil)
	h := NewHeraldStack(app, StackID(c.Name, ""), &HeraldStackProps{Environment: c})
	doc := decode(t, *cdktf.Testing_Synth(h.TerraformStack, jsii.Bool(false)))
	tf := block(doc["terraform"])
	s3 := block(block(tf["backend"])["s3"])
	if s3["bucket"] != "herald-ci-state" || s3["key"] != "herald/herald-e2estate.tfstate" || s3["key"] != StateKey("herald-e2estate") ||
		s3["region"] != c.Region || s3["use_lockfile"] != true || s3["encrypt"] != true {
		t.Errorf("backend %v", s3)
	}
	if aws := block(block(tf["required_providers"])["aws"]); aws["version"] != AWSProviderVersion || aws["source"] != "aws" && aws["source"] != "hashicorp/aws" {
		t.Errorf("required provider %v, want hashicorp/aws %s", aws, AWSProviderVersion)
	}
	for name, r := range doc.resources("aws_sqs_queue") {
		if strings.Contains(mustJSON(r), CopyTag) {
			t.Errorf("queue %s sets the copy tag itself; it is a provider default tag", name)
		}
	}
	if tags := block(blocks(doc["provider"].(map[string]any)["aws"])[0]["default_tags"]); block(tags["tags"])[CopyTag] != "dev" {
		t.Errorf("provider default tags %v, want %s=dev", tags, CopyTag)
	}
}
