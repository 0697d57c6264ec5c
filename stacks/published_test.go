package stacks

import (
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/dataawsssmparameter"
)

// publishedReference is a value that names a resource: an ARN, URL, name
// or DNS name attribute, possibly inside a URL.
var publishedReference = regexp.MustCompile(`\$\{([a-z0-9_.]+)\.([A-Za-z0-9_-]+)\.([a-z_]+)\}`)

// publishedLiteral is a value known at synth: a URL, an ARN, a log group
// or a resource name.
var publishedLiteral = regexp.MustCompile(`^(https://[^\s]+|arn:aws[a-z-]*:[a-z0-9-]+:[^\s]+|/herald/[a-z0-9/-]+|[a-z0-9-]+)$`)

// notSecret returns why a published value may hold a secret, or nil.
func notSecret(value string) error {
	for _, m := range publishedReference.FindAllStringSubmatch(value, -1) {
		typ, attr := m[1], m[3]
		switch {
		case strings.Contains(typ, "secret_version") || strings.Contains(typ, "random_password") || strings.Contains(typ, "access_key"):
			return fmt.Errorf("refers to %s, which holds a secret", typ)
		case !slices.Contains([]string{"arn", "url", "name", "dns_name", "id"}, attr):
			return fmt.Errorf("refers to the attribute %s of %s: only names, URLs and ARNs are published", attr, typ)
		}
	}
	if literal := publishedReference.ReplaceAllString(value, "x"); !publishedLiteral.MatchString(literal) {
		return fmt.Errorf("%q is not a URL, ARN or name", value)
	}
	if regexp.MustCompile(`[0-9a-f]{64}|hrld_|PRIVATE KEY|AKIA[0-9A-Z]{16}`).MatchString(value) {
		return fmt.Errorf("%q looks like a key, hash or credential", value)
	}
	return nil
}

func TestNotSecret(t *testing.T) {
	for _, c := range []struct {
		value string
		ok    bool
	}{
		{"${aws_sqs_queue.queue_140BE0E7.url}", true},
		{"${aws_secretsmanager_secret.secrets_api-key-hashes_F489FEAC.arn}", true},
		{"https://${aws_lb.ingress_load-balancer_1.dns_name}", true},
		{"/herald/herald-dev/notification-api", true},
		{"https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#dashboards:name=herald-dev", true},
		{"${aws_secretsmanager_secret_version.secrets_id-secret-initial_1.secret_string}", false},
		{"${data.aws_secretsmanager_random_password.secrets_id-secret-value_1.random_password}", false},
		{"${aws_iam_access_key.k.secret}", false},
		{"${aws_sqs_queue.q.policy}", false},
		{"team-a:" + strings.Repeat("ab", 32), false},
		{`{"team-a": "x"}`, false},
	} {
		if err := notSecret(c.value); (err == nil) != c.ok {
			t.Errorf("notSecret(%q) = %v, want ok %v", c.value, err, c.ok)
		}
	}
}

// TestPublishedParametersHoldNoSecrets: every stack publishes, under
// /herald/<environment>, String parameters holding names, URLs and ARNs
// only, and the ones service teams need.
func TestPublishedParametersHoldNoSecrets(t *testing.T) {
	forEachStack(t, func(t *testing.T, s builtStack) {
		prefix := ParameterPath(s.env.Name) + "/"
		var names []string
		for _, p := range s.doc.resources("aws_ssm_parameter") {
			name, ok := strings.CutPrefix(str(p["name"]), prefix)
			if !ok {
				continue
			}
			names = append(names, name)
			if p["type"] != "String" {
				t.Errorf("%s: type %v, want String", p["name"], p["type"])
			}
			if err := notSecret(str(p["value"])); err != nil {
				t.Errorf("%s: %v", p["name"], err)
			}
		}
		for _, need := range []string{"api-url", "queue-url", "queue-arn", "dlq-url", "dlq-arn", "api-keys-secret-arn", "api-log-group", "sender-log-group", "dashboard-url"} {
			if !slices.Contains(names, need) {
				t.Errorf("no parameter %s%s (issue 15)", prefix, need)
			}
		}
	})
}

// The README's snippets use these bindings: they exist in the pinned
// provider (a rename fails to compile here).
var (
	_ = dataawsssmparameter.NewDataAwsSsmParameter
	_ = dataawsssmparameter.DataAwsSsmParameterConfig{Name: nil}
	_ = dataawsssmparameter.DataAwsSsmParameter.Value
)

// TestReadmeSnippetsReadPublishedParameters holds the root README's section
// for service teams to the stacks: its parameter table lists exactly what
// a stack publishes, and every parameter its HCL, Go and curl snippets read
// exists, in a declared environment; the Go snippet parses.
func TestReadmeSnippetsReadPublishedParameters(t *testing.T) {
	text, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(string(text), "## For service teams")
	if start < 0 {
		t.Fatal("README.md has no section \"For service teams\"")
	}
	section := string(text[start:])
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	published := map[string][]string{} // environment -> names
	for _, s := range allStacks(t) {
		if s.id != StackID(s.env.Name, "") {
			continue // the mesh variants publish the same names
		}
		for _, p := range s.doc.resources("aws_ssm_parameter") {
			if name, ok := strings.CutPrefix(str(p["name"]), ParameterPath(s.env.Name)+"/"); ok {
				published[s.env.Name] = append(published[s.env.Name], name)
			}
		}
	}
	block := func(lang string) string {
		m := regexp.MustCompile("(?s)```" + lang + "\n(.*?)```").FindStringSubmatch(section)
		if m == nil {
			t.Fatalf("the section has no %s block", lang)
		}
		return m[1]
	}
	type use struct{ where, environment, name string }
	var uses []use
	hcl := block("hcl")
	local := regexp.MustCompile(`herald = "/herald/([a-z0-9]+)"`).FindStringSubmatch(hcl)
	if local == nil {
		t.Fatal("the HCL snippet sets no local herald = \"/herald/<environment>\"")
	}
	for _, m := range regexp.MustCompile(`name = "\$\{local\.herald\}/([a-z0-9-]+)"`).FindAllStringSubmatch(hcl, -1) {
		uses = append(uses, use{"HCL", local[1], m[1]})
	}
	goSnippet := block("go")
	if _, err := parser.ParseFile(token.NewFileSet(), "snippet.go", "package snippet\n"+goSnippet, 0); err != nil {
		t.Errorf("the Go snippet does not parse: %v", err)
	}
	if !strings.Contains(goSnippet, `"/herald/" + environment + "/" + name`) {
		t.Error("the Go snippet does not build the names as ParameterPath does")
	}
	for _, m := range regexp.MustCompile(`heraldParameter\(stack, "([a-z0-9]+)", "([a-z0-9-]+)"\)`).FindAllStringSubmatch(goSnippet, -1) {
		uses = append(uses, use{"Go", m[1], m[2]})
	}
	for _, m := range regexp.MustCompile(`--name /herald/([a-z0-9]+)/([a-z0-9-]+)`).FindAllStringSubmatch(block("sh"), -1) {
		uses = append(uses, use{"curl", m[1], m[2]})
	}
	if len(uses) < 5 {
		t.Fatalf("found only %v in the snippets", uses)
	}
	for _, u := range uses {
		if !slices.Contains(published[u.environment], u.name) {
			t.Errorf("the %s snippet reads /herald/%s/%s, which no stack publishes (have %v)", u.where, u.environment, u.name, published[u.environment])
		}
	}
	// The table: every published name, and no other.
	var listed []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9-]+)`(?:, `([a-z0-9-]+)`)?").FindAllStringSubmatch(section, -1) {
		for _, n := range m[1:] {
			if n != "" {
				listed = append(listed, n)
			}
		}
	}
	slices.Sort(listed)
	for env, names := range published {
		slices.Sort(names)
		if !slices.Equal(listed, names) {
			t.Errorf("the README's table lists %v, %s publishes %v", listed, env, names)
		}
	}
}
