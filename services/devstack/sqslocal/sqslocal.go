// Package sqslocal runs the goaws SQS emulator in this process, listening on
// loopback only (goaws's own binary binds every interface), with a queue and
// its dead-letter queue wired by a redrive policy.
//
// goaws keeps its queues in package-level state, so one process holds one
// emulator: Start refuses a second while the first is running. A stopped
// emulator can be started again (as a restarted SQS endpoint); its queues are
// then created anew, empty.
//
// Beyond goaws it answers StartMessageMoveTask, ListMessageMoveTasks and
// CancelMessageMoveTask (movetask.go), so dead-letter redrive works locally
// as on SQS.
package sqslocal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/Admiral-Piett/goaws/app/conf"
	"github.com/Admiral-Piett/goaws/app/gosqs"
	"github.com/Admiral-Piett/goaws/app/router"
	"github.com/sirupsen/logrus"
)

// AccountID is the account in local queue URLs and ARNs.
const AccountID = "000000000000"

// Queue is one queue to create at start.
type Queue struct {
	Name string
	// VisibilityTimeout in seconds; 0 means 30.
	VisibilityTimeout int
	// DeadLetter names another queue of the same Config; MaxReceiveCount
	// receives later a message moves there.
	DeadLetter      string
	MaxReceiveCount int
}

// Config says where to listen and what queues to create.
type Config struct {
	// Addr is a loopback host:port; "127.0.0.1:0" picks a free port.
	Addr   string
	Queues []Queue
}

// Server is a running emulator.
type Server struct {
	// Endpoint is the base URL for AWS_ENDPOINT_URL_SQS.
	Endpoint string
	ln       net.Listener
	srv      *http.Server
	quit     chan bool
	done     chan struct{}
	urls     map[string]string
	counter  *counter
	mover    *mover
}

var (
	runningMu sync.Mutex
	running   bool // goaws state is global: one emulator per process
)

// Start listens, loads the queues into goaws and serves until Close.
func Start(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("sqslocal: address %q: %w", cfg.Addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("sqslocal: address %q is not loopback", cfg.Addr)
	}
	if err := validate(cfg.Queues); err != nil {
		return nil, err
	}

	runningMu.Lock()
	defer runningMu.Unlock()
	if running {
		return nil, errors.New("sqslocal: an emulator is already running in this process (goaws state is global)")
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("sqslocal: listen on %s: %w", cfg.Addr, err)
	}
	lhost, port, _ := net.SplitHostPort(ln.Addr().String())
	if err := load(lhost, port, cfg.Queues); err != nil {
		ln.Close()
		return nil, err
	}
	count := newCounter()
	goaws := newCompat(router.New())
	moves := newMover(goaws)
	s := &Server{
		Endpoint: "http://" + ln.Addr().String(),
		counter:  count,
		mover:    moves,
		ln:       ln,
		srv: &http.Server{
			Handler:           count.wrap(moves.wrap(goaws)),
			ReadHeaderTimeout: 10 * time.Second,
			// Long polls last up to 20 s: leave room.
			WriteTimeout: 60 * time.Second,
			IdleTimeout:  120 * time.Second,
		},
		quit: make(chan bool),
		done: make(chan struct{}),
		urls: map[string]string{},
	}
	for _, q := range cfg.Queues {
		s.urls[q.Name] = s.Endpoint + "/" + AccountID + "/" + q.Name
	}
	go gosqs.PeriodicTasks(250*time.Millisecond, s.quit)
	go func() {
		defer close(s.done)
		s.srv.Serve(ln)
	}()
	running = true
	return s, nil
}

// Stats counts the requests served so far by action (also served as JSON
// at StatsPath).
func (s *Server) Stats() Stats { return s.counter.Snapshot() }

// QueueURL is the URL of a queue created at start.
func (s *Server) QueueURL(name string) string { return s.urls[name] }

// Close stops serving at once, dropping connections in flight (as an
// endpoint that goes away would), and frees the process for another Start.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	s.mover.close()
	close(s.quit)
	runningMu.Lock()
	running = false
	runningMu.Unlock()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Shutdown stops accepting and waits for requests in flight, up to ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	<-s.done
	s.mover.close()
	close(s.quit)
	runningMu.Lock()
	running = false
	runningMu.Unlock()
	return err
}

func validate(queues []Queue) error {
	if len(queues) == 0 {
		return errors.New("sqslocal: no queues configured")
	}
	names := map[string]bool{}
	for _, q := range queues {
		if q.Name == "" {
			return errors.New("sqslocal: a queue has no name")
		}
		if names[q.Name] {
			return fmt.Errorf("sqslocal: queue %q twice", q.Name)
		}
		names[q.Name] = true
	}
	for _, q := range queues {
		if q.DeadLetter == "" {
			continue
		}
		if !names[q.DeadLetter] {
			return fmt.Errorf("sqslocal: queue %q: dead-letter queue %q is not configured", q.Name, q.DeadLetter)
		}
		if q.MaxReceiveCount < 1 {
			return fmt.Errorf("sqslocal: queue %q: MaxReceiveCount must be at least 1 with a dead-letter queue", q.Name)
		}
	}
	return nil
}

// load hands goaws its configuration the only way it takes it: a YAML file
// (JSON is YAML) read by conf.LoadYamlConfig.
func load(host, port string, queues []Queue) error {
	type envQueue struct {
		Name              string
		VisibilityTimeout int    `json:",omitempty"`
		RedrivePolicy     string `json:",omitempty"`
	}
	env := map[string]any{
		"Host":      host,
		"Port":      port,
		"AccountId": AccountID,
		"QueueAttributeDefaults": map[string]int{
			"VisibilityTimeout":  30,
			"MaximumMessageSize": 262144,
		},
	}
	var qs []envQueue
	for _, q := range queues {
		eq := envQueue{Name: q.Name, VisibilityTimeout: q.VisibilityTimeout}
		if q.DeadLetter != "" {
			policy, _ := json.Marshal(map[string]string{
				"maxReceiveCount":     strconv.Itoa(q.MaxReceiveCount),
				"deadLetterTargetArn": "arn:aws:sqs::" + AccountID + ":" + q.DeadLetter,
			})
			eq.RedrivePolicy = string(policy)
		}
		qs = append(qs, eq)
	}
	env["Queues"] = qs
	data, err := json.Marshal(map[string]any{"Herald": env})
	if err != nil {
		return fmt.Errorf("sqslocal: encode config: %w", err)
	}
	dir, err := os.MkdirTemp("", "sqslocal-")
	if err != nil {
		return fmt.Errorf("sqslocal: %w", err)
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "goaws.yaml")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		return fmt.Errorf("sqslocal: write config: %w", err)
	}
	// goaws logs every empty receive as a warning; keep its errors only.
	logrus.SetLevel(logrus.ErrorLevel)
	conf.LoadYamlConfig(file, "Herald")
	return nil
}
