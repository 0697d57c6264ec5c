package herald

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestEnvDefaultsAndValues(t *testing.T) {
	e := NewEnv(envOf(map[string]string{
		"N": " 7 ", "D": "250ms", "Z": "0", "L": "a, b,,c", "M": "SMTP", "F": "1.5", "A": "127.0.0.1:9000",
	}))
	if got := e.Int("N", 1, 0, 10); got != 7 {
		t.Errorf("Int = %d", got)
	}
	if got := e.Int("UNSET", 3, 0, 10); got != 3 {
		t.Errorf("Int default = %d", got)
	}
	if got := e.Duration("D", time.Second, 0, time.Minute); got != 250*time.Millisecond {
		t.Errorf("Duration = %s", got)
	}
	if got := e.Duration("Z", time.Second, 0, time.Minute); got != 0 {
		t.Errorf("Duration 0 = %s", got)
	}
	if got := strings.Join(e.List("L", nil), "|"); got != "a|b|c" {
		t.Errorf("List = %q", got)
	}
	if got := e.OneOf("M", "ses", "ses", "smtp"); got != "smtp" {
		t.Errorf("OneOf = %q", got)
	}
	if got := e.Float("F", 0, 0, 10); got != 1.5 {
		t.Errorf("Float = %g", got)
	}
	if got := e.Addr("A", ":1"); got != "127.0.0.1:9000" {
		t.Errorf("Addr = %q", got)
	}
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestEnvErrorsNameTheVariable(t *testing.T) {
	e := NewEnv(envOf(map[string]string{
		"HERALD_WORKERS": "lots", "HERALD_POLLERS": "99", "HERALD_WAIT_TIME": "forever",
		"HERALD_TRANSPORT": "pigeon", "HERALD_HTTP_ADDR": "8080",
	}))
	e.Int("HERALD_WORKERS", 1, 1, 10)
	e.Int("HERALD_POLLERS", 1, 1, 10)
	e.Duration("HERALD_WAIT_TIME", time.Second, 0, 20*time.Second)
	e.OneOf("HERALD_TRANSPORT", "ses", "ses", "smtp")
	e.Addr("HERALD_HTTP_ADDR", ":8080")
	e.Required("HERALD_QUEUE_URL")
	err := e.Err()
	if err == nil {
		t.Fatal("no error")
	}
	for _, name := range []string{"HERALD_WORKERS", "HERALD_POLLERS", "HERALD_WAIT_TIME", "HERALD_TRANSPORT", "HERALD_HTTP_ADDR", "HERALD_QUEUE_URL"} {
		if !strings.Contains(err.Error(), name+":") {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestReadCommon(t *testing.T) {
	e := NewEnv(envOf(map[string]string{"AWS_REGION": "eu-west-1", "HERALD_QUEUE_URL": "http://q"}))
	c := ReadCommon(e, ":8081")
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != ":8081" || c.Env != "local" || c.ShutdownTimeout != 25*time.Second || c.LogLevel != "info" {
		t.Fatalf("defaults: %+v", c)
	}
	u, err := HealthURL(c.HTTPAddr)
	if err != nil || u != "http://127.0.0.1:8081/healthz" {
		t.Fatalf("HealthURL = %q, %v", u, err)
	}
}

func TestCommonLogAttrs(t *testing.T) {
	c := Common{Env: "dev", Region: "eu-west-1", QueueURL: "http://q", HTTPAddr: ":8080", LogLevel: "info",
		MetricsInterval: 10 * time.Second, ShutdownTimeout: 1500 * time.Millisecond}
	got := slog.GroupValue(c.LogAttrs()...).String()
	want := "[env=dev region=eu-west-1 queueUrl=http://q httpAddr=:8080 logLevel=info metricsInterval=10s shutdownTimeout=1.5s]"
	if got != want {
		t.Errorf("logged as %s, want %s", got, want)
	}
}
