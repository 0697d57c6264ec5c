package contract

import (
	"bytes"
	"encoding/hex"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// The tests spell the variables as an operator writes them, so that a
// renamed variable fails here as it would fail its users.

func getenvOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func apiVariables() map[string]string {
	return map[string]string{
		"AWS_REGION":            "eu-west-1",
		"HERALD_QUEUE_URL":      "https://sqs.eu-west-1.amazonaws.com/123456789012/herald",
		"HERALD_DEFAULT_FROM":   "Herald <noreply@herald.test>",
		"HERALD_API_KEY_HASHES": "dev:" + hex.EncodeToString(make([]byte, 32)),
	}
}

func senderVariables() map[string]string {
	return map[string]string{
		"AWS_REGION":          "eu-west-1",
		"HERALD_QUEUE_URL":    "http://127.0.0.1:9324/000000000000/herald",
		"HERALD_DLQ_URL":      "http://127.0.0.1:9324/000000000000/herald-dlq",
		"HERALD_ALLOWED_FROM": "@herald.test",
	}
}

// with returns a copy of m with set applied; "" deletes.
func with(m, set map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for k, v := range set {
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

func TestSenderDefaults(t *testing.T) {
	c, err := ReadSender(getenvOf(senderVariables()))
	if err != nil {
		t.Fatal(err)
	}
	allowed, _ := ParseAllowList("@herald.test")
	want := SenderConfig{
		Common: Common{
			Environment: "local", Region: "eu-west-1", QueueURL: "http://127.0.0.1:9324/000000000000/herald", HTTPAddr: ":8081",
			LogLevel: "info", MetricsInterval: 10 * time.Second, ShutdownTimeout: 25 * time.Second,
			StatusTTL: 30 * 24 * time.Hour,
		},
		DLQURL: "http://127.0.0.1:9324/000000000000/herald-dlq", AllowedFrom: allowed, Transport: "ses", Pollers: 2, Workers: 32,
		ReceiveBatch: 10, DeleteBatch: 10,
		WaitTime: 20 * time.Second, Visibility: 60 * time.Second, SendTimeout: 10 * time.Second,
		SenderTasks: 1, RetryBase: 5 * time.Second, RetryMax: 15 * time.Minute, RetryWindow: 12 * time.Hour,
		SMTPTLS: "starttls", StallAfter: 90 * time.Second,
		Feedback: FeedbackConfig{Pollers: 1, WaitTime: 20 * time.Second, ProcessTimeout: 5 * time.Second, Visibility: 30 * time.Second,
			RetryBase: 5 * time.Second, RetryMax: 5 * time.Minute},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("config\n%+v\nwant\n%+v", c, want)
	}
}

func TestSenderErrorsNameTheVariable(t *testing.T) {
	cases := []struct {
		name string
		set  map[string]string
		want []string // variable names the error must mention
	}{
		{"required missing", map[string]string{"AWS_REGION": "", "HERALD_QUEUE_URL": "", "HERALD_DLQ_URL": "", "HERALD_ALLOWED_FROM": ""},
			[]string{"AWS_REGION", "HERALD_QUEUE_URL", "HERALD_DLQ_URL", "HERALD_ALLOWED_FROM"}},
		{"queue not a URL", map[string]string{"HERALD_QUEUE_URL": "herald"}, []string{"HERALD_QUEUE_URL"}},
		{"bad transport", map[string]string{"HERALD_TRANSPORT": "carrier-pigeon"}, []string{"HERALD_TRANSPORT"}},
		{"bad numbers", map[string]string{"HERALD_WORKERS": "lots", "HERALD_POLLERS": "0", "HERALD_SEND_RATE": "-1"}, []string{"HERALD_WORKERS", "HERALD_POLLERS", "HERALD_SEND_RATE"}},
		{"batch sizes outside 1..10", map[string]string{"HERALD_RECEIVE_BATCH": "11", "HERALD_DELETE_BATCH": "0"}, []string{"HERALD_RECEIVE_BATCH", "HERALD_DELETE_BATCH"}},
		{"wait over 20 s", map[string]string{"HERALD_WAIT_TIME": "30s"}, []string{"HERALD_WAIT_TIME"}},
		// Regression: 0 was accepted here, then silently replaced by 20 s
		// in the consumer. SQS would short-poll; it is refused instead.
		{"wait 0", map[string]string{"HERALD_WAIT_TIME": "0"}, []string{"HERALD_WAIT_TIME: 0 is outside 1s to 20s"}},
		{"fractional seconds", map[string]string{"HERALD_WAIT_TIME": "1500ms", "HERALD_VISIBILITY_TIMEOUT": "2.5s"}, []string{"HERALD_WAIT_TIME", "HERALD_VISIBILITY_TIMEOUT"}},
		{"retry base over max", map[string]string{"HERALD_RETRY_BASE": "10m", "HERALD_RETRY_MAX": "1m"}, []string{"HERALD_RETRY_BASE"}},
		// A re-queued copy waits its backoff as SQS DelaySeconds, at most 15 minutes.
		{"retry max over SQS's delay", map[string]string{"HERALD_RETRY_MAX": "16m"}, []string{"HERALD_RETRY_MAX"}},
		{"retry window outside 1s..14 days", map[string]string{"HERALD_RETRY_WINDOW": "337h"}, []string{"HERALD_RETRY_WINDOW"}},
		{"retry window zero", map[string]string{"HERALD_RETRY_WINDOW": "0s"}, []string{"HERALD_RETRY_WINDOW"}},
		{"send timeout over 5 minutes", map[string]string{"HERALD_SEND_TIMEOUT": "10m"}, []string{"HERALD_SEND_TIMEOUT"}},
		{"no sender tasks", map[string]string{"HERALD_SENDER_TASKS": "0"}, []string{"HERALD_SENDER_TASKS"}},
		{"stall shorter than a poll", map[string]string{"HERALD_STALL_AFTER": "10s"}, []string{"HERALD_STALL_AFTER"}},
		{"bad allowed sender", map[string]string{"HERALD_ALLOWED_FROM": "@herald.test,nobody"}, []string{"HERALD_ALLOWED_FROM"}},
		{"smtp without address", map[string]string{"HERALD_TRANSPORT": "smtp"}, []string{"HERALD_SMTP_ADDR"}},
		{"smtp bad address", map[string]string{"HERALD_TRANSPORT": "smtp", "HERALD_SMTP_ADDR": "mail.example.com"}, []string{"HERALD_SMTP_ADDR"}},
		{"plain text off loopback", map[string]string{"HERALD_TRANSPORT": "smtp", "HERALD_SMTP_ADDR": "mail.example.com:587", "HERALD_SMTP_TLS": "none"}, []string{"HERALD_SMTP_TLS"}},
		{"bad tls mode", map[string]string{"HERALD_SMTP_TLS": "maybe"}, []string{"HERALD_SMTP_TLS"}},
		{"username without password", map[string]string{"HERALD_TRANSPORT": "smtp", "HERALD_SMTP_ADDR": "mail.example.com:587", "HERALD_SMTP_USERNAME": "u"}, []string{"HERALD_SMTP_PASSWORD"}},
		{"two credential sources", map[string]string{"HERALD_TRANSPORT": "smtp", "HERALD_SMTP_ADDR": "mail.example.com:587", "HERALD_SMTP_USERNAME": "u", "HERALD_SMTP_PASSWORD": "p", "HERALD_SMTP_SECRET_ID": "s"}, []string{"HERALD_SMTP_SECRET_ID"}},
		{"bad listen address", map[string]string{"HERALD_HTTP_ADDR": "8081"}, []string{"HERALD_HTTP_ADDR"}},
		{"bad endpoint", map[string]string{"AWS_ENDPOINT_URL_SESV2": "gate"}, []string{"AWS_ENDPOINT_URL_SESV2"}},
		// SES feedback: it records on the store, SES publishes only through a
		// configuration set, and its own settings hold to each other.
		{"feedback without its DLQ, the store, or a configuration set", map[string]string{"HERALD_FEEDBACK_QUEUE_URL": "http://127.0.0.1:9324/000000000000/fb"},
			[]string{"HERALD_FEEDBACK_DLQ_URL", "HERALD_FEEDBACK_QUEUE_URL: needs HERALD_STORE_TABLE", "HERALD_SES_CONFIGURATION_SET"}},
		{"feedback on smtp", with(feedbackOn(), map[string]string{"HERALD_TRANSPORT": "smtp", "HERALD_SMTP_ADDR": "127.0.0.1:1025"}),
			[]string{"HERALD_FEEDBACK_QUEUE_URL: SES feedback needs HERALD_TRANSPORT ses"}},
		{"feedback DLQ is the queue", with(feedbackOn(), map[string]string{"HERALD_FEEDBACK_DLQ_URL": "http://127.0.0.1:9324/000000000000/fb"}),
			[]string{"HERALD_FEEDBACK_DLQ_URL"}},
		{"feedback visibility under three process timeouts", with(feedbackOn(), map[string]string{"HERALD_FEEDBACK_PROCESS_TIMEOUT": "20s"}),
			[]string{"HERALD_FEEDBACK_VISIBILITY"}},
		{"feedback retry base over max", with(feedbackOn(), map[string]string{"HERALD_FEEDBACK_RETRY_BASE": "10m"}), []string{"HERALD_FEEDBACK_RETRY_BASE"}},
		{"feedback topic not an ARN", with(feedbackOn(), map[string]string{"HERALD_FEEDBACK_TOPIC_ARN": "herald-feedback"}), []string{"HERALD_FEEDBACK_TOPIC_ARN"}},
		{"feedback wait 0", with(feedbackOn(), map[string]string{"HERALD_FEEDBACK_WAIT": "0"}), []string{"HERALD_FEEDBACK_WAIT"}},
		{"feedback pollers over 100", with(feedbackOn(), map[string]string{"HERALD_FEEDBACK_POLLERS": "101"}), []string{"HERALD_FEEDBACK_POLLERS"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadSender(getenvOf(with(senderVariables(), tc.set)))
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

// feedbackOn is what SES feedback needs besides the sender's own settings.
func feedbackOn() map[string]string {
	return map[string]string{
		"HERALD_FEEDBACK_QUEUE_URL": "http://127.0.0.1:9324/000000000000/fb", "HERALD_FEEDBACK_DLQ_URL": "http://127.0.0.1:9324/000000000000/fb-dlq",
		"HERALD_STORE_TABLE": "herald-state", "HERALD_SES_CONFIGURATION_SET": "herald",
	}
}

func TestSenderReadsFeedback(t *testing.T) {
	c, err := ReadSender(getenvOf(with(senderVariables(), with(feedbackOn(), map[string]string{
		"HERALD_FEEDBACK_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:herald-feedback", "HERALD_FEEDBACK_POLLERS": "3",
	}))))
	if err != nil {
		t.Fatal(err)
	}
	want := FeedbackConfig{QueueURL: "http://127.0.0.1:9324/000000000000/fb", DLQURL: "http://127.0.0.1:9324/000000000000/fb-dlq",
		TopicARN: "arn:aws:sns:eu-west-1:123456789012:herald-feedback", Pollers: 3, WaitTime: 20 * time.Second,
		ProcessTimeout: 5 * time.Second, Visibility: 30 * time.Second, RetryBase: 5 * time.Second, RetryMax: 5 * time.Minute}
	if c.Feedback != want {
		t.Errorf("feedback %+v, want %+v", c.Feedback, want)
	}
}

func TestSenderAcceptsPlainTextOnLoopback(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:1025", "[::1]:1025", "localhost:1025"} {
		vars := with(senderVariables(), map[string]string{"HERALD_TRANSPORT": "smtp", "HERALD_SMTP_ADDR": addr, "HERALD_SMTP_TLS": "none"})
		if _, err := ReadSender(getenvOf(vars)); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
	}
}

func TestSenderLogMasksSecrets(t *testing.T) {
	vars := with(senderVariables(), map[string]string{
		"HERALD_TRANSPORT": "smtp", "HERALD_SMTP_ADDR": "smtp.example.com:587",
		"HERALD_SMTP_USERNAME": "AKIAEXAMPLEUSER", "HERALD_SMTP_PASSWORD": "sup3r-s3cret-pa55",
		"HERALD_ALLOWED_FROM": "alerts@herald.test,@herald.test",
	})
	c, err := ReadSender(getenvOf(vars))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("starting", "config", c)
	out := buf.String()
	for _, leak := range []string{"sup3r-s3cret-pa55", "AKIAEXAMPLEUSER", "alerts@"} {
		if strings.Contains(out, leak) {
			t.Errorf("%s in the log: %s", leak, out)
		}
	}
	for _, want := range []string{`"smtpPassword":"***"`, `"smtpAddr":"smtp.example.com:587"`, `"workers":32`, `"allowedFrom":["a***@herald.test","@herald.test"]`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s: %s", want, out)
		}
	}
}

func TestAPIDefaults(t *testing.T) {
	c, err := ReadAPI(getenvOf(apiVariables()))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != ":8080" || c.MaxMessageBytes != 262144 || c.RateLimit != 100 || c.RateBurst != 200 ||
		c.BatchLinger != 2*time.Millisecond || c.ReadyCache != 5*time.Second || c.KeysRefresh != 5*time.Minute ||
		c.ShutdownTimeout != 25*time.Second || c.Environment != "local" || c.MaxConnections != 1024 ||
		c.StoreTable != "" || c.IdempotencyTTL != 24*time.Hour || c.StatusTTL != 30*24*time.Hour {
		t.Errorf("defaults: %+v", c)
	}
	if got := c.AllowedFrom.Entries(); !slices.Equal(got, []string{"noreply@herald.test"}) {
		t.Errorf("allowed senders %v, want the default sender only", got)
	}
	if len(c.KeyHashes) != 1 || c.KeyHashes[0].ID != "dev" {
		t.Errorf("keys %+v", c.KeyHashes)
	}
}

func TestAPIErrorsNameTheVariable(t *testing.T) {
	for _, c := range []struct {
		name string
		set  map[string]string
		want []string
	}{
		{"region", map[string]string{"AWS_REGION": ""}, []string{"AWS_REGION"}},
		{"queue", map[string]string{"HERALD_QUEUE_URL": ""}, []string{"HERALD_QUEUE_URL"}},
		{"default sender missing", map[string]string{"HERALD_DEFAULT_FROM": ""}, []string{"HERALD_DEFAULT_FROM"}},
		{"default sender bad", map[string]string{"HERALD_DEFAULT_FROM": "nobody"}, []string{"HERALD_DEFAULT_FROM"}},
		{"default sender posing", map[string]string{"HERALD_DEFAULT_FROM": `"ceo@bank.test" <noreply@herald.test>`}, []string{"HERALD_DEFAULT_FROM"}},
		{"allowed sender bad", map[string]string{"HERALD_ALLOWED_FROM": "a@b.c,@"}, []string{"HERALD_ALLOWED_FROM"}},
		{"allowed domain bad", map[string]string{"HERALD_ALLOWED_FROM": "@localhost"}, []string{"HERALD_ALLOWED_FROM"}},
		{"no keys", map[string]string{"HERALD_API_KEY_HASHES": ""}, []string{"HERALD_API_KEY_HASHES", "HERALD_API_KEYS_SECRET_ID"}},
		{"bad keys", map[string]string{"HERALD_API_KEY_HASHES": "dev:00"}, []string{"HERALD_API_KEY_HASHES"}},
		{"refresh", map[string]string{"HERALD_API_KEYS_REFRESH": "1s"}, []string{"HERALD_API_KEYS_REFRESH"}},
		{"max bytes", map[string]string{"HERALD_MAX_MESSAGE_BYTES": "big"}, []string{"HERALD_MAX_MESSAGE_BYTES"}},
		{"rate", map[string]string{"HERALD_RATE_LIMIT": "-1"}, []string{"HERALD_RATE_LIMIT"}},
		{"rate not a number", map[string]string{"HERALD_RATE_LIMIT": "NaN"}, []string{"HERALD_RATE_LIMIT"}},
		{"burst", map[string]string{"HERALD_RATE_BURST": "0"}, []string{"HERALD_RATE_BURST"}},
		{"linger", map[string]string{"HERALD_BATCH_LINGER": "2"}, []string{"HERALD_BATCH_LINGER"}},
		{"linger too long", map[string]string{"HERALD_BATCH_LINGER": "1s"}, []string{"HERALD_BATCH_LINGER"}},
		{"ready cache", map[string]string{"HERALD_READY_CACHE": "soon"}, []string{"HERALD_READY_CACHE"}},
		{"connections", map[string]string{"HERALD_MAX_CONNECTIONS": "0"}, []string{"HERALD_MAX_CONNECTIONS"}},
		{"addr", map[string]string{"HERALD_HTTP_ADDR": "8080"}, []string{"HERALD_HTTP_ADDR"}},
		{"log level", map[string]string{"HERALD_LOG_LEVEL": "loud"}, []string{"HERALD_LOG_LEVEL"}},
		{"several at once", map[string]string{"AWS_REGION": "", "HERALD_RATE_BURST": "x"}, []string{"AWS_REGION", "HERALD_RATE_BURST"}},
		{"store without id secret", map[string]string{"HERALD_STORE_TABLE": "herald-state"}, []string{"HERALD_ID_SECRET_ID"}},
		{"status kept shorter than keys", map[string]string{"HERALD_STATUS_TTL": "2h", "HERALD_IDEMPOTENCY_TTL": "3h"}, []string{"HERALD_STATUS_TTL", "HERALD_IDEMPOTENCY_TTL"}},
		{"idempotency ttl", map[string]string{"HERALD_IDEMPOTENCY_TTL": "10s"}, []string{"HERALD_IDEMPOTENCY_TTL"}},
		{"dynamodb endpoint", map[string]string{"AWS_ENDPOINT_URL_DYNAMODB": "localhost:8000"}, []string{"AWS_ENDPOINT_URL_DYNAMODB"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadAPI(getenvOf(with(apiVariables(), c.set)))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
}

func TestAPISecretAloneIsAKeySource(t *testing.T) {
	c, err := ReadAPI(getenvOf(with(apiVariables(), map[string]string{"HERALD_API_KEY_HASHES": "", "HERALD_API_KEYS_SECRET_ID": "herald/api-keys"})))
	if err != nil || c.KeysSecretID != "herald/api-keys" || len(c.KeyHashes) != 0 {
		t.Fatalf("%v %+v", err, c)
	}
}

// The API queues the default sender with its domain in lower case, as
// SES's case-sensitive "*@domain" conditions need it.
func TestAPIDefaultSenderDomainInLowerCase(t *testing.T) {
	c, err := ReadAPI(getenvOf(with(apiVariables(), map[string]string{"HERALD_DEFAULT_FROM": "Herald <NoReply@Herald.TEST>"})))
	if err != nil {
		t.Fatal(err)
	}
	if c.DefaultFrom != "Herald <NoReply@herald.test>" {
		t.Errorf("default sender %q", c.DefaultFrom)
	}
}

func TestAPILogValue(t *testing.T) {
	c, err := ReadAPI(getenvOf(apiVariables()))
	if err != nil {
		t.Fatal(err)
	}
	logged := c.LogValue().String()
	if strings.Contains(logged, "noreply@herald.test") || strings.Contains(logged, hex.EncodeToString(make([]byte, 32))) ||
		!strings.Contains(logged, "dev") || !strings.Contains(logged, "n***@herald.test") {
		t.Errorf("logged configuration shows an address or a hash, or misses the key id: %s", logged)
	}
}

func TestAllowList(t *testing.T) {
	a, err := ParseAllowList("Alerts@Example.org, @Mail.Herald.Test,,")
	if err != nil {
		t.Fatal(err)
	}
	a, err = a.With("Herald <noreply@herald.test>")
	if err != nil {
		t.Fatal(err)
	}
	if got := a.String(); got != "noreply@herald.test,alerts@example.org,@mail.herald.test" {
		t.Errorf("list %q", got)
	}
	for from, want := range map[string]bool{
		"noreply@herald.test":             true,
		"Herald <NOREPLY@herald.TEST>":    true,
		"alerts@example.org":              true,
		"x@mail.herald.test":              true,
		"Shop <shop@MAIL.herald.test>":    true,
		"x@sub.mail.herald.test":          false,
		"x@herald.test":                   false,
		"alerts@example.org.evil.example": false,
		"not an address":                  false,
		"":                                false,
	} {
		if got := a.Allows(from); got != want {
			t.Errorf("Allows(%q) = %v, want %v", from, got, want)
		}
	}
	if (AllowList{}).Allows("x@herald.test") {
		t.Error("the empty list allows")
	}
	for _, bad := range []string{"@", "@localhost", "@exa mple.com", "nobody", "@-x.com"} {
		if _, err := ParseAllowList(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestKeySets(t *testing.T) {
	h := hex.EncodeToString(make([]byte, 32))
	keys, err := ParseKeySet(`{"b":"` + h + `","a":"` + h + `"}`)
	if err != nil || len(keys) != 2 || keys[0].ID != "a" {
		t.Fatalf("%v %+v", err, keys)
	}
	if keys, err := ParseKeySet(EmptyKeySet); err != nil || len(keys) != 0 {
		t.Errorf("the empty set: %v %v", keys, err)
	}
	for _, bad := range []string{`[]`, `{"a":"00"}`, `{"a b":"` + h + `"}`, `not json`} {
		if _, err := ParseKeySet(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if _, err := ParseKeyHashes("a:" + h + ",a:" + h); err == nil {
		t.Error("a key id twice accepted")
	}
}
