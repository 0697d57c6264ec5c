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
	if c.Name != "e2eabc123" || c.State != (StateConfig{}) || c.Email.ManageIdentity || c.Ingress.DeletionProtection ||
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
