// Package dynamotest gives a test binary one DynamoDB emulator (dynalite,
// through dynamolocal), started on first use, and a fresh table of the
// store's shape per test. Tests that use it are skipped only when
// node_modules has no dynalite; `make test` installs it.
//
//	var dynamo = dynamotest.Emulator{Root: "../.."}
//
//	func TestMain(m *testing.M) { os.Exit(dynamo.Run(m)) }
//
//	func TestX(t *testing.T) { emu, table := dynamo.Table(t); ... }
package dynamotest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"herald/services/devstack/dynamolocal"
	"herald/services/internal/store"
)

// Emulator is a test binary's dynalite.
type Emulator struct {
	// Root is the repository root (where node_modules is), relative to the
	// test's package directory.
	Root string
	// Required fails the tests that use the emulator when dynalite is not
	// installed, instead of skipping them.
	Required bool

	once   sync.Once
	server *dynamolocal.Server
	err    error
	tables atomic.Int64
}

// Run runs the tests and then stops the emulator, if one was started (the
// kernel stops it too, should the binary die: Pdeathsig); the exit code
// for os.Exit.
func (e *Emulator) Run(m *testing.M) int {
	code := m.Run()
	if e.server != nil {
		if err := e.server.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = max(code, 1)
		}
	}
	return code
}

// Server is the binary's emulator, started on first use.
func (e *Emulator) Server(tb testing.TB) *dynamolocal.Server {
	tb.Helper()
	e.once.Do(func() {
		root, err := filepath.Abs(e.Root)
		if err != nil {
			e.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		e.server, e.err = dynamolocal.Start(ctx, dynamolocal.Config{Root: root})
	})
	if errors.Is(e.err, dynamolocal.ErrNotInstalled) && !e.Required {
		tb.Skipf("skipped: %v", e.err)
	}
	if e.err != nil {
		tb.Fatal(e.err)
	}
	return e.server
}

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// Table makes a table of the production shape (store.KeyAttribute,
// store.TTLAttribute) for one test, named after it.
func (e *Emulator) Table(tb testing.TB) (*dynamolocal.Server, string) {
	tb.Helper()
	s := e.Server(tb)
	name := fmt.Sprintf("herald-%d-%s", e.tables.Add(1), unsafeName.ReplaceAllString(tb.Name(), "-"))
	if len(name) > 200 {
		name = name[:200]
	}
	err := s.CreateTable(context.Background(), dynamolocal.Table{
		Name: name, PartitionKey: store.KeyAttribute, TTLAttribute: store.TTLAttribute,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return s, name
}
