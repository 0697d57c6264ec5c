package stacks

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/aws/jsii-runtime-go"
	"github.com/hashicorp/terraform-cdk-go/cdktf"
)

// tfDoc is a synthesized stack, decoded.
type tfDoc map[string]any

// synthConstruct builds a construct in a fresh testing app and stack and
// returns the synthesized JSON.
func synthConstruct(t *testing.T, build func(stack cdktf.TerraformStack)) tfDoc {
	t.Helper()
	app := cdktf.Testing_App(nil)
	stack := cdktf.NewTerraformStack(app, jsii.String("test"))
	build(stack)
	return decode(t, *cdktf.Testing_Synth(stack, jsii.Bool(false)))
}

func decode(t *testing.T, text string) tfDoc {
	t.Helper()
	var doc tfDoc
	if err := json.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatalf("synthesized JSON: %v", err)
	}
	return doc
}

func (d tfDoc) section(kind, typ string) map[string]map[string]any {
	out := map[string]map[string]any{}
	all, _ := d[kind].(map[string]any)
	byName, _ := all[typ].(map[string]any)
	for name, v := range byName {
		out[name], _ = v.(map[string]any)
	}
	return out
}

// resources of one type by logical name.
func (d tfDoc) resources(typ string) map[string]map[string]any { return d.section("resource", typ) }

// data sources of one type by logical name.
func (d tfDoc) data(typ string) map[string]map[string]any { return d.section("data", typ) }

// only returns the single resource of a type.
func (d tfDoc) only(t *testing.T, typ string) map[string]any {
	t.Helper()
	rs := d.resources(typ)
	if len(rs) != 1 {
		t.Fatalf("want one %s, have %d", typ, len(rs))
	}
	for _, r := range rs {
		return r
	}
	return nil
}

// named returns the resource of a type whose logical name contains part.
func (d tfDoc) named(t *testing.T, typ, part string) map[string]any {
	t.Helper()
	return d.resources(typ)[logicalName(t, d, typ, part)]
}

// logicalName is the one logical name of a type that contains part.
func logicalName(t *testing.T, d tfDoc, typ, part string) string {
	t.Helper()
	var found []string
	for name := range d.resources(typ) {
		if strings.Contains(name, part) {
			found = append(found, name)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s named *%s*, have %v", typ, part, found)
	}
	return found[0]
}

func block(v any) map[string]any {
	switch b := v.(type) {
	case map[string]any:
		return b
	case []any:
		if len(b) == 1 {
			m, _ := b[0].(map[string]any)
			return m
		}
	}
	return nil
}

func blocks(v any) []map[string]any {
	switch b := v.(type) {
	case map[string]any:
		return []map[string]any{b}
	case []any:
		var out []map[string]any
		for _, e := range b {
			if m, ok := e.(map[string]any); ok {
				out = append(out, m)
			}
		}
		return out
	}
	return nil
}

func strs(t *testing.T, v any) []string {
	t.Helper()
	return list(v)
}

func num(v any) float64 {
	f, _ := v.(float64)
	return f
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// container is the part of an ECS container definition the tests read.
type container struct {
	Name                   string `json:"name"`
	Image                  string `json:"image"`
	User                   string `json:"user"`
	ReadonlyRootFilesystem bool   `json:"readonlyRootFilesystem"`
	StopTimeout            int    `json:"stopTimeout"`
	Variables              []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"environment"`
	Secrets []struct {
		Name      string `json:"name"`
		ValueFrom string `json:"valueFrom"`
	} `json:"secrets"`
	PortMappings []struct {
		Name          string `json:"name"`
		ContainerPort int    `json:"containerPort"`
	} `json:"portMappings"`
	HealthCheck *struct {
		Command []string `json:"command"`
	} `json:"healthCheck"`
	DependsOn []struct {
		ContainerName string `json:"containerName"`
		Condition     string `json:"condition"`
	} `json:"dependsOn"`
	LogConfiguration struct {
		LogDriver string            `json:"logDriver"`
		Options   map[string]string `json:"options"`
	} `json:"logConfiguration"`
}

func (c container) variables() map[string]string {
	out := map[string]string{}
	for _, e := range c.Variables {
		out[e.Name] = e.Value
	}
	return out
}

func (c container) secrets() map[string]string {
	out := map[string]string{}
	for _, e := range c.Secrets {
		out[e.Name] = e.ValueFrom
	}
	return out
}

// containers decodes a task definition's container definitions.
func containers(t *testing.T, taskDefinition map[string]any) map[string]container {
	t.Helper()
	text, _ := taskDefinition["container_definitions"].(string)
	var list []container
	if err := json.Unmarshal([]byte(text), &list); err != nil {
		t.Fatalf("container definitions %.80q: %v", text, err)
	}
	out := map[string]container{}
	for _, c := range list {
		out[c.Name] = c
	}
	return out
}

// mustPanic runs f and returns the message it panicked with.
func mustPanic(t *testing.T, f func()) (msg string) {
	t.Helper()
	defer func() {
		r := recover()
		if r == nil {
			t.Fatal("want a panic, got none")
		}
		if err, ok := r.(error); ok {
			msg = err.Error()
		} else {
			msg, _ = r.(string)
		}
	}()
	f()
	return ""
}
