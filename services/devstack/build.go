package devstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Binaries the stack runs, by name, with the package each is built from.
const (
	BinSQSLocal        = "sqs-local"
	BinNotificationAPI = "notification-api"
	BinEmailSender     = "email-sender"
	// BinHeraldOps is the on-call tool; the stack does not run it, herald-dev
	// and the tests do.
	BinHeraldOps = "herald-ops"
)

var binaryPackages = map[string]string{
	BinSQSLocal:        "./services/devstack/sqs-local",
	BinNotificationAPI: "./services/notification-api",
	BinEmailSender:     "./services/email-sender",
	BinHeraldOps:       "./services/herald-ops",
}

// FindRoot returns the repository root: the nearest directory at or above
// dir whose go.mod declares module herald.
func FindRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if strings.TrimSpace(line) == "module herald" {
					return d, nil
				}
			}
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod of module herald at or above %s", dir)
		}
		d = parent
	}
}

// Build compiles the named binaries (all four when none are named) from
// the repository at root into dir, with one `go build`.
func Build(ctx context.Context, root, dir string, names ...string) error {
	if len(names) == 0 {
		names = []string{BinSQSLocal, BinNotificationAPI, BinEmailSender, BinHeraldOps}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, n := range names {
		pkg, ok := binaryPackages[n]
		if !ok {
			return fmt.Errorf("build: unknown binary %q", n)
		}
		args = append(args, pkg)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return errors.New("build: the go command is not on PATH")
	}
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return nil
}

// Available reports which of the service packages exist in the repository,
// so a caller can start only what has been written.
func Available(root string) (api, sender bool) {
	exists := func(name string) bool {
		entries, err := os.ReadDir(filepath.Join(root, binaryPackages[name]))
		if err != nil {
			return false
		}
		for _, e := range entries {
			if n := e.Name(); strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
				return true
			}
		}
		return false
	}
	return exists(BinNotificationAPI), exists(BinEmailSender)
}
