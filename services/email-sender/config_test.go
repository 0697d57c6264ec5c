package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func baseEnv() map[string]string {
	return map[string]string{
		"AWS_REGION":       "eu-west-1",
		"HERALD_QUEUE_URL": "http://127.0.0.1:9324/000000000000/herald",
		"HERALD_DLQ_URL":   "http://127.0.0.1:9324/000000000000/herald-dlq",
	}
}

func getenvFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigDefaults(t *testing.T) {
	c, err := readConfig(getenvFrom(baseEnv()))
	if err != nil {
		t.Fatal(err)
	}
	want := config{
		DLQURL: "http://127.0.0.1:9324/000000000000/herald-dlq", Transport: "ses", Pollers: 2, Workers: 32,
		ReceiveBatch: 10, DeleteBatch: 10,
		WaitTime: 20 * time.Second, Visibility: 60 * time.Second, SendTimeout: 10 * time.Second,
		SenderTasks: 1, RetryBase: 5 * time.Second, RetryMax: 15 * time.Minute, RetryWindow: 12 * time.Hour,
		SMTPTLS: "starttls", StallAfter: 90 * time.Second,
	}
	want.Common = c.Common
	if c != want {
		t.Errorf("config\n%+v\nwant\n%+v", c, want)
	}
	if c.HTTPAddr != ":8081" || c.ShutdownTimeout != 25*time.Second {
		t.Errorf("common defaults: addr %q, shutdown %s", c.HTTPAddr, c.ShutdownTimeout)
	}
}

func TestConfigErrorsNameTheVariable(t *testing.T) {
	cases := []struct {
		name string
		set  map[string]string
		drop []string
		want []string // variable names the error must mention
	}{
		{"required missing", nil, []string{"AWS_REGION", "HERALD_QUEUE_URL", "HERALD_DLQ_URL"}, []string{"AWS_REGION", "HERALD_QUEUE_URL", "HERALD_DLQ_URL"}},
		{"bad transport", map[string]string{"HERALD_TRANSPORT": "carrier-pigeon"}, nil, []string{"HERALD_TRANSPORT"}},
		{"bad numbers", map[string]string{"HERALD_WORKERS": "lots", "HERALD_POLLERS": "0", "HERALD_SEND_RATE": "-1"}, nil, []string{"HERALD_WORKERS", "HERALD_POLLERS", "HERALD_SEND_RATE"}},
		{"batch sizes outside 1..10", map[string]string{"HERALD_RECEIVE_BATCH": "11", "HERALD_DELETE_BATCH": "0"}, nil, []string{"HERALD_RECEIVE_BATCH", "HERALD_DELETE_BATCH"}},
		{"wait over 20 s", map[string]string{"HERALD_WAIT_TIME": "30s"}, nil, []string{"HERALD_WAIT_TIME"}},
		{"fractional seconds", map[string]string{"HERALD_WAIT_TIME": "1500ms", "HERALD_VISIBILITY_TIMEOUT": "2.5s"}, nil, []string{"HERALD_WAIT_TIME", "HERALD_VISIBILITY_TIMEOUT"}},
		{"retry base over max", map[string]string{"HERALD_RETRY_BASE": "10m", "HERALD_RETRY_MAX": "1m"}, nil, []string{"HERALD_RETRY_BASE"}},
		// A re-queued copy waits its backoff as SQS DelaySeconds, at most 15 minutes.
		{"retry max over SQS's delay", map[string]string{"HERALD_RETRY_MAX": "16m"}, nil, []string{"HERALD_RETRY_MAX"}},
		{"retry window outside 1s..14 days", map[string]string{"HERALD_RETRY_WINDOW": "337h"}, nil, []string{"HERALD_RETRY_WINDOW"}},
		{"retry window zero", map[string]string{"HERALD_RETRY_WINDOW": "0s"}, nil, []string{"HERALD_RETRY_WINDOW"}},
		{"no sender tasks", map[string]string{"HERALD_SENDER_TASKS": "0"}, nil, []string{"HERALD_SENDER_TASKS"}},
		{"stall shorter than a poll", map[string]string{"HERALD_STALL_AFTER": "10s"}, nil, []string{"HERALD_STALL_AFTER"}},
		{"smtp without address", map[string]string{"HERALD_TRANSPORT": "smtp"}, nil, []string{"HERALD_SMTP_ADDR"}},
		{"smtp bad address", map[string]string{"HERALD_TRANSPORT": "smtp", "HERALD_SMTP_ADDR": "mail.example.com"}, nil, []string{"HERALD_SMTP_ADDR"}},
		{"plain text off loopback", map[string]string{"HERALD_TRANSPORT": "smtp", "HERALD_SMTP_ADDR": "mail.example.com:587", "HERALD_SMTP_TLS": "none"}, nil, []string{"HERALD_SMTP_TLS"}},
		{"bad tls mode", map[string]string{"HERALD_SMTP_TLS": "maybe"}, nil, []string{"HERALD_SMTP_TLS"}},
		{"username without password", map[string]string{"HERALD_TRANSPORT": "smtp", "HERALD_SMTP_ADDR": "mail.example.com:587", "HERALD_SMTP_USERNAME": "u"}, nil, []string{"HERALD_SMTP_PASSWORD"}},
		{"two credential sources", map[string]string{"HERALD_TRANSPORT": "smtp", "HERALD_SMTP_ADDR": "mail.example.com:587", "HERALD_SMTP_USERNAME": "u", "HERALD_SMTP_PASSWORD": "p", "HERALD_SMTP_SECRET_ID": "s"}, nil, []string{"HERALD_SMTP_SECRET_ID"}},
		{"bad listen address", map[string]string{"HERALD_HTTP_ADDR": "8081"}, nil, []string{"HERALD_HTTP_ADDR"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := baseEnv()
			for k, v := range tc.set {
				env[k] = v
			}
			for _, k := range tc.drop {
				delete(env, k)
			}
			_, err := readConfig(getenvFrom(env))
			if err == nil {
				t.Fatal("no error")
			}
			for _, name := range tc.want {
				if !strings.Contains(err.Error(), name) {
					t.Errorf("error %q does not name %s", err, name)
				}
			}
		})
	}
}

func TestConfigAcceptsPlainTextOnLoopback(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:1025", "[::1]:1025", "localhost:1025"} {
		env := baseEnv()
		env["HERALD_TRANSPORT"], env["HERALD_SMTP_ADDR"], env["HERALD_SMTP_TLS"] = "smtp", addr, "none"
		if _, err := readConfig(getenvFrom(env)); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
	}
}

func TestConfigLogMasksSecrets(t *testing.T) {
	env := baseEnv()
	env["HERALD_TRANSPORT"], env["HERALD_SMTP_ADDR"] = "smtp", "smtp.example.com:587"
	env["HERALD_SMTP_USERNAME"], env["HERALD_SMTP_PASSWORD"] = "AKIAEXAMPLEUSER", "sup3r-s3cret-pa55"
	c, err := readConfig(getenvFrom(env))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("starting", "config", c)
	out := buf.String()
	if strings.Contains(out, "sup3r-s3cret-pa55") || strings.Contains(out, "AKIAEXAMPLEUSER") {
		t.Errorf("credentials in the log: %s", out)
	}
	for _, want := range []string{`"smtpPassword":"***"`, `"smtpAddr":"smtp.example.com:587"`, `"workers":32`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s: %s", want, out)
		}
	}
}
