package main

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"herald/services/internal/herald"
)

const (
	serviceName = "email-sender"
	defaultAddr = ":8081"
)

// The retry window (HERALD_RETRY_WINDOW). The default rides out a regional
// SES incident; the most is SQS's longest retention, which the queue's
// retention must exceed (the stacks check that at synth).
const (
	DefaultRetryWindow = 12 * time.Hour
	MaxRetryWindow     = 14 * 24 * time.Hour
)

// config is the sender's environment (services/README.md), read once.
type config struct {
	herald.Common
	DLQURL    string
	Transport string // "ses" or "smtp"
	Pollers   int
	Workers   int
	// ReceiveBatch and DeleteBatch are the most messages per ReceiveMessage
	// and per delete call (1 to 10).
	ReceiveBatch int
	DeleteBatch  int
	WaitTime     time.Duration
	Visibility   time.Duration
	SendTimeout  time.Duration
	// SendRate is the account's sends per second, for all sender tasks
	// together; 0 means the SES account's maximum send rate (GetAccount),
	// or no limit on SMTP.
	SendRate float64
	// SenderTasks is how many sender tasks are expected to share SendRate:
	// each starts at SendRate/SenderTasks and adapts from there.
	SenderTasks int
	RetryBase   time.Duration
	// RetryMax is at most 15 minutes: a re-queued copy waits its backoff as
	// SQS DelaySeconds.
	RetryMax time.Duration
	// RetryWindow is how long after its first failed attempt a message is
	// retried before it is dead-lettered as expired.
	RetryWindow  time.Duration
	SESConfigSet string
	SMTPAddr     string
	SMTPUsername string
	SMTPPassword string
	SMTPSecretID string
	SMTPTLS      string // "starttls" or "none"
	SMTPCAFile   string
	StallAfter   time.Duration
}

// readConfig reads and checks every variable, reporting all problems at once,
// each naming its variable.
func readConfig(getenv func(string) string) (config, error) {
	e := herald.NewEnv(getenv)
	c := config{Common: herald.ReadCommon(e, defaultAddr)}
	c.DLQURL = e.Required("HERALD_DLQ_URL")
	c.Transport = e.OneOf("HERALD_TRANSPORT", "ses", "ses", "smtp")
	c.Pollers = e.Int("HERALD_POLLERS", 2, 1, 64)
	c.Workers = e.Int("HERALD_WORKERS", 32, 1, 4096)
	c.ReceiveBatch = e.Int("HERALD_RECEIVE_BATCH", 10, 1, 10)
	c.DeleteBatch = e.Int("HERALD_DELETE_BATCH", 10, 1, 10)
	c.WaitTime = wholeSeconds(e, "HERALD_WAIT_TIME", e.Duration("HERALD_WAIT_TIME", 20*time.Second, 0, 20*time.Second))
	c.Visibility = wholeSeconds(e, "HERALD_VISIBILITY_TIMEOUT", e.Duration("HERALD_VISIBILITY_TIMEOUT", 60*time.Second, 2*time.Second, 12*time.Hour))
	c.SendTimeout = e.Duration("HERALD_SEND_TIMEOUT", 10*time.Second, 100*time.Millisecond, 5*time.Minute)
	c.SendRate = e.Float("HERALD_SEND_RATE", 0, 0, 1_000_000)
	c.SenderTasks = e.Int("HERALD_SENDER_TASKS", 1, 1, 1000)
	c.RetryBase = e.Duration("HERALD_RETRY_BASE", 5*time.Second, time.Second, herald.MaxDelay)
	c.RetryMax = e.Duration("HERALD_RETRY_MAX", herald.MaxDelay, time.Second, herald.MaxDelay)
	if c.RetryBase > c.RetryMax {
		e.Failf("HERALD_RETRY_BASE", "%s is above HERALD_RETRY_MAX (%s)", c.RetryBase, c.RetryMax)
	}
	c.RetryWindow = e.Duration("HERALD_RETRY_WINDOW", DefaultRetryWindow, time.Second, MaxRetryWindow)
	c.SESConfigSet = e.String("HERALD_SES_CONFIGURATION_SET", "")
	c.SMTPTLS = e.OneOf("HERALD_SMTP_TLS", "starttls", "starttls", "none")
	c.SMTPUsername = e.String("HERALD_SMTP_USERNAME", "")
	c.SMTPPassword = e.String("HERALD_SMTP_PASSWORD", "")
	c.SMTPSecretID = e.String("HERALD_SMTP_SECRET_ID", "")
	c.SMTPCAFile = e.String("HERALD_SMTP_CA_FILE", "")
	if c.Transport == "smtp" {
		c.SMTPAddr = e.Required("HERALD_SMTP_ADDR")
		checkSMTP(e, &c)
	}
	c.StallAfter = e.Duration("HERALD_STALL_AFTER", 90*time.Second, time.Second, time.Hour)
	if c.StallAfter <= c.WaitTime {
		e.Failf("HERALD_STALL_AFTER", "%s must be longer than HERALD_WAIT_TIME (%s): a healthy long poll lasts that long", c.StallAfter, c.WaitTime)
	}
	if err := e.Err(); err != nil {
		return config{}, fmt.Errorf("configuration: %w", err)
	}
	return c, nil
}

func checkSMTP(e *herald.Env, c *config) {
	if c.SMTPAddr != "" {
		host, port, err := net.SplitHostPort(c.SMTPAddr)
		switch {
		case err != nil:
			e.Failf("HERALD_SMTP_ADDR", "%q is not host:port: %v", c.SMTPAddr, err)
		case host == "" || port == "":
			e.Failf("HERALD_SMTP_ADDR", "%q needs a host and a port", c.SMTPAddr)
		case c.SMTPTLS == "none" && !isLoopback(host):
			e.Failf("HERALD_SMTP_TLS", "none is allowed only with a loopback HERALD_SMTP_ADDR (127.0.0.1, ::1, localhost), not %q", host)
		}
	}
	if (c.SMTPUsername == "") != (c.SMTPPassword == "") {
		e.Failf("HERALD_SMTP_PASSWORD", "HERALD_SMTP_USERNAME and HERALD_SMTP_PASSWORD are set together or not at all")
	}
	if c.SMTPSecretID != "" && c.SMTPUsername != "" {
		e.Failf("HERALD_SMTP_SECRET_ID", "set either it or HERALD_SMTP_USERNAME/HERALD_SMTP_PASSWORD, not both")
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// wholeSeconds refuses fractions for values SQS takes in seconds.
func wholeSeconds(e *herald.Env, name string, d time.Duration) time.Duration {
	if d%time.Second != 0 {
		e.Failf(name, "%s is not a whole number of seconds (SQS counts in seconds)", d)
		return d.Truncate(time.Second)
	}
	return d
}

// LogValue is the configuration as logged at start: secrets masked.
func (c config) LogValue() slog.Value {
	return slog.GroupValue(append(c.Common.LogAttrs(),
		slog.String("dlqUrl", c.DLQURL),
		slog.String("transport", c.Transport),
		slog.Int("pollers", c.Pollers),
		slog.Int("workers", c.Workers),
		slog.Int("receiveBatch", c.ReceiveBatch),
		slog.Int("deleteBatch", c.DeleteBatch),
		slog.String("waitTime", c.WaitTime.String()),
		slog.String("visibilityTimeout", c.Visibility.String()),
		slog.String("sendTimeout", c.SendTimeout.String()),
		slog.Float64("sendRate", c.SendRate),
		slog.Int("senderTasks", c.SenderTasks),
		slog.String("retryBase", c.RetryBase.String()),
		slog.String("retryMax", c.RetryMax.String()),
		slog.String("retryWindow", c.RetryWindow.String()),
		slog.String("sesConfigurationSet", c.SESConfigSet),
		slog.String("smtpAddr", c.SMTPAddr),
		slog.String("smtpUsername", herald.MaskSecret(c.SMTPUsername)),
		slog.String("smtpPassword", herald.MaskSecret(c.SMTPPassword)),
		slog.String("smtpSecretId", c.SMTPSecretID),
		slog.String("smtpTls", c.SMTPTLS),
		slog.String("smtpCaFile", c.SMTPCAFile),
		slog.String("stallAfter", c.StallAfter.String()),
	)...)
}
