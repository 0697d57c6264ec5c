package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// No Docker engine runs here, so services/Dockerfile is held to the
// daemonless build by reading it: a small evaluator follows its stages with
// the build arguments and works out the final image's configuration, which
// must equal the one `imagebuild build` writes; its build stage must compile
// with the same flags and copy the same system files.

type dfInstruction struct {
	Cmd  string // upper case
	Args string
	Line int
}

// parseDockerfile splits a Dockerfile into instructions, joining continued
// lines and dropping comments and parser directives.
func parseDockerfile(text string) []dfInstruction {
	var out []dfInstruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSpace(strings.TrimSuffix(trimmed, `\`)) + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, dfInstruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: start})
		cur.Reset()
	}
	return out
}

type dfStage struct {
	Name   string
	Config v1.Config
	Runs   []string
	Copies []string
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
		return s[1 : len(s)-1]
	}
	return s
}

// evalDockerfile runs the instructions as a builder would for the images'
// configuration (not their files) and returns the last stage and the named ones.
func evalDockerfile(instrs []dfInstruction, buildArgs map[string]string) (*dfStage, map[string]*dfStage, error) {
	global := map[string]string{}
	stages := map[string]*dfStage{}
	var cur *dfStage
	var vars map[string]string
	expand := func(s string) string { return os.Expand(s, func(k string) string { return vars[k] }) }
	for _, in := range instrs {
		fail := func(format string, a ...any) error {
			return fmt.Errorf("line %d %s: %s", in.Line, in.Cmd, fmt.Sprintf(format, a...))
		}
		if cur == nil && in.Cmd != "ARG" && in.Cmd != "FROM" {
			return nil, nil, fail("before the first FROM")
		}
		switch in.Cmd {
		case "ARG":
			for _, decl := range strings.Fields(in.Args) {
				k, def, hasDef := strings.Cut(decl, "=")
				v, given := buildArgs[k]
				switch {
				case given:
				case hasDef:
					v = unquote(def)
				case cur != nil:
					v = global[k] // a global ARG redeclared without a value
				}
				if cur == nil {
					global[k] = v
				} else {
					vars[k] = v
				}
			}
		case "FROM":
			fields := strings.Fields(in.Args)
			for len(fields) > 0 && strings.HasPrefix(fields[0], "--") {
				fields = fields[1:]
			}
			if len(fields) == 0 {
				return nil, nil, fail("no image")
			}
			vars = global
			from := expand(fields[0])
			next := &dfStage{}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				next.Name = fields[2]
			}
			if parent, ok := stages[from]; ok {
				next.Config = *parent.Config.DeepCopy()
			}
			cur, vars = next, map[string]string{}
			if next.Name != "" {
				stages[next.Name] = next
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.Args), &cur.Config.Entrypoint); err != nil {
				return nil, nil, fail("want the exec (JSON) form: %v", err)
			}
		case "HEALTHCHECK":
			hc := &v1.HealthConfig{}
			rest := in.Args
			for strings.HasPrefix(rest, "--") {
				var opt string
				opt, rest, _ = strings.Cut(rest, " ")
				k, v, _ := strings.Cut(strings.TrimPrefix(opt, "--"), "=")
				var err error
				switch k {
				case "interval":
					hc.Interval, err = time.ParseDuration(v)
				case "timeout":
					hc.Timeout, err = time.ParseDuration(v)
				case "start-period":
					hc.StartPeriod, err = time.ParseDuration(v)
				case "retries":
					_, err = fmt.Sscan(v, &hc.Retries)
				default:
					err = fmt.Errorf("unknown option")
				}
				if err != nil {
					return nil, nil, fail("--%s=%s: %v", k, v, err)
				}
				rest = strings.TrimSpace(rest)
			}
			cmd, rest, _ := strings.Cut(rest, " ")
			var args []string
			if cmd != "CMD" || json.Unmarshal([]byte(rest), &args) != nil {
				return nil, nil, fail("want CMD in the exec (JSON) form")
			}
			hc.Test = append([]string{"CMD"}, args...)
			cur.Config.Healthcheck = hc
		case "EXPOSE":
			for _, p := range strings.Fields(expand(in.Args)) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				if cur.Config.ExposedPorts == nil {
					cur.Config.ExposedPorts = map[string]struct{}{}
				}
				cur.Config.ExposedPorts[p] = struct{}{}
			}
		case "USER":
			cur.Config.User = expand(in.Args)
		case "ENV":
			k, v, ok := strings.Cut(in.Args, "=")
			if !ok || strings.ContainsAny(k, " \t") {
				return nil, nil, fail("want one NAME=value")
			}
			cur.Config.Env = append(cur.Config.Env, k+"="+unquote(expand(v)))
		case "LABEL":
			for _, kv := range strings.Fields(in.Args) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return nil, nil, fail("want NAME=value pairs")
				}
				if cur.Config.Labels == nil {
					cur.Config.Labels = map[string]string{}
				}
				cur.Config.Labels[unquote(k)] = unquote(expand(v))
			}
		case "RUN":
			cur.Runs = append(cur.Runs, expand(in.Args))
		case "COPY":
			cur.Copies = append(cur.Copies, expand(in.Args))
		case "WORKDIR":
		default:
			return nil, nil, fail("not understood by this test's evaluator; extend it")
		}
	}
	if cur == nil {
		return nil, nil, fmt.Errorf("no FROM")
	}
	return cur, stages, nil
}

func readDockerfile(t *testing.T) []dfInstruction {
	t.Helper()
	text, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	return parseDockerfile(string(text))
}

// TestDockerfileMatchesDaemonlessBuild evaluates services/Dockerfile for each
// service and compares it with what `imagebuild build` makes.
func TestDockerfileMatchesDaemonlessBuild(t *testing.T) {
	instrs := readDockerfile(t)
	for _, svc := range services {
		t.Run(svc.Name, func(t *testing.T) {
			final, stages, err := evalDockerfile(instrs, map[string]string{
				"SERVICE": svc.Name, "VERSION": testInfo.Version, "REVISION": testInfo.Revision,
				"SOURCE": testInfo.Source, "SOURCE_DATE_EPOCH": fmt.Sprint(testInfo.Epoch.Unix()),
			})
			if err != nil {
				t.Fatal(err)
			}
			// The image configuration: user, entrypoint, health check, port,
			// environment and labels, all of it.
			want := containerConfig(svc, testInfo)
			if !reflect.DeepEqual(final.Config, want) {
				got, _ := json.MarshalIndent(final.Config, "", "  ")
				exp, _ := json.MarshalIndent(want, "", "  ")
				t.Errorf("Dockerfile's final configuration for %s:\n%s\nthe daemonless build's:\n%s", svc.Name, got, exp)
			}

			// The binary: compiled as compile() does.
			b := stages["build"]
			if b == nil {
				t.Fatal(`no stage "build"`)
			}
			goBuild := findContaining(b.Runs, "go build")
			for _, part := range []string{
				"CGO_ENABLED=0", "GOAMD64=v1", "GOARM64=v8.0", "-trimpath", "-buildvcs=false",
				`-ldflags "` + testInfo.ldflags() + `"`,
				"-o /out/" + svc.Name + " ./services/" + svc.Name,
			} {
				if !strings.Contains(goBuild, part) {
					t.Errorf("build stage's go build lacks %q:\n%s", part, goBuild)
				}
			}
			// The system files: written by `imagebuild rootfs`, copied whole,
			// then the binary at /<service>: the two layers of the daemonless image.
			if findContaining(b.Runs, "go run ./services/imagebuild rootfs -out /rootfs") == "" {
				t.Errorf("build stage does not write the system files with imagebuild rootfs: %q", b.Runs)
			}
			wantCopies := []string{"--from=build /rootfs/ /", "--from=build /out/" + svc.Name + " /" + svc.Name}
			if !reflect.DeepEqual(final.Copies, wantCopies) {
				t.Errorf("final stage copies %q, want exactly %q", final.Copies, wantCopies)
			}
			if len(final.Runs) != 0 {
				t.Errorf("final stage runs %q: it has no shell", final.Runs)
			}
		})
	}
}

func findContaining(list []string, part string) string {
	for _, s := range list {
		if strings.Contains(s, part) {
			return s
		}
	}
	return ""
}

// TestDockerignoreSendsOnlyTheModule: the build context is the repository
// root; its ignore file lets in the module files and services/ only.
func TestDockerignoreSendsOnlyTheModule(t *testing.T) {
	text, err := os.ReadFile(filepath.Join("..", "Dockerfile.dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, line := range strings.Split(string(text), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	if len(patterns) == 0 || patterns[0] != "*" {
		t.Fatalf("patterns %q: want \"*\" first, then the exceptions", patterns)
	}
	for _, keep := range []string{"!go.mod", "!go.sum", "!services/"} {
		if !strings.Contains(strings.Join(patterns, "\n")+"\n", keep+"\n") {
			t.Errorf("patterns %q lack %q: the build needs it", patterns, keep)
		}
	}
}

func TestParseDockerfile(t *testing.T) {
	got := parseDockerfile("# syntax=docker/dockerfile:1\n\nARG A=1\nRUN a \\\n  # a comment inside\n  b\nlabel x=y\n")
	want := []dfInstruction{{"ARG", "A=1", 3}, {"RUN", "a b", 4}, {"LABEL", "x=y", 7}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
