package stacks

import (
	"flag"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/aws/jsii-runtime-go"
	"github.com/hashicorp/terraform-cdk-go/cdktf"
)

// addressesFile records every resource and data source address of the
// stacks below. Construct ids are Terraform addresses: an address that
// disappears is a resource Terraform destroys (and, renamed, creates anew).
const addressesFile = "testdata/addresses.txt"

var updateAddresses = flag.Bool("update-addresses", false, "rewrite "+addressesFile+" from the synthesized stacks")

// addressStacks are the stacks whose addresses are recorded: every declared
// environment in both mesh modes, and the paths those leave out (SMTP, an
// existing VPC, an internal load balancer, the CI role).
func addressStacks(t *testing.T) map[string]tfDoc {
	t.Helper()
	docs := map[string]tfDoc{}
	for _, s := range allStacks(t) {
		docs[s.id] = s.doc
	}
	other := validEnv()
	other.Network = NetworkConfig{SkipEndpoints: true, Existing: &ExistingNetwork{
		VPCID:            "vpc-0123456789abcdef0",
		PublicSubnetIDs:  []string{"subnet-0a000001", "subnet-0a000002"},
		PrivateSubnetIDs: []string{"subnet-0b000001", "subnet-0b000002"},
	}}
	other.Ingress = IngressConfig{Internal: true}
	other.Email = EmailConfig{Transport: "smtp", SMTPAddr: "smtp.example.com:587", DefaultFrom: "no-reply@example.com"}
	extra := map[string]Environment{
		"herald-test-smtp": other,
		"herald-dev-ci":    devWithCI(CIConfig{Repository: "acme/herald"}),
	}
	for id, env := range extra {
		app := cdktf.Testing_App(nil)
		h := NewHeraldStack(app, id, &HeraldStackProps{Environment: env})
		docs[id] = decode(t, *cdktf.Testing_Synth(h.TerraformStack, jsii.Bool(false)))
	}
	return docs
}

// addresses lists "<stack> <type>.<name>" for every resource and data
// source, sorted.
func addresses(docs map[string]tfDoc) []string {
	var out []string
	for id, doc := range docs {
		for _, kind := range []string{"resource", "data"} {
			byType, _ := doc[kind].(map[string]any)
			for typ, byName := range byType {
				names, _ := byName.(map[string]any)
				for name := range names {
					prefix := ""
					if kind == "data" {
						prefix = "data."
					}
					out = append(out, id+" "+prefix+typ+"."+name)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestResourceAddressesStay fails when a refactor changes the address of a
// resource (a renamed or re-nested construct id): Terraform would destroy
// it and create a new one. New addresses are only reported. A deliberate
// removal or move (with a `moved` block, stacks/README.md) is recorded with
// go test ./stacks -run TestResourceAddressesStay -update-addresses.
func TestResourceAddressesStay(t *testing.T) {
	got := addresses(addressStacks(t))
	if *updateAddresses {
		if err := os.WriteFile(addressesFile, []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	data, err := os.ReadFile(addressesFile)
	if err != nil {
		t.Fatalf("%v (record it with -update-addresses)", err)
	}
	want := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(want) < 100 {
		t.Fatalf("%s holds %d addresses: not a record of the stacks", addressesFile, len(want))
	}
	for _, a := range want {
		if !slices.Contains(got, a) {
			t.Errorf("address gone: %s (Terraform would destroy it; a rename creates it anew)", a)
		}
	}
	var added []string
	for _, a := range got {
		if !slices.Contains(want, a) {
			added = append(added, a)
		}
	}
	if len(added) > 0 {
		t.Logf("%d new addresses (record them with -update-addresses):\n%s", len(added), strings.Join(added, "\n"))
	}
}
