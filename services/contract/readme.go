package contract

import (
	"fmt"
	"slices"
	"strings"
)

// README sections rendered from the contract: services/README.md holds
// each between a begin and an end marker, and a test fails when what is
// there differs from what these render.
const (
	SettingsSection = "settings"
	MetricsSection  = "metrics"
)

// Sections renders every section by name.
func Sections() map[string]string {
	return map[string]string{SettingsSection: settingsTables(), MetricsSection: metricsTable()}
}

// BeginMarker and EndMarker delimit a rendered section in Markdown.
func BeginMarker(section string) string {
	return "<!-- contract:" + section + " (rendered from services/contract; go test ./services/contract -run README -update) -->"
}

func EndMarker(section string) string { return "<!-- /contract:" + section + " -->" }

func settingsTables() string {
	groups := []struct {
		title   string
		readers []Service
	}{
		{"Both services", []Service{API, Sender}},
		{"notification-api", []Service{API}},
		{"email-sender", []Service{Sender}},
	}
	var b strings.Builder
	b.WriteString("The column *in a stack* says how a task of a deployed stack gets the value: " +
		"*set* by the stack (as a plain variable, or as an ECS secret from an SSM parameter or Secrets Manager), " +
		"*tunable* (the default, unless `ServiceConfig.Tuning` of the environment sets it; stacks/README.md) " +
		"or *not set* (the default holds; local runs and alternatives). Durations are Go durations (`500ms`, `20s`, `5m`).\n")
	for _, g := range groups {
		fmt.Fprintf(&b, "\n### %s\n| variable | default | values | in a stack | meaning |\n|---|---|---|---|---|\n", g.title)
		for _, s := range Settings() {
			v := s.Var()
			if !slices.Equal(v.ReadBy, g.readers) {
				continue
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", v.Name, defaultsText(s), s.Values(), sourceText(v), v.Meaning)
		}
	}
	return b.String()
}

// defaultsText is the default, per service when they differ.
func defaultsText(s Setting) string {
	readers := s.Var().ReadBy
	first := s.DefaultText(readers[0])
	same := true
	for _, svc := range readers[1:] {
		same = same && s.DefaultText(svc) == first
	}
	if same {
		return first
	}
	parts := make([]string, len(readers))
	for i, svc := range readers {
		parts[i] = s.DefaultText(svc) + " (" + string(svc) + ")"
	}
	return strings.Join(parts, ", ")
}

func sourceText(v Variable) string {
	var out string
	switch v.Source {
	case Set:
		out = "set"
	case SetSecret:
		out = "set, ECS secret"
	case Tunable:
		out = "tunable"
	default:
		return "not set"
	}
	if v.When != "" {
		out += " " + v.When
	}
	return out
}

func metricsTable() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Namespace `%s`; dimensions `%s` (`HERALD_ENV`) and `%s` on every metric, and a second dimension set "+
		"with the breakdown's dimension (*by*) on a breakdown metric.\n\n", Namespace, DimEnvironment, DimService)
	b.WriteString("| service | metric | unit | by | meaning |\n|---|---|---|---|---|\n")
	for _, m := range Metrics() {
		by := ""
		if m.By != "" {
			by = "`" + m.By + "`"
		}
		fmt.Fprintf(&b, "| %s | `%s` | %s | %s | %s |\n", m.Service, m.Name, m.Unit, by, m.Meaning)
	}
	return b.String()
}

// RenderInto replaces each rendered section of doc (between its markers)
// with what the contract renders now; it fails when a marker is missing.
func RenderInto(doc string) (string, error) {
	for _, name := range []string{SettingsSection, MetricsSection} {
		begin, end := BeginMarker(name), EndMarker(name)
		i := strings.Index(doc, begin)
		j := strings.Index(doc, end)
		if i < 0 || j < i {
			return doc, fmt.Errorf("no section %q: want a line %q, the tables, then %q", name, begin, end)
		}
		doc = doc[:i+len(begin)] + "\n" + Sections()[name] + doc[j:]
	}
	return doc, nil
}
