// Package devstack runs Herald's whole pipeline on one machine, on loopback:
// the SQS emulator (sqs-local, goaws), the SES v2 emulator (npm
// aws-ses-v2-local) behind an SES gate (package sesgate), a Secrets Manager
// emulator (package secretslocal) holding the API-key secret and the id
// secret, the DynamoDB emulator (package dynamolocal, npm dynalite) holding
// the state store's table, the notification API and the email sender. Each emulator and service is a child process of
// its own, so a test can stop, kill (SIGKILL) and restart any of them while
// the others run. The launcher `herald-dev` (make dev) and the end-to-end
// tests in tests/ both use it.
//
// The services get exactly the environment described in services/README.md,
// pointed at the emulators, with a development API key minted at start (in
// HERALD_API_KEY_HASHES) and the API-key secret, empty at start, read again
// every Config.KeysRefresh: herald-ops keys manages it as on AWS.
package devstack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"herald/services/contract"
	"herald/services/devstack/dynamolocal"
	"herald/services/devstack/secretslocal"
	"herald/services/devstack/sesgate"
	"herald/services/devstack/sqslocal"
	"herald/services/internal/herald"
	"herald/services/internal/store"
)

// Component names one process of the stack.
type Component string

const (
	SQS    Component = "sqs"    // the SQS emulator (sqs-local)
	SES    Component = "ses"    // the SES v2 emulator (node)
	API    Component = "api"    // notification-api
	Sender Component = "sender" // email-sender
)

// Components of a stack with one sender and one API, in start order; Close
// stops them in reverse. Stack.Components lists a stack's own, with its
// extra senders and APIs.
var Components = []Component{SQS, SES, Sender, API}

// SenderN is the i-th sender of a stack with Config.Senders > 1: Sender for
// the first, "sender-2", "sender-3" ... for the others.
func SenderN(i int) Component {
	if i <= 1 {
		return Sender
	}
	return Component(fmt.Sprintf("%s-%d", Sender, i))
}

// APIN is the i-th notification API of a stack with Config.APIs > 1: API
// for the first, "api-2", "api-3" ... for the others.
func APIN(i int) Component {
	if i <= 1 {
		return API
	}
	return Component(fmt.Sprintf("%s-%d", API, i))
}

// IsAPI reports whether c is one of the stack's notification APIs.
func IsAPI(c Component) bool {
	return c == API || strings.HasPrefix(string(c), string(API)+"-")
}

// IsSender reports whether c is one of the stack's senders.
func IsSender(c Component) bool {
	return c == Sender || strings.HasPrefix(string(c), string(Sender)+"-")
}

// Config says what to start and how. The zero value, with BinDir set, starts
// the whole pipeline on free loopback ports.
type Config struct {
	// Root is the repository root (it holds node_modules); "" finds it from
	// the working directory.
	Root string
	// BinDir holds the sqs-local, notification-api and email-sender
	// binaries (see Build).
	BinDir string
	// LogDir receives one log file per component; "" makes a temporary one.
	LogDir string
	// Echo, when set, also gets every child's output, each line prefixed
	// with the component's name.
	Echo io.Writer
	// Logger gets the stack's own events; nil discards them.
	Logger *slog.Logger
	// EmulatorsOnly starts SQS, SES, the gate and Secrets Manager without
	// the two services.
	EmulatorsOnly bool
	// Senders is how many email-sender processes consume the queue and
	// share the SES account (each is told so in HERALD_SENDER_TASKS); 0
	// means 1. The first is Sender, the others SenderN(2) ...
	Senders int
	// APIs is how many notification-api processes serve the stack, each on
	// its own loopback port with the same environment (the same key hashes
	// and state store, so they share the per-key rate limit and the
	// idempotency keys, as the tasks of a service do); 0 means 1. The first
	// is API (on APIAddr), the others APIN(2) ... on free ports.
	APIs int

	// Listen addresses (loopback host:port); "" picks a free port.
	SQSAddr, SESAddr, GateAddr, SecretsAddr, APIAddr, SenderAddr string

	Region            string        // "" means us-east-1
	QueueName         string        // "" means herald-notifications
	DLQName           string        // "" means herald-notifications-dlq
	MaxReceiveCount   int           // redrive to the DLQ after this many receives; 0 means 5
	VisibilityTimeout time.Duration // the queue's (and the sender's); 0 means 30s

	// DefaultFrom is the API's default sender; "" means noreply@example.com.
	DefaultFrom string
	// AllowedFrom is the services' sender allow-list (HERALD_ALLOWED_FROM,
	// with DefaultFrom added); nil means @example.com and @example.net.
	AllowedFrom []string
	// Verified are the identities the SES gate accepts; nil means
	// example.com. So, by default, a From at example.net passes the API and
	// is rejected by SES: the permanent-failure path.
	Verified []string
	// MaxSendRate is the SES account's sends per second; 0 means 200.
	MaxSendRate float64
	// MetricsInterval is HERALD_METRICS_INTERVAL; 0 means 5s.
	MetricsInterval time.Duration
	// KeysSecret names the API-key secret (HERALD_API_KEYS_SECRET_ID); ""
	// means herald-local/api-key-hashes.
	KeysSecret string
	// KeysRefresh is the API's HERALD_API_KEYS_REFRESH; 0 means 10s, the
	// shortest the API takes.
	KeysRefresh time.Duration
	// StoreTable is the state store's table (HERALD_STORE_TABLE), created
	// in the DynamoDB emulator at start; "" means herald-local-state.
	StoreTable string
	// NoStore runs the pipeline without the state store and SES feedback:
	// no DynamoDB emulator, no configuration set, so no Idempotency-Key,
	// status lookup or deduplication; the SQS and SES path alone. For the
	// benchmarks of that path (the local DynamoDB emulator would be their
	// ceiling); Dynamo is then nil.
	NoStore bool
	// IDSecret names the id secret (HERALD_ID_SECRET_ID), random bytes made
	// at start; "" means herald-local/id-secret.
	IDSecret string
	// Mailboxes make addresses or domains of the SES gate bounce, complain
	// or delay as real mailboxes do (and land on the account's suppression
	// list, which the gate keeps for bounces and complaints as SES does).
	Mailboxes map[string]sesgate.Mailbox
	// APIVariables and SenderVariables add to or override the services'
	// variables (by the names of services/contract).
	APIVariables, SenderVariables map[string]string

	// StartTimeout bounds each component's wait for readiness; 0 means 30s.
	StartTimeout time.Duration
	// StopTimeout is the grace after SIGTERM before SIGKILL; 0 means 15s.
	StopTimeout time.Duration
	// Node is the node command for the SES emulator; "" means node on PATH.
	Node string
}

// Stack is a running pipeline. Close stops everything it started.
type Stack struct {
	cfg  Config
	log  *slog.Logger
	http *http.Client

	// components in start order, with the extra senders and APIs.
	components []Component

	mu    sync.Mutex // guards the fields below and serialises component control
	procs map[Component]*proc
	addrs map[Component]string // fixed after the first start, for restarts

	gate        *sesgate.Server
	secrets     *secretslocal.Server
	dynamo      *dynamolocal.Server
	dynamoLog   *os.File
	apiKey      string
	apiKeyHash  string
	allowedFrom string // HERALD_ALLOWED_FROM of both services
	sqsEndpoint string
	queueURL    string
	dlqURL      string
	sesURL      string
	closed      bool
	// The SES feedback queue and its DLQ: the gate publishes the events of
	// the configuration set there, the sender consumes them.
	feedbackURL, feedbackDLQURL string

	sqsReady chan sqslocal.Ready
	sesPort  chan int
}

// Start brings the stack up, each component ready before the next starts.
// On error everything already started is stopped again.
func Start(ctx context.Context, cfg Config) (*Stack, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	s := &Stack{
		cfg:   cfg,
		log:   cfg.Logger,
		http:  &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}},
		procs: map[Component]*proc{},
		addrs: map[Component]string{
			SQS: cfg.SQSAddr, SES: cfg.SESAddr, API: cfg.APIAddr, Sender: cfg.SenderAddr,
		},
	}
	allowed, err := contract.AllowedFrom.Format(append([]string{cfg.DefaultFrom}, cfg.AllowedFrom...))
	if err != nil {
		return nil, fmt.Errorf("devstack: DefaultFrom and AllowedFrom: %w", err)
	}
	s.allowedFrom = allowed
	key, hash, err := MintKey()
	if err != nil {
		return nil, err
	}
	s.apiKey, s.apiKeyHash = key, hash
	s.components = []Component{SQS, SES}
	for i := 1; i <= cfg.Senders; i++ {
		s.components = append(s.components, SenderN(i))
	}
	for i := 1; i <= cfg.APIs; i++ {
		s.components = append(s.components, APIN(i))
	}
	for _, c := range s.components {
		s.procs[c] = &proc{name: string(c), logPath: filepath.Join(cfg.LogDir, string(c)+".log"), echo: cfg.Echo}
	}
	if err := s.startAll(ctx); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return s, nil
}

func (cfg *Config) defaults() error {
	if cfg.BinDir == "" {
		return errors.New("devstack: Config.BinDir is required (see devstack.Build)")
	}
	if cfg.Root == "" {
		root, err := FindRoot(".")
		if err != nil {
			return fmt.Errorf("devstack: %w", err)
		}
		cfg.Root = root
	}
	if cfg.LogDir == "" {
		dir, err := os.MkdirTemp("", "herald-devstack-")
		if err != nil {
			return fmt.Errorf("devstack: log directory: %w", err)
		}
		cfg.LogDir = dir
	} else if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		return fmt.Errorf("devstack: log directory: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	for _, a := range []string{cfg.SQSAddr, cfg.SESAddr, cfg.GateAddr, cfg.SecretsAddr, cfg.APIAddr, cfg.SenderAddr} {
		if err := checkLoopback(a); err != nil {
			return fmt.Errorf("devstack: %w", err)
		}
	}
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&cfg.Region, "us-east-1")
	def(&cfg.QueueName, "herald-notifications")
	def(&cfg.DLQName, "herald-notifications-dlq")
	def(&cfg.DefaultFrom, "noreply@example.com")
	def(&cfg.KeysSecret, "herald-local/api-key-hashes")
	def(&cfg.StoreTable, "herald-local-state")
	def(&cfg.IDSecret, "herald-local/id-secret")
	if cfg.KeysRefresh == 0 {
		cfg.KeysRefresh = 10 * time.Second
	}
	if cfg.AllowedFrom == nil {
		cfg.AllowedFrom = []string{"@example.com", "@example.net"}
	}
	if cfg.Verified == nil {
		cfg.Verified = []string{"example.com"}
	}
	if cfg.MaxReceiveCount == 0 {
		cfg.MaxReceiveCount = 5
	}
	if cfg.Senders == 0 {
		cfg.Senders = 1
	}
	if cfg.Senders < 1 || cfg.Senders > 20 {
		return fmt.Errorf("devstack: Senders %d is outside 1..20", cfg.Senders)
	}
	if cfg.APIs == 0 {
		cfg.APIs = 1
	}
	if cfg.APIs < 1 || cfg.APIs > 20 {
		return fmt.Errorf("devstack: APIs %d is outside 1..20", cfg.APIs)
	}
	if cfg.VisibilityTimeout == 0 {
		cfg.VisibilityTimeout = 30 * time.Second
	}
	if cfg.VisibilityTimeout < time.Second || cfg.VisibilityTimeout%time.Second != 0 {
		return fmt.Errorf("devstack: VisibilityTimeout %s must be whole seconds", cfg.VisibilityTimeout)
	}
	if cfg.MaxSendRate == 0 {
		cfg.MaxSendRate = 200
	}
	if cfg.MetricsInterval == 0 {
		cfg.MetricsInterval = 5 * time.Second
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 15 * time.Second
	}
	def(&cfg.Node, "node")
	node, err := exec.LookPath(cfg.Node)
	if err != nil {
		return fmt.Errorf("devstack: Node.js (%s) is needed for the SES emulator: %w", cfg.Node, err)
	}
	cfg.Node = node
	need := []string{filepath.Join(cfg.BinDir, BinSQSLocal)}
	if !cfg.EmulatorsOnly {
		need = append(need, filepath.Join(cfg.BinDir, BinNotificationAPI), filepath.Join(cfg.BinDir, BinEmailSender))
	}
	for _, f := range need {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("devstack: binary %s is missing (build it with devstack.Build): %w", f, err)
		}
	}
	if _, err := os.Stat(sesCLI(cfg.Root)); err != nil {
		return fmt.Errorf("devstack: the SES emulator is not installed (run `make tools`, or `npm ci` at the repository root): %w", err)
	}
	return nil
}

func checkLoopback(addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("address %q is not on loopback", addr)
	}
	return nil
}

func sesCLI(root string) string {
	return filepath.Join(root, "node_modules", "aws-ses-v2-local", "dist", "cli.js")
}

func (s *Stack) startAll(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.launch(ctx, SQS); err != nil {
		return err
	}
	if err := s.launch(ctx, SES); err != nil {
		return err
	}
	gateAddr := s.cfg.GateAddr
	if gateAddr == "" {
		gateAddr = "127.0.0.1:0"
	}
	// As the stacks set SES up: the account's suppression list for bounces
	// and complaints, and the sender's configuration set publishing its
	// events (SNS to the feedback queue).
	gate, err := sesgate.Start(gateAddr, sesgate.Config{
		Upstream:          s.sesURL,
		Verified:          s.cfg.Verified,
		MaxSendRate:       s.cfg.MaxSendRate,
		Region:            s.cfg.Region,
		SuppressedReasons: []string{sesgate.ReasonBounce, sesgate.ReasonComplaint},
		ConfigurationSets: []sesgate.ConfigurationSet{{Name: ConfigurationSet, Events: &sesgate.EventDestination{
			EventTypes: contract.SESEventTypes(), TopicARN: s.feedbackTopic(), SQSEndpoint: s.sqsEndpoint, QueueURL: s.feedbackURL,
		}}},
		Mailboxes: s.cfg.Mailboxes,
		Logger:    s.log.With("component", "sesgate"),
	})
	if err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	s.gate = gate
	s.log.Info("ready", "component", "sesgate", "url", gate.URL)
	secretsAddr := s.cfg.SecretsAddr
	if secretsAddr == "" {
		secretsAddr = "127.0.0.1:0"
	}
	idSecret, err := newIDSecret()
	if err != nil {
		return err
	}
	// The API-key secret starts with no key: the dev key is in
	// HERALD_API_KEY_HASHES, and herald-ops keys adds the others. The id
	// secret is random, as the stacks generate it.
	secrets, err := secretslocal.Start(secretsAddr, secretslocal.Config{
		Region:  s.cfg.Region,
		Secrets: map[string]string{s.cfg.KeysSecret: "{}", s.cfg.IDSecret: idSecret},
		Logger:  s.log.With("component", "secretslocal"),
	})
	if err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	s.secrets = secrets
	s.log.Info("ready", "component", "secretslocal", "url", secrets.URL)
	if !s.cfg.NoStore {
		if err := s.startDynamo(ctx); err != nil {
			return err
		}
	}
	if s.cfg.EmulatorsOnly {
		return nil
	}
	for _, c := range s.components {
		if IsSender(c) {
			if err := s.launch(ctx, c); err != nil {
				return err
			}
		}
	}
	for _, c := range s.components {
		if IsAPI(c) {
			if err := s.launch(ctx, c); err != nil {
				return err
			}
		}
	}
	return nil
}

// startDynamo starts the DynamoDB emulator and creates the store's table in
// it, as the stacks do in AWS: a string key, and TTL on. Callers hold s.mu.
func (s *Stack) startDynamo(ctx context.Context) error {
	logFile, err := os.OpenFile(filepath.Join(s.cfg.LogDir, "dynamodb.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("devstack: dynamodb log: %w", err)
	}
	s.dynamoLog = logFile
	out := &lineWriter{sink: &lineSink{file: logFile, echo: s.cfg.Echo, prefix: "[dynamodb] "}}
	dyn, err := dynamolocal.Start(ctx, dynamolocal.Config{Root: s.cfg.Root, Node: s.cfg.Node, Output: out, StartTimeout: s.cfg.StartTimeout})
	if err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	s.dynamo = dyn
	err = dyn.CreateTable(ctx, dynamolocal.Table{Name: s.cfg.StoreTable, PartitionKey: store.KeyAttribute, TTLAttribute: store.TTLAttribute})
	if err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	s.log.Info("ready", "component", "dynamolocal", "url", dyn.Endpoint, "table", s.cfg.StoreTable)
	return nil
}

// newIDSecret is a local id secret: 256 random bits in hex.
func newIDSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("devstack: id secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// launch starts one component and waits until it is ready. A service whose
// free port was taken between choosing it and binding it is started again
// on another one. Callers hold s.mu.
func (s *Stack) launch(ctx context.Context, c Component) error {
	p := s.procs[c]
	for attempt := 1; ; attempt++ {
		autoPort := s.addrs[c] == ""
		spec, ready, err := s.spec(c)
		if err != nil {
			return err
		}
		s.log.Info("starting", "component", c, "log", p.logPath)
		if err := p.start(spec); err != nil {
			return fmt.Errorf("devstack: %w", err)
		}
		err = s.waitReady(ctx, p, ready)
		if err == nil {
			pid, _ := p.running()
			s.log.Info("ready", "component", c, "pid", pid, "addr", s.addrs[c])
			return nil
		}
		p.kill()
		if autoPort && attempt < 3 && strings.Contains(p.tail(20), "address already in use") {
			s.addrs[c] = ""
			continue
		}
		return fmt.Errorf("devstack: %s: %w", c, err)
	}
}

// spec says how to run a component and how to tell it is ready.
func (s *Stack) spec(c Component) (procSpec, func(context.Context) error, error) {
	switch c {
	case SQS:
		return s.sqsSpec()
	case SES:
		return s.sesSpec()
	}
	if IsAPI(c) || IsSender(c) {
		return s.serviceSpec(c)
	}
	return procSpec{}, nil, fmt.Errorf("devstack: unknown component %q", c)
}

func (s *Stack) sqsSpec() (procSpec, func(context.Context) error, error) {
	addr := s.addrs[SQS]
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	readyCh := make(chan sqslocal.Ready, 1)
	spec := procSpec{
		path: filepath.Join(s.cfg.BinDir, BinSQSLocal),
		args: []string{
			"-addr", addr,
			"-queue", s.cfg.QueueName,
			"-dlq", s.cfg.DLQName,
			"-max-receive-count", strconv.Itoa(s.cfg.MaxReceiveCount),
			"-visibility-timeout", s.cfg.VisibilityTimeout.String(),
		},
		variables: baseVariables(),
		dir:       s.cfg.Root,
		onStdout: func(line string) {
			var r sqslocal.Ready
			if json.Unmarshal([]byte(line), &r) == nil && r.Ready {
				select {
				case readyCh <- r:
				default:
				}
			}
		},
	}
	ready := func(context.Context) error {
		select {
		case r := <-readyCh:
			u, err := url.Parse(r.Endpoint)
			if err != nil {
				return fmt.Errorf("ready line endpoint %q: %w", r.Endpoint, err)
			}
			s.addrs[SQS] = u.Host
			s.sqsEndpoint, s.queueURL, s.dlqURL = r.Endpoint, r.QueueURL, r.DLQURL
			s.feedbackURL, s.feedbackDLQURL = r.FeedbackURL, r.FeedbackDLQURL
			return nil
		default:
			return errors.New("no ready line yet")
		}
	}
	return spec, ready, nil
}

// sesRunning matches the emulator's start line ("server running at
// http://localhost:PORT") to learn the port it bound.
var sesRunning = regexp.MustCompile(`server running at \S*:(\d+)`)

func (s *Stack) sesSpec() (procSpec, func(context.Context) error, error) {
	port := "0"
	if a := s.addrs[SES]; a != "" {
		_, p, err := net.SplitHostPort(a)
		if err != nil {
			return procSpec{}, nil, err
		}
		port = p
	}
	portCh := make(chan string, 1)
	spec := procSpec{
		path:      s.cfg.Node,
		args:      []string{sesCLI(s.cfg.Root), "--host", "127.0.0.1", "--port", port},
		variables: baseVariables(),
		dir:       s.cfg.Root,
		onStdout: func(line string) {
			if m := sesRunning.FindStringSubmatch(line); m != nil {
				select {
				case portCh <- m[1]:
				default:
				}
			}
		},
	}
	var bound string
	ready := func(ctx context.Context) error {
		if bound == "" {
			select {
			case bound = <-portCh:
			default:
				return errors.New("no start line yet")
			}
		}
		base := "http://" + net.JoinHostPort("127.0.0.1", bound)
		if err := s.get(ctx, base+"/health-check"); err != nil {
			return err
		}
		s.addrs[SES] = net.JoinHostPort("127.0.0.1", bound)
		s.sesURL = base
		return nil
	}
	return spec, ready, nil
}

func (s *Stack) serviceSpec(c Component) (procSpec, func(context.Context) error, error) {
	if s.addrs[c] == "" {
		port, err := freePort()
		if err != nil {
			return procSpec{}, nil, fmt.Errorf("devstack: %s: %w", c, err)
		}
		s.addrs[c] = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	// The services' defaults hold unless the local pipeline needs another
	// value; every name is the contract's.
	env := map[string]string{
		contract.Region.Name:          s.cfg.Region,
		contract.EndpointSQS.Name:     s.sqsEndpoint,
		contract.QueueURL.Name:        s.queueURL,
		contract.HTTPAddr.Name:        s.addrs[c],
		contract.MetricsInterval.Name: contract.MetricsInterval.Format(s.cfg.MetricsInterval),
		// Well inside StopTimeout, so a SIGTERM drain is seen to finish.
		contract.ShutdownTimeout.Name: contract.ShutdownTimeout.Format(5 * time.Second),
		// The same list for both, the default sender in it, as the stacks set it.
		contract.AllowedFrom.Name: s.allowedFrom,
	}
	if !s.cfg.NoStore {
		// The state store, in the DynamoDB emulator.
		env[contract.EndpointDynamoDB.Name] = s.dynamo.Endpoint
		env[contract.StoreTable.Name] = s.cfg.StoreTable
		env[contract.StatusTTL.Name] = contract.StatusTTL.Format(contract.StatusTTL.Default)
	}
	bin, path := BinNotificationAPI, contract.ReadyPath
	extra := s.cfg.APIVariables
	if IsAPI(c) {
		env[contract.DefaultFrom.Name] = s.cfg.DefaultFrom
		env[contract.APIKeyHashes.Name] = DevKeyID + ":" + s.apiKeyHash
		env[contract.EndpointSecretsManager.Name] = s.secrets.URL
		env[contract.APIKeysSecretID.Name] = s.cfg.KeysSecret
		env[contract.APIKeysRefresh.Name] = contract.APIKeysRefresh.Format(s.cfg.KeysRefresh)
		if !s.cfg.NoStore {
			env[contract.IDSecretID.Name] = s.cfg.IDSecret
		}
	} else {
		bin, path = BinEmailSender, contract.LivePath
		extra = s.cfg.SenderVariables
		env[contract.EndpointSESv2.Name] = s.gate.URL
		env[contract.DLQURL.Name] = s.dlqURL
		env[contract.VisibilityTimeout.Name] = contract.VisibilityTimeout.Format(s.cfg.VisibilityTimeout)
		// Local retries come back quickly (SQS visibility has whole seconds);
		// production keeps the defaults.
		env[contract.RetryBase.Name] = contract.RetryBase.Format(time.Second)
		env[contract.RetryMax.Name] = contract.RetryMax.Format(10 * time.Second)
		env[contract.SenderTasks.Name] = contract.SenderTasks.Format(s.cfg.Senders)
		if !s.cfg.NoStore {
			// SES feedback, as the stacks set it, with local backoffs.
			env[contract.SESConfigurationSet.Name] = ConfigurationSet
			env[contract.FeedbackQueueURL.Name] = s.feedbackURL
			env[contract.FeedbackDLQURL.Name] = s.feedbackDLQURL
			env[contract.FeedbackTopicARN.Name] = s.feedbackTopic()
			env[contract.FeedbackRetryBase.Name] = contract.FeedbackRetryBase.Format(time.Second)
			env[contract.FeedbackRetryMax.Name] = contract.FeedbackRetryMax.Format(10 * time.Second)
		}
	}
	for k, v := range extra {
		env[k] = v
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	vars := baseVariables()
	for _, k := range keys {
		vars = append(vars, k+"="+env[k])
	}
	health := "http://" + s.addrs[c] + path
	spec := procSpec{path: filepath.Join(s.cfg.BinDir, bin), variables: vars, dir: s.cfg.Root}
	return spec, func(ctx context.Context) error { return s.get(ctx, health) }, nil
}

// baseVariables are what every child inherits: enough to run, and AWS settings
// that keep the SDK away from real AWS (static dummy credentials, no shared
// config files, no instance metadata).
func baseVariables() []string {
	env := []string{
		"AWS_ACCESS_KEY_ID=local",
		"AWS_SECRET_ACCESS_KEY=local",
		"AWS_CONFIG_FILE=" + os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull,
		"AWS_EC2_METADATA_DISABLED=true",
	}
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "LANG", "TZ", "SYSTEMROOT"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// get succeeds when url answers 200.
func (s *Stack) get(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return herald.GetOK(ctx, s.http, url)
}

// waitReady polls ready until it succeeds, the process exits, or the start
// timeout passes.
func (s *Stack) waitReady(ctx context.Context, p *proc, ready func(context.Context) error) error {
	deadline := time.Now().Add(s.cfg.StartTimeout)
	exited := p.exited()
	for {
		err := ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before it was ready (%s); last lines of %s:\n%s", exitText(p.exitErr()), p.logPath, p.tail(15))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %s (%v); last lines of %s:\n%s", s.cfg.StartTimeout, err, p.logPath, p.tail(15))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ConfigurationSet is the local SES configuration set
// (HERALD_SES_CONFIGURATION_SET): the gate publishes its events to the
// feedback queue.
const ConfigurationSet = "herald"

// feedbackTopic is the ARN of the SNS topic the local events come from, in
// the account of the SQS emulator's queue URLs.
func (s *Stack) feedbackTopic() string {
	return "arn:aws:sns:" + s.cfg.Region + ":000000000000:herald-feedback"
}

// DevKeyID is the key id of the development API key.
const DevKeyID = "dev"

// MintKey makes an API key as `notification-api keygen` does (hk_ and 256
// random bits) and its SHA-256 hex, the form the API stores.
func MintKey() (key, sha256Hex string, err error) {
	key, sha256Hex, err = herald.NewAPIKey()
	if err != nil {
		return "", "", fmt.Errorf("mint API key: %w", err)
	}
	return key, sha256Hex, nil
}
