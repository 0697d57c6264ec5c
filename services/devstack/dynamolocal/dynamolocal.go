// Package dynamolocal runs the DynamoDB emulator (npm dynalite, in memory) as
// a child process on loopback, behind a small proxy in this process that
// makes it behave as DynamoDB does where Herald depends on it:
//
//   - ReturnValuesOnConditionCheckFailure: dynalite drops the parameter, so a
//     failed conditional write carries no item. The proxy serialises writes
//     per item and, when a write that asked for ALL_OLD fails its condition,
//     reads the item under the same lock and adds it to the error, as
//     DynamoDB returns it (the item that failed the condition).
//   - UpdateTimeToLive: dynalite does not know the action, and its
//     DescribeTimeToLive always answers DISABLED. The proxy keeps each
//     table's setting and answers both. Neither dynalite nor the proxy
//     deletes expired items; DynamoDB deletes them only within days either,
//     so readers treat an item past its TTL as absent in both places.
//   - Table creation: tables are ACTIVE at once (dynalite's createTableMs
//     is 0), instead of after dynalite's 500 ms.
//   - TransactWriteItems: dynalite does not know the action; the proxy
//     applies it (tx.go). It holds the locks of all the transaction's items
//     (taken in one order), applies each action as dynalite's conditional
//     PutItem, DeleteItem or UpdateItem returning the old item (all in one
//     request to the child, through dynalite's own validation and
//     conditions), and when a condition failed undoes what it applied (puts the old item back, or
//     deletes a new one) and answers TransactionCanceledException with one
//     reason per action (with the item for ReturnValuesOnConditionCheckFailure
//     ALL_OLD). A ConditionCheck is an UpdateItem without updates (a key-only
//     item it wrote for a missing one is deleted again). Checked as DynamoDB
//     does: 1 to 100 actions, one kind each, one action per item; an item
//     dynalite rejects rejects the transaction. ClientRequestToken: a
//     replay within 10 minutes answers the first outcome (success or
//     cancellation) without applying again, another request with the token
//     gets IdempotentParameterMismatchException, one still running
//     TransactionInProgressException; the proxy keeps the last 100,000
//     tokens. Not emulated: ConsumedCapacity and ItemCollectionMetrics in
//     the answer, the 4 MB bound on a transaction's items (each item's
//     400 KB is dynalite's), TransactionConflict (a transaction waits for
//     the items' locks instead), TransactGetItems and PartiQL, which
//     dynalite lacks too.
//   - Isolation: single-item writes, GetItem and each write of a
//     BatchWriteItem take their items' locks, so none interleaves with a
//     transaction (serializable, as in DynamoDB); Query, Scan and
//     BatchGetItem wait until no transaction is in progress (they never see
//     one half applied: read-committed).
//
// The proxy also counts requests by operation (Stats, as DynamoDB would bill
// them: a transaction is one TransactWriteItems, whatever it takes from
// dynalite) and can simulate an outage (SetFault): throttling, server
// errors, or requests that hang until the client gives up.
//
// dynalite's CLI reads --port 0 as "no port" and listens on 4567, so a free
// port could only be guessed before starting it. The child is node running
// dynalite's module with a script of ours (launcher.js) that listens on
// port 0 and prints the port it got: no race for the port. The script also
// takes a list of single-item operations in one request, each run through
// dynalite's own validation and action, for the proxy's transactions.
package dynamolocal

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// ErrNotInstalled is returned by Start when node_modules has no dynalite
// (`make tools`, or `npm ci` at the repository root, installs it).
var ErrNotInstalled = errors.New("dynalite is not installed: run `make tools` (or `npm ci` at the repository root)")

// Region is the region the emulator's ARNs and Client use.
const Region = "us-east-1"

// launcher is the node program the child runs: dynalite's module, in
// memory, on a free loopback port, tables active at once, with opsPath
// added (see the file). The first line it prints says the port.
//
//go:embed launcher.js
var launcher string

// opsPath is the launcher's route for a list of single-item operations in
// one request.
const opsPath = "/_dynamolocal/ops"

// Config says where dynalite is and how long to wait for it.
type Config struct {
	// Root is the repository root: dynalite is Root/node_modules/dynalite.
	Root string
	// Node is the node command; "" means node on PATH.
	Node string
	// Output, when set, gets each line the child prints; the last lines are
	// kept in any case for error messages.
	Output io.Writer
	// StartTimeout bounds the wait for dynalite to answer; 0 means 30s.
	StartTimeout time.Duration
	// StopTimeout is the grace between SIGTERM and SIGKILL; 0 means 5s.
	StopTimeout time.Duration
}

// Server is a running emulator. Close stops it.
type Server struct {
	// Endpoint is the proxy's base URL: AWS_ENDPOINT_URL_DYNAMODB.
	Endpoint string

	cfg    Config
	cmd    *exec.Cmd
	exited chan struct{} // closed when the child has been reaped
	err    error         // from Wait, once exited is closed
	out    *lastLines
	proxy  *proxy
	http   *http.Server
	closed sync.Once
	cerr   error
}

// Start launches dynalite and its proxy, and returns once both answer.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Root == "" {
		return nil, errors.New("dynamolocal: Config.Root (the repository root) is required")
	}
	module := filepath.Join(cfg.Root, "node_modules", "dynalite")
	if _, err := os.Stat(filepath.Join(module, "index.js")); err != nil {
		return nil, fmt.Errorf("dynamolocal: %w (%v)", ErrNotInstalled, err)
	}
	if cfg.Node == "" {
		cfg.Node = "node"
	}
	node, err := exec.LookPath(cfg.Node)
	if err != nil {
		return nil, fmt.Errorf("dynamolocal: Node.js (%s) runs dynalite: %w", cfg.Node, err)
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 5 * time.Second
	}

	s := &Server{cfg: cfg, exited: make(chan struct{}), out: &lastLines{max: 40}}
	s.cmd = exec.Command(node, "-e", launcher, module, opsPath)
	s.cmd.Dir = cfg.Root
	s.cmd.Env = childEnv()
	s.cmd.SysProcAttr = groupAttr()
	// Wait copies the child's stdout into the pipe until the child closes
	// it; readStdout reads the other end until Wait has closed it.
	stdout, stdoutW := io.Pipe()
	s.cmd.Stdout = stdoutW
	s.cmd.Stderr = s.out.writer(cfg.Output)
	// If a grandchild kept the pipes open, Wait must not hang on them.
	s.cmd.WaitDelay = 2 * time.Second
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("dynamolocal: start %s: %w", node, err)
	}
	ports := make(chan int, 1)
	go s.readStdout(stdout, cfg.Output, ports)
	go func() {
		s.err = s.cmd.Wait()
		stdoutW.Close()
		// Nothing the child started may outlive it.
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		close(s.exited)
	}()

	upstream, err := s.waitReady(ctx, ports)
	if err != nil {
		s.stopChild()
		return nil, err
	}
	s.proxy = newProxy(upstream)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.stopChild()
		return nil, fmt.Errorf("dynamolocal: proxy listen: %w", err)
	}
	s.Endpoint = "http://" + ln.Addr().String()
	s.http = &http.Server{
		Handler:           s.proxy,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	go s.http.Serve(ln)
	return s, nil
}

func childEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "LANG", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return append(env, "AWS_REGION="+Region)
}

// readStdout passes the child's lines on and picks out the ready line.
func (s *Server) readStdout(r io.Reader, echo io.Writer, ports chan<- int) {
	keep := s.out.writer(echo)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var ready struct {
			DynaliteReady bool `json:"dynaliteReady"`
			Port          int  `json:"port"`
		}
		if json.Unmarshal([]byte(line), &ready) == nil && ready.DynaliteReady {
			select {
			case ports <- ready.Port:
			default:
			}
		}
		keep.Write([]byte(line + "\n"))
	}
	// Drain whatever follows an over-long line, so the child never blocks.
	io.Copy(io.Discard, r)
}

// waitReady waits for the port line, then for dynalite's health answer.
func (s *Server) waitReady(ctx context.Context, ports <-chan int) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
	defer cancel()
	var upstream string
	select {
	case port := <-ports:
		upstream = fmt.Sprintf("http://127.0.0.1:%d", port)
	case <-s.exited:
		return "", fmt.Errorf("dynamolocal: dynalite exited at start (%v):\n%s", s.err, s.out.String())
	case <-ctx.Done():
		return "", fmt.Errorf("dynamolocal: dynalite printed no ready line within %s: %w\n%s", s.cfg.StartTimeout, ctx.Err(), s.out.String())
	}
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := healthy(ctx, client, upstream)
		if err == nil {
			return upstream, nil
		}
		select {
		case <-tick.C:
		case <-s.exited:
			return "", fmt.Errorf("dynamolocal: dynalite exited at start (%v):\n%s", s.err, s.out.String())
		case <-ctx.Done():
			return "", fmt.Errorf("dynamolocal: dynalite did not answer within %s (%v):\n%s", s.cfg.StartTimeout, err, s.out.String())
		}
	}
}

// healthy: dynalite answers GET / with 200 "healthy: dynamodb...".
func healthy(ctx context.Context, client *http.Client, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(b), "healthy") {
		return fmt.Errorf("GET %s/: status %d", base, resp.StatusCode)
	}
	return nil
}

// Close stops the proxy and the child: SIGTERM to its process group, then
// SIGKILL after the grace. It reports a child that did not stop on SIGTERM.
func (s *Server) Close() error {
	s.closed.Do(func() {
		if s.http != nil {
			s.http.Close()
		}
		s.cerr = s.stopChild()
	})
	return s.cerr
}

func (s *Server) stopChild() error {
	pid := s.cmd.Process.Pid
	select {
	case <-s.exited:
		return fmt.Errorf("dynamolocal: dynalite (pid %d) had exited before the stop: %v\n%s", pid, s.err, s.out.String())
	default:
	}
	syscall.Kill(-pid, syscall.SIGTERM)
	grace := time.NewTimer(s.cfg.StopTimeout)
	defer grace.Stop()
	select {
	case <-s.exited:
	case <-grace.C:
		syscall.Kill(-pid, syscall.SIGKILL)
		<-s.exited
		return fmt.Errorf("dynamolocal: dynalite (pid %d) did not exit within %s of SIGTERM; killed", pid, s.cfg.StopTimeout)
	}
	// Node ends on SIGTERM by dying of it: that is a clean stop.
	if s.err != nil && !diedOfTerm(s.err) {
		return fmt.Errorf("dynamolocal: dynalite (pid %d) on SIGTERM: %v", pid, s.err)
	}
	return nil
}

func diedOfTerm(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM
}

// Exited is closed when the child has exited (a crash, or Close).
func (s *Server) Exited() <-chan struct{} { return s.exited }

// Output is the last lines the child printed.
func (s *Server) Output() string { return s.out.String() }

// Client is a DynamoDB client for the emulator, with static dummy
// credentials (the proxy and dynalite check none).
func (s *Server) Client(optFns ...func(*dynamodb.Options)) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.Endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
	}, optFns...)
}

// Table is a table of the shape Herald uses: a string partition key, no
// sort key, on demand, with a TTL attribute.
type Table struct {
	Name         string
	PartitionKey string
	TTLAttribute string
}

// CreateTable creates the table, waits until it is ACTIVE, and turns its
// TTL on, as the stacks do in AWS.
func (s *Server) CreateTable(ctx context.Context, t Table) error {
	if t.Name == "" || t.PartitionKey == "" || t.TTLAttribute == "" {
		return fmt.Errorf("dynamolocal: table %+v: Name, PartitionKey and TTLAttribute are required", t)
	}
	c := s.Client()
	_, err := c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(t.Name),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(t.PartitionKey), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(t.PartitionKey), KeyType: types.KeyTypeHash}},
	})
	if err != nil {
		return fmt.Errorf("dynamolocal: create table %s: %w", t.Name, err)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		out, err := c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(t.Name)})
		if err != nil {
			return fmt.Errorf("dynamolocal: describe table %s: %w", t.Name, err)
		}
		if out.Table.TableStatus == types.TableStatusActive {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dynamolocal: table %s not active: %w", t.Name, ctx.Err())
		case <-tick.C:
		}
	}
	_, err = c.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName:               aws.String(t.Name),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(t.TTLAttribute), Enabled: aws.Bool(true)},
	})
	if err != nil {
		return fmt.Errorf("dynamolocal: TTL of table %s: %w", t.Name, err)
	}
	return nil
}

// lastLines keeps the last max lines written through its writers.
type lastLines struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func (l *lastLines) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	if len(l.lines) > l.max {
		l.lines = l.lines[len(l.lines)-l.max:]
	}
}

func (l *lastLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// writer returns a writer that keeps lines here and copies all to echo.
func (l *lastLines) writer(echo io.Writer) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
			l.add(line)
		}
		if echo != nil {
			echo.Write(p)
		}
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
