// Package workflows checks the GitHub Actions workflows against the rest of
// the repository: the toolchain versions, the commands, the variables and
// steps tests/README.md tells adopters about. actionlint (make test) checks
// their syntax and shell; these tests check that they agree with Herald.
package workflows

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"herald/tests/deployed"
)

type workflow struct {
	Permissions map[string]string `yaml:"permissions"`
	Concurrency struct {
		Group            string `yaml:"group"`
		CancelInProgress bool   `yaml:"cancel-in-progress"`
	} `yaml:"concurrency"`
	Jobs map[string]struct {
		Env   map[string]string `yaml:"env"`
		Steps []struct {
			Name string            `yaml:"name"`
			Uses string            `yaml:"uses"`
			With map[string]string `yaml:"with"`
			Run  string            `yaml:"run"`
			If   string            `yaml:"if"`
		} `yaml:"steps"`
	} `yaml:"jobs"`
}

func read(t *testing.T, name string) (workflow, string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", ".github", "workflows", name))
	if err != nil {
		t.Fatal(err)
	}
	var w workflow
	if err := yaml.Unmarshal(b, &w); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(w.Jobs) != 1 {
		t.Fatalf("%s: %d jobs, want 1", name, len(w.Jobs))
	}
	return w, string(b)
}

var pinned = regexp.MustCompile(`^[a-z0-9-]+/[a-z0-9-]+@[0-9a-f]{40}$`)

// Every action is pinned by commit, with its tag in a comment.
func TestActionsPinned(t *testing.T) {
	for _, name := range []string{"test.yml", "deployed.yml"} {
		w, text := read(t, name)
		for _, job := range w.Jobs {
			for _, s := range job.Steps {
				if s.Uses == "" {
					continue
				}
				if !pinned.MatchString(s.Uses) || !strings.Contains(text, s.Uses+" # v") {
					t.Errorf("%s: %q is not pinned by commit SHA with its tag in a comment", name, s.Uses)
				}
			}
		}
	}
}

// test.yml runs the README's test command with the versions README names.
func TestTestWorkflow(t *testing.T) {
	w, _ := read(t, "test.yml")
	var pkg struct {
		Engines struct{ Node string } `json:"engines"`
	}
	b, err := os.ReadFile("../../package.json")
	if err != nil || json.Unmarshal(b, &pkg) != nil {
		t.Fatalf("package.json: %v", err)
	}
	readme, _ := os.ReadFile("../../README.md")
	var ran, node, goFile bool
	for _, job := range w.Jobs {
		for _, s := range job.Steps {
			ran = ran || strings.Contains(s.Run, "make test 2>&1 | tee")
			if v := s.With["node-version"]; v != "" {
				node = true
				if pkg.Engines.Node != ">="+v || !strings.Contains(string(readme), "Node.js "+v) {
					t.Errorf("node-version %s; package.json engines %q, README %q", v, pkg.Engines.Node, "Node.js "+v)
				}
			}
			goFile = goFile || s.With["go-version-file"] == "go.mod"
		}
	}
	if !ran || !node || !goFile {
		t.Errorf("make test %v, Node.js %v, Go from go.mod %v", ran, node, goFile)
	}
	if !strings.Contains(string(readme), "make test") {
		t.Error("README.md does not name make test")
	}
}

var repoVariable = regexp.MustCompile(`vars\.([A-Z0-9_]+)`)

// deployed.yml: what tests/README.md tells adopters is what it does.
func TestDeployedWorkflow(t *testing.T) {
	w, text := read(t, "deployed.yml")
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	if w.Permissions["id-token"] != "write" || w.Concurrency.Group == "" || w.Concurrency.CancelInProgress {
		t.Errorf("permissions %v, concurrency %+v: want id-token write, one group, never cancelled", w.Permissions, w.Concurrency)
	}
	for _, m := range repoVariable.FindAllStringSubmatch(text, -1) {
		if !strings.Contains(readme, "gh variable set "+m[1]+" ") {
			t.Errorf("variable %s is not in tests/README.md's setup", m[1])
		}
	}
	for _, job := range w.Jobs {
		if job.Env[deployed.StateBucketVariable] == "" {
			t.Errorf("the job does not pass %s to the suite and the cleanup", deployed.StateBucketVariable)
		}
		cleanups, always := 0, 0
		for _, s := range job.Steps {
			if v := s.With["terraform_version"]; v != "" && !strings.Contains(readme, "Terraform "+v) {
				t.Errorf("Terraform %s is not the version tests/README.md names", v)
			}
			for _, line := range strings.Split(strings.TrimSpace(s.Run), "\n") {
				cmd := strings.SplitN(line, " 2>&1", 2)[0]
				if strings.HasPrefix(cmd, "go ") || strings.HasPrefix(cmd, "make ") {
					if !strings.Contains(readme, cmd) {
						t.Errorf("step %q runs %q, which tests/README.md does not say", s.Name, cmd)
					}
				}
			}
			if strings.Contains(s.Run, "./tests/deployed/cleanup") {
				cleanups++
				if s.If == "always()" {
					always++
				}
			}
		}
		if cleanups != 2 || always != 1 {
			t.Errorf("%d cleanups, %d always run; want one before the suite and one always after", cleanups, always)
		}
	}
}
