package herald

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
)

// Env reads configuration from environment variables once, collecting every
// problem so a misconfigured service reports all of them at start, each naming
// its variable.
type Env struct {
	getenv func(string) string
	errs   []error
}

// NewEnv reads through getenv (os.Getenv in main, a map in tests).
func NewEnv(getenv func(string) string) *Env { return &Env{getenv: getenv} }

// Err is nil when every value read so far was valid.
func (e *Env) Err() error { return errors.Join(e.errs...) }

// Failf records a problem with a variable that the caller checked itself.
func (e *Env) Failf(name, format string, args ...any) {
	e.errs = append(e.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

func (e *Env) lookup(name string) (string, bool) {
	v := strings.TrimSpace(e.getenv(name))
	return v, v != ""
}

// String returns the value or def when unset.
func (e *Env) String(name, def string) string {
	if v, ok := e.lookup(name); ok {
		return v
	}
	return def
}

// Required returns the value, recording an error when it is unset.
func (e *Env) Required(name string) string {
	v, ok := e.lookup(name)
	if !ok {
		e.Failf(name, "required but not set")
	}
	return v
}

// OneOf returns the value when it is one of allowed, def when unset.
func (e *Env) OneOf(name, def string, allowed ...string) string {
	v := strings.ToLower(e.String(name, def))
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	e.Failf(name, "%q is not one of %s", v, strings.Join(allowed, ", "))
	return def
}

// Int returns an integer in [min, max], def when unset.
func (e *Env) Int(name string, def, min, max int) int {
	v, ok := e.lookup(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.Failf(name, "%q is not a whole number", v)
		return def
	}
	if n < min || n > max {
		e.Failf(name, "%d is outside %d..%d", n, min, max)
		return def
	}
	return n
}

// Float returns a number in [min, max], def when unset.
func (e *Env) Float(name string, def, min, max float64) float64 {
	v, ok := e.lookup(name)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		e.Failf(name, "%q is not a number", v)
		return def
	}
	if f < min || f > max {
		e.Failf(name, "%g is outside %g..%g", f, min, max)
		return def
	}
	return f
}

// Duration returns a Go duration ("250ms", "20s") in [min, max], def when
// unset. A bare "0" is accepted as zero.
func (e *Env) Duration(name string, def, min, max time.Duration) time.Duration {
	v, ok := e.lookup(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if v == "0" {
		d, err = 0, nil
	}
	if err != nil {
		e.Failf(name, "%q is not a duration such as 500ms, 20s or 5m", v)
		return def
	}
	if d < min || d > max {
		e.Failf(name, "%s is outside %s..%s", d, min, max)
		return def
	}
	return d
}

// List splits a comma-separated value, dropping empty items; def when unset.
func (e *Env) List(name string, def []string) []string {
	v, ok := e.lookup(name)
	if !ok {
		return def
	}
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// Addr returns a host:port listen or dial address, def when unset.
func (e *Env) Addr(name, def string) string {
	v := e.String(name, def)
	if _, port, err := net.SplitHostPort(v); err != nil {
		e.Failf(name, "%q is not host:port: %v", v, err)
		return def
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		e.Failf(name, "%q has no valid port", v)
		return def
	}
	return v
}

// Common is the configuration both services read.
type Common struct {
	Env             string
	Region          string
	QueueURL        string
	HTTPAddr        string
	LogLevel        string
	MetricsInterval time.Duration
	ShutdownTimeout time.Duration
}

// LogAttrs are the shared settings as every service logs them at start,
// durations as text ("5s"), so both services' start lines read alike.
func (c Common) LogAttrs() []slog.Attr {
	return []slog.Attr{
		slog.String("env", c.Env),
		slog.String("region", c.Region),
		slog.String("queueUrl", c.QueueURL),
		slog.String("httpAddr", c.HTTPAddr),
		slog.String("logLevel", c.LogLevel),
		slog.String("metricsInterval", c.MetricsInterval.String()),
		slog.String("shutdownTimeout", c.ShutdownTimeout.String()),
	}
}

// ReadCommon reads the variables every service shares; defaultAddr differs
// per service.
func ReadCommon(e *Env, defaultAddr string) Common {
	return Common{
		Env:             e.String("HERALD_ENV", "local"),
		Region:          e.Required("AWS_REGION"),
		QueueURL:        e.Required("HERALD_QUEUE_URL"),
		HTTPAddr:        e.Addr("HERALD_HTTP_ADDR", defaultAddr),
		LogLevel:        e.OneOf("HERALD_LOG_LEVEL", "info", "debug", "info", "warn", "error"),
		MetricsInterval: e.Duration("HERALD_METRICS_INTERVAL", 10*time.Second, 0, time.Hour),
		ShutdownTimeout: e.Duration("HERALD_SHUTDOWN_TIMEOUT", 25*time.Second, time.Second, 2*time.Minute),
	}
}

// HealthURL is where the `healthcheck` subcommand looks for the service's own
// liveness endpoint: loopback, on the port of addr.
func HealthURL(addr string) (string, error) {
	return HealthURLAt(addr, "/healthz")
}

// HealthURLAt is HealthURL with another path.
func HealthURLAt(addr, path string) (string, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("HERALD_HTTP_ADDR %q: %w", addr, err)
	}
	return "http://" + net.JoinHostPort("127.0.0.1", port) + path, nil
}
