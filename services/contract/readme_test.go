package contract

import (
	"flag"
	"os"
	"strings"
	"testing"
)

const readmePath = "../README.md"

var update = flag.Bool("update", false, "render the contract's tables into "+readmePath)

// TestREADMEIsRendered holds services/README.md to the contract: its
// settings and metrics tables are what the contract renders now, so the
// variables the README lists are exactly the ones the services read, with
// their defaults and bounds. -update writes them.
func TestREADMEIsRendered(t *testing.T) {
	data, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := RenderInto(string(data))
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(readmePath, []byte(rendered), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if rendered != string(data) {
		t.Errorf("services/README.md's tables are stale: run go test ./services/contract -run README -update")
	}
	for _, s := range Settings() {
		if !strings.Contains(rendered, "| `"+s.Var().Name+"` |") {
			t.Errorf("%s has no row", s.Var().Name)
		}
	}
}

func TestRenderIntoNeedsTheMarkers(t *testing.T) {
	if _, err := RenderInto("# no markers\n"); err == nil {
		t.Error("a document without markers accepted")
	}
	doc := BeginMarker(SettingsSection) + "\nSTALE\n" + EndMarker(SettingsSection) + "\n" +
		BeginMarker(MetricsSection) + "\n" + EndMarker(MetricsSection) + "\n"
	out, err := RenderInto(doc)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "STALE") || !strings.Contains(out, "| `HERALD_WAIT_TIME` | `20s` | 1s to 20s, whole seconds | set |") ||
		!strings.Contains(out, "| email-sender | `Failed` | Count | `Class` |") {
		t.Errorf("rendered:\n%s", out)
	}
}
