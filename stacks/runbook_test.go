package stacks

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// runbookPath is the on-call runbook, one entry per alarm.
const runbookPath = "../docs/runbook.md"

// runbookEntry is an entry heading: the alarm name with <stack> for the
// stack's name.
var runbookEntry = regexp.MustCompile("(?m)^## `<stack>-([a-z0-9-]+)`$")

// runbookWidget is how an entry names a dashboard widget: by its title, in
// bold, after "widget" or "widgets" (and "and"/"/" for a second one).
var runbookWidget = regexp.MustCompile(`(?:widgets?|and|/)\s+\*\*([^*]+)\*\*`)

// runbookSections must each appear once in every entry, in this order.
var runbookSections = []string{"**What it means.**", "**Look first.**", "**Fix.**"}

// TestRunbookCoversEveryAlarm: every alarm of every synthesized stack has
// an entry in docs/runbook.md and every entry names an alarm some stack
// creates; each entry says what the alarm means, the first three things to
// look at and the fix; every dashboard widget it names is on the dashboard.
func TestRunbookCoversEveryAlarm(t *testing.T) {
	text, err := os.ReadFile(runbookPath)
	if err != nil {
		t.Fatal(err)
	}
	entries := map[string]string{} // alarm suffix -> entry text
	heads := runbookEntry.FindAllStringSubmatchIndex(string(text), -1)
	for i, h := range heads {
		end := len(text)
		if i+1 < len(heads) {
			end = heads[i+1][0]
		}
		suffix := string(text[h[2]:h[3]])
		if _, twice := entries[suffix]; twice {
			t.Errorf("two entries for <stack>-%s", suffix)
		}
		// An entry ends at the next heading of any level 2.
		body := string(text[h[1]:end])
		if next := strings.Index(body, "\n## "); next >= 0 {
			body = body[:next]
		}
		entries[suffix] = body
	}
	if len(entries) == 0 {
		t.Fatalf("%s has no entry headings like ## `<stack>-<alarm>`", runbookPath)
	}

	created := map[string]bool{}
	for _, s := range allStacks(t) {
		alarms := s.doc.resources("aws_cloudwatch_metric_alarm")
		if len(alarms) == 0 {
			t.Errorf("%s: no alarms synthesized", s.id)
		}
		for _, a := range alarms {
			name, _ := a["alarm_name"].(string)
			suffix, ok := strings.CutPrefix(name, s.id+"-")
			if !ok {
				t.Errorf("%s: alarm %q does not start with the stack name", s.id, name)
				continue
			}
			created[suffix] = true
			if _, ok := entries[suffix]; !ok {
				t.Errorf("%s: alarm %s has no entry `<stack>-%s` in %s", s.id, name, suffix, runbookPath)
			}
		}
		// Every widget the runbook names is on this stack's dashboard.
		body := mustJSON(s.doc.only(t, "aws_cloudwatch_dashboard")["dashboard_body"])
		for suffix, entry := range entries {
			for _, m := range runbookWidget.FindAllStringSubmatch(entry, -1) {
				if title := m[1]; !strings.Contains(body, title) {
					t.Errorf("%s: entry <stack>-%s names the widget %q, which the dashboard does not have", s.id, suffix, title)
				}
			}
		}
	}
	for suffix, entry := range entries {
		if !created[suffix] {
			t.Errorf("entry <stack>-%s names no alarm any stack creates", suffix)
		}
		at := -1
		for _, section := range runbookSections {
			i := strings.Index(entry, section)
			if i < 0 || i < at || strings.Count(entry, section) != 1 {
				t.Errorf("entry <stack>-%s: want %v once each, in order", suffix, runbookSections)
				break
			}
			at = i
		}
		look := entry[strings.Index(entry, "**Look first.**"):]
		if fix := strings.Index(look, "**Fix.**"); fix >= 0 {
			look = look[:fix]
		}
		var steps []string
		for _, line := range strings.Split(look, "\n") {
			if n, _, ok := strings.Cut(line, ". "); ok && slices.Contains([]string{"1", "2", "3"}, n) {
				steps = append(steps, n)
			}
		}
		if !slices.Equal(steps, []string{"1", "2", "3"}) {
			t.Errorf("entry <stack>-%s: Look first has steps %v, want 1, 2, 3", suffix, steps)
		}
	}
}
