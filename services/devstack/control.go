package devstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"

	"herald/services/contract"
	"herald/services/devstack/dynamolocal"
	"herald/services/devstack/sesgate"
)

// Stop sends SIGTERM to a component and waits for it to exit (SIGKILL after
// Config.StopTimeout). The error says if it did not exit cleanly.
func (s *Stack) Stop(c Component) error {
	p, err := s.proc(c)
	if err != nil {
		return err
	}
	return p.stop(s.cfg.StopTimeout)
}

// Kill sends SIGKILL to a component and waits until it is gone.
func (s *Stack) Kill(c Component) error {
	p, err := s.proc(c)
	if err != nil {
		return err
	}
	p.kill()
	return nil
}

// Restart starts a component again, on the same address and with the same
// environment, stopping it first (SIGTERM) if it still runs, and waits until
// it is ready. A restarted SQS emulator has its queues again, empty; a
// restarted SES emulator has an empty store.
func (s *Stack) Restart(ctx context.Context, c Component) error {
	p, err := s.proc(c)
	if err != nil {
		return err
	}
	stopErr := p.stop(s.cfg.StopTimeout)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("devstack: stack is closed")
	}
	if err := s.launch(ctx, c); err != nil {
		return errors.Join(stopErr, err)
	}
	return nil
}

// Running reports whether a component's process is alive, and its pid.
func (s *Stack) Running(c Component) (pid int, ok bool) {
	p, err := s.proc(c)
	if err != nil {
		return 0, false
	}
	return p.running()
}

// Exited is closed when the component's current process exits.
func (s *Stack) Exited(c Component) <-chan struct{} {
	p, err := s.proc(c)
	if err != nil {
		closed := make(chan struct{})
		close(closed)
		return closed
	}
	return p.exited()
}

// ExitErr is how a component's last process ended; nil for exit status 0
// (or while it runs).
func (s *Stack) ExitErr(c Component) error {
	p, err := s.proc(c)
	if err != nil {
		return err
	}
	return p.exitErr()
}

// LogPath is the file a component's output goes to.
func (s *Stack) LogPath(c Component) string {
	if p, err := s.proc(c); err == nil {
		return p.logPath
	}
	return ""
}

func (s *Stack) proc(c Component) (*proc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.procs[c]
	if !ok {
		return nil, fmt.Errorf("devstack: unknown component %q", c)
	}
	if s.cfg.EmulatorsOnly && (IsAPI(c) || IsSender(c)) {
		return nil, fmt.Errorf("devstack: %s is not part of an emulators-only stack", c)
	}
	return p, nil
}

// Close stops every component, services first, whatever state they are in,
// and the gate. It is safe to call more than once.
func (s *Stack) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	var errs []error
	for i := len(s.components) - 1; i >= 0; i-- {
		c := s.components[i]
		p := s.procs[c]
		if _, ok := p.running(); !ok {
			continue
		}
		s.log.Info("stopping", "component", c)
		if err := p.stop(s.cfg.StopTimeout); err != nil {
			errs = append(errs, err)
		}
		if c == SES && s.gate != nil {
			if err := s.gate.Close(); err != nil {
				errs = append(errs, fmt.Errorf("sesgate: %w", err))
			}
			s.gate = nil
		}
	}
	if s.gate != nil {
		if err := s.gate.Close(); err != nil {
			errs = append(errs, fmt.Errorf("sesgate: %w", err))
		}
	}
	if s.dynamo != nil {
		if err := s.dynamo.Close(); err != nil {
			errs = append(errs, fmt.Errorf("dynamolocal: %w", err))
		}
		s.dynamo = nil
	}
	if s.dynamoLog != nil {
		s.dynamoLog.Close()
		s.dynamoLog = nil
	}
	if s.secrets != nil {
		if err := s.secrets.Close(); err != nil {
			errs = append(errs, fmt.Errorf("secretslocal: %w", err))
		}
		s.secrets = nil
	}
	s.http.CloseIdleConnections()
	return errors.Join(errs...)
}

// Components are the stack's components in start order, its extra senders
// and APIs included.
func (s *Stack) Components() []Component { return append([]Component(nil), s.components...) }

// APIURL is the notification API's base URL (the first API's).
func (s *Stack) APIURL() string { return s.baseURL(API) }

// URL is the base URL of one of the stack's services (APIN(i), SenderN(i));
// "" for a component it does not run.
func (s *Stack) URL(c Component) string {
	if !IsAPI(c) && !IsSender(c) {
		return ""
	}
	return s.baseURL(c)
}

// SenderURL is the email sender's base URL (health only).
func (s *Stack) SenderURL() string { return s.baseURL(Sender) }

func (s *Stack) baseURL(c Component) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.addrs[c] == "" {
		return ""
	}
	return "http://" + s.addrs[c]
}

// SQSEndpoint is the SQS emulator's endpoint (AWS_ENDPOINT_URL_SQS).
func (s *Stack) SQSEndpoint() string { s.mu.Lock(); defer s.mu.Unlock(); return s.sqsEndpoint }

// QueueURL is the notification queue's URL.
func (s *Stack) QueueURL() string { s.mu.Lock(); defer s.mu.Unlock(); return s.queueURL }

// DLQURL is the dead-letter queue's URL.
func (s *Stack) DLQURL() string { s.mu.Lock(); defer s.mu.Unlock(); return s.dlqURL }

// SESURL is the SES emulator's own URL: its web page at / shows sent mail.
func (s *Stack) SESURL() string { s.mu.Lock(); defer s.mu.Unlock(); return s.sesURL }

// GateURL is the SES gate's URL (AWS_ENDPOINT_URL_SESV2 of the sender).
func (s *Stack) GateURL() string { return s.Gate().URL }

// Gate is the SES gate: faults, verified identities, send rate, records.
func (s *Stack) Gate() *sesgate.Server { s.mu.Lock(); defer s.mu.Unlock(); return s.gate }

// SecretsURL is the Secrets Manager emulator's endpoint
// (AWS_ENDPOINT_URL_SECRETSMANAGER).
func (s *Stack) SecretsURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.secrets == nil {
		return ""
	}
	return s.secrets.URL
}

// Dynamo is the DynamoDB emulator holding the state store's table: its
// Endpoint (AWS_ENDPOINT_URL_DYNAMODB), request counts (Stats) and faults
// (SetFault).
func (s *Stack) Dynamo() *dynamolocal.Server { s.mu.Lock(); defer s.mu.Unlock(); return s.dynamo }

// StoreTable is the state store's table (HERALD_STORE_TABLE).
func (s *Stack) StoreTable() string { return s.cfg.StoreTable }

// FeedbackURL is the SES feedback queue (HERALD_FEEDBACK_QUEUE_URL) and
// FeedbackDLQURL its dead-letter queue.
func (s *Stack) FeedbackURL() string { s.mu.Lock(); defer s.mu.Unlock(); return s.feedbackURL }

func (s *Stack) FeedbackDLQURL() string { s.mu.Lock(); defer s.mu.Unlock(); return s.feedbackDLQURL }

// KeysSecretID is the API-key secret (HERALD_API_KEYS_SECRET_ID).
func (s *Stack) KeysSecretID() string { return s.cfg.KeysSecret }

// OpsVariables are the variables herald-ops needs to work on this stack: the
// emulators' endpoints, dummy credentials, the queues, the key secret and
// the API, as NAME=value.
func (s *Stack) OpsVariables() []string {
	vars := map[string]string{
		contract.Region.Name:          s.cfg.Region,
		"AWS_ACCESS_KEY_ID":           "local",
		"AWS_SECRET_ACCESS_KEY":       "local",
		"AWS_CONFIG_FILE":             os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		"AWS_EC2_METADATA_DISABLED":   "true",
		// Empty: a profile or session token of the caller's shell must not
		// mix with the dummy credentials.
		"AWS_PROFILE":                        "",
		"AWS_SESSION_TOKEN":                  "",
		contract.EndpointSQS.Name:            s.SQSEndpoint(),
		contract.EndpointSecretsManager.Name: s.SecretsURL(),
		contract.QueueURL.Name:               s.QueueURL(),
		contract.DLQURL.Name:                 s.DLQURL(),
		contract.APIKeysSecretID.Name:        s.KeysSecretID(),
		contract.OpsAPIURL:                   s.APIURL(),
	}
	out := make([]string, 0, len(vars))
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// APIKey is the development API key, for `Authorization: Bearer <key>`.
func (s *Stack) APIKey() string { return s.apiKey }

// LogDir holds the components' log files.
func (s *Stack) LogDir() string { return s.cfg.LogDir }

// Config is the configuration the stack runs with, defaults applied.
func (s *Stack) Config() Config { return s.cfg }

// HTTPClient is a client for talking to the stack (no proxy, short timeout).
func (s *Stack) HTTPClient() *http.Client { return s.http }
