package contract

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"herald/services/mailaddr"
)

// Common is the configuration both services read.
type Common struct {
	// Environment is HERALD_ENV: the name of the deployment.
	Environment string
	Region      string
	QueueURL    string
	HTTPAddr    string
	LogLevel    string
	// MetricsInterval 0 turns metrics off.
	MetricsInterval time.Duration
	ShutdownTimeout time.Duration
	// SQSEndpoint and SecretsManagerEndpoint override the AWS endpoints
	// ("" for AWS's own).
	SQSEndpoint            string
	SecretsManagerEndpoint string
	DynamoDBEndpoint       string
	// StoreTable is the state store's table; "" runs without the store
	// (local use only).
	StoreTable string
	// StatusTTL is how long a notification's status is kept.
	StatusTTL time.Duration
}

func readCommon(r *Reader, svc Service) Common {
	return Common{
		Environment:            EnvironmentName.Read(r),
		Region:                 Region.Read(r),
		QueueURL:               QueueURL.Read(r),
		HTTPAddr:               HTTPAddr.Read(r, svc),
		LogLevel:               LogLevel.Read(r),
		MetricsInterval:        MetricsInterval.Read(r),
		ShutdownTimeout:        ShutdownTimeout.Read(r),
		SQSEndpoint:            EndpointSQS.Read(r),
		SecretsManagerEndpoint: EndpointSecretsManager.Read(r),
		DynamoDBEndpoint:       EndpointDynamoDB.Read(r),
		StoreTable:             StoreTable.Read(r),
		StatusTTL:              StatusTTL.Read(r),
	}
}

// logAttrs are the shared settings as both services log them at start,
// durations as text ("5s"), so both start lines read alike.
func (c Common) logAttrs() []slog.Attr {
	return []slog.Attr{
		slog.String("env", c.Environment),
		slog.String("region", c.Region),
		slog.String("queueUrl", c.QueueURL),
		slog.String("httpAddr", c.HTTPAddr),
		slog.String("logLevel", c.LogLevel),
		slog.String("metricsInterval", c.MetricsInterval.String()),
		slog.String("shutdownTimeout", c.ShutdownTimeout.String()),
		slog.String("storeTable", c.StoreTable),
		slog.String("statusTtl", c.StatusTTL.String()),
	}
}

// APIConfig is the notification API's configuration.
type APIConfig struct {
	Common
	// DefaultFrom is the sender of a request without one, its domain in
	// lower case (mailaddr.LowerDomain).
	DefaultFrom string
	// AllowedFrom holds DefaultFrom and HERALD_ALLOWED_FROM.
	AllowedFrom     AllowList
	KeyHashes       []KeyHash
	KeysSecretID    string
	KeysRefresh     time.Duration
	MaxMessageBytes int
	// RateLimit is notifications per second per key; 0 turns limiting off.
	RateLimit float64
	RateBurst int
	// RateLease and RateTasks shape the limit shared through the store:
	// the lease per task, and the division while the store is down.
	RateLease      time.Duration
	RateTasks      int
	BatchLinger    time.Duration
	ReadyCache     time.Duration
	MaxConnections int
	// IDSecretID is the secret of the notification ids; required with
	// StoreTable.
	IDSecretID     string
	IdempotencyTTL time.Duration
}

// ReadAPI reads and checks the API's configuration, reporting every problem
// at once, each naming its variable.
func ReadAPI(getenv func(string) string) (APIConfig, error) {
	r := NewReader(getenv)
	c := APIConfig{
		Common:          readCommon(r, API),
		DefaultFrom:     mailaddr.LowerDomain(DefaultFrom.Read(r)),
		AllowedFrom:     AllowedFrom.Read(r),
		KeysSecretID:    APIKeysSecretID.Read(r),
		KeysRefresh:     APIKeysRefresh.Read(r),
		MaxMessageBytes: MaxMessageBytes.Read(r),
		RateLimit:       RateLimit.Read(r),
		RateBurst:       RateBurst.Read(r),
		RateLease:       RateLease.Read(r),
		RateTasks:       RateTasks.Read(r),
		BatchLinger:     BatchLinger.Read(r),
		ReadyCache:      ReadyCache.Read(r),
		MaxConnections:  MaxConnections.Read(r),
		IDSecretID:      IDSecretID.Read(r),
		IdempotencyTTL:  IdempotencyTTL.Read(r),
	}
	if c.DefaultFrom != "" && mailaddr.CheckSender(c.DefaultFrom) == nil {
		// The default sender is always allowed; the list adds to it.
		c.AllowedFrom, _ = c.AllowedFrom.With(c.DefaultFrom)
	}
	// Either key source, or both: the variable's keys are fixed, the
	// secret's are read again every KeysRefresh.
	if raw := APIKeyHashes.Read(r); raw != "" {
		c.KeyHashes, _ = ParseKeyHashes(raw) // checked by the read
	} else if c.KeysSecretID == "" {
		r.Failf(APIKeyHashes.Name, "no API keys: set it or %s", APIKeysSecretID.Name)
	}
	if c.StoreTable != "" && c.IDSecretID == "" {
		r.Failf(IDSecretID.Name, "required with %s: the notification ids are derived and signed with it", StoreTable.Name)
	}
	if c.StatusTTL < c.IdempotencyTTL {
		r.Failf(StatusTTL.Name, "%s is below %s (%s): a notification's status must outlive its key", c.StatusTTL, IdempotencyTTL.Name, c.IdempotencyTTL)
	}
	if err := r.Err(); err != nil {
		return APIConfig{}, fmt.Errorf("configuration: %w", err)
	}
	return c, nil
}

// LogValue is the configuration as logged at start: no keys, no full
// addresses.
func (c APIConfig) LogValue() slog.Value {
	keyIDs := make([]string, len(c.KeyHashes))
	for i, k := range c.KeyHashes {
		keyIDs[i] = k.ID
	}
	return slog.GroupValue(append(c.Common.logAttrs(),
		slog.String("defaultFrom", mailaddr.Mask(c.DefaultFrom)),
		slog.Any("allowedFrom", c.AllowedFrom.Masked()),
		slog.Any("apiKeyHashes", keyIDs),
		slog.String("apiKeysSecretId", c.KeysSecretID),
		slog.String("apiKeysRefresh", c.KeysRefresh.String()),
		slog.Int("maxMessageBytes", c.MaxMessageBytes),
		slog.Float64("rateLimit", c.RateLimit),
		slog.Int("rateBurst", c.RateBurst),
		slog.String("rateLease", c.RateLease.String()),
		slog.Int("rateTasks", c.RateTasks),
		slog.String("batchLinger", c.BatchLinger.String()),
		slog.String("readyCache", c.ReadyCache.String()),
		slog.Int("maxConnections", c.MaxConnections),
		slog.String("idSecretId", c.IDSecretID),
		slog.String("idempotencyTtl", c.IdempotencyTTL.String()),
	)...)
}

// SenderConfig is the email sender's configuration.
type SenderConfig struct {
	Common
	DLQURL string
	// AllowedFrom are the senders a queued notification may use; any other
	// is dead-lettered.
	AllowedFrom AllowList
	Transport   string // "ses" or "smtp"
	Pollers     int
	Workers     int
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
	SESEndpoint  string
	SMTPAddr     string
	SMTPUsername string
	SMTPPassword string
	SMTPSecretID string
	SMTPTLS      string // "starttls" or "none"
	SMTPCAFile   string
	StallAfter   time.Duration
	// Feedback is the SES feedback consumer's; off when its QueueURL is "".
	Feedback FeedbackConfig
}

// FeedbackConfig is the SES feedback consumer's configuration (FEEDBACK.md).
type FeedbackConfig struct {
	QueueURL, DLQURL, TopicARN string
	Pollers                    int
	WaitTime, ProcessTimeout   time.Duration
	Visibility                 time.Duration
	RetryBase, RetryMax        time.Duration
}

// ReadSender reads and checks the sender's configuration, reporting every
// problem at once, each naming its variable.
func ReadSender(getenv func(string) string) (SenderConfig, error) {
	r := NewReader(getenv)
	c := SenderConfig{
		Common:       readCommon(r, Sender),
		DLQURL:       DLQURL.Read(r),
		AllowedFrom:  AllowedFrom.Read(r),
		Transport:    Transport.Read(r),
		Pollers:      Pollers.Read(r),
		Workers:      Workers.Read(r),
		ReceiveBatch: ReceiveBatch.Read(r),
		DeleteBatch:  DeleteBatch.Read(r),
		WaitTime:     WaitTime.Read(r),
		Visibility:   VisibilityTimeout.Read(r),
		SendTimeout:  SendTimeout.Read(r),
		SendRate:     SendRate.Read(r),
		SenderTasks:  SenderTasks.Read(r),
		RetryBase:    RetryBase.Read(r),
		RetryMax:     RetryMax.Read(r),
		RetryWindow:  RetryWindow.Read(r),
		SESConfigSet: SESConfigurationSet.Read(r),
		SESEndpoint:  EndpointSESv2.Read(r),
		SMTPAddr:     SMTPAddr.Read(r),
		SMTPUsername: SMTPUsername.Read(r),
		SMTPPassword: SMTPPassword.Read(r),
		SMTPSecretID: SMTPSecretID.Read(r),
		SMTPTLS:      SMTPTLS.Read(r),
		SMTPCAFile:   SMTPCAFile.Read(r),
		StallAfter:   StallAfter.Read(r),
		Feedback: FeedbackConfig{
			QueueURL:       FeedbackQueueURL.Read(r),
			DLQURL:         FeedbackDLQURL.Read(r),
			TopicARN:       FeedbackTopicARN.Read(r),
			Pollers:        FeedbackPollers.Read(r),
			WaitTime:       FeedbackWait.Read(r),
			ProcessTimeout: FeedbackProcessTimeout.Read(r),
			Visibility:     FeedbackVisibility.Read(r),
			RetryBase:      FeedbackRetryBase.Read(r),
			RetryMax:       FeedbackRetryMax.Read(r),
		},
	}
	if c.AllowedFrom.Empty() {
		r.Failf(AllowedFrom.Name, "required: the senders a queued notification may use (the API's list and its default sender)")
	}
	if c.RetryBase > c.RetryMax {
		r.Failf(RetryBase.Name, "%s is above %s (%s)", c.RetryBase, RetryMax.Name, c.RetryMax)
	}
	if c.StallAfter <= c.WaitTime {
		r.Failf(StallAfter.Name, "%s must be longer than %s (%s): a healthy long poll lasts that long", c.StallAfter, WaitTime.Name, c.WaitTime)
	}
	if c.Transport == "smtp" {
		checkSMTP(r, &c)
	}
	checkFeedback(r, &c)
	if err := r.Err(); err != nil {
		return SenderConfig{}, fmt.Errorf("configuration: %w", err)
	}
	return c, nil
}

func checkSMTP(r *Reader, c *SenderConfig) {
	host, port, err := net.SplitHostPort(c.SMTPAddr)
	switch {
	case c.SMTPAddr == "":
		r.Failf(SMTPAddr.Name, "required with %s smtp", Transport.Name)
	case err != nil:
		r.Failf(SMTPAddr.Name, "%q is not host:port: %v", c.SMTPAddr, err)
	case host == "" || port == "":
		r.Failf(SMTPAddr.Name, "%q needs a host and a port", c.SMTPAddr)
	case c.SMTPTLS == "none" && !isLoopback(host):
		r.Failf(SMTPTLS.Name, "none is allowed only with a loopback %s (127.0.0.1, ::1, localhost), not %q", SMTPAddr.Name, host)
	}
	if (c.SMTPUsername == "") != (c.SMTPPassword == "") {
		r.Failf(SMTPPassword.Name, "%s and %s are set together or not at all", SMTPUsername.Name, SMTPPassword.Name)
	}
	if c.SMTPSecretID != "" && c.SMTPUsername != "" {
		r.Failf(SMTPSecretID.Name, "set either it or %s/%s, not both", SMTPUsername.Name, SMTPPassword.Name)
	}
}

// checkFeedback holds the feedback consumer's settings to each other and to
// the sender's: it writes to the store, and SES publishes events only for
// sends through a configuration set.
func checkFeedback(r *Reader, c *SenderConfig) {
	f := c.Feedback
	if f.QueueURL == "" {
		return
	}
	if f.DLQURL == "" {
		r.Failf(FeedbackDLQURL.Name, "required with %s", FeedbackQueueURL.Name)
	}
	if f.DLQURL != "" && f.DLQURL == f.QueueURL {
		r.Failf(FeedbackDLQURL.Name, "must differ from %s", FeedbackQueueURL.Name)
	}
	if c.StoreTable == "" {
		r.Failf(FeedbackQueueURL.Name, "needs %s: the events are recorded on each notification's status", StoreTable.Name)
	}
	if c.Transport != "ses" {
		r.Failf(FeedbackQueueURL.Name, "SES feedback needs %s ses, not %s", Transport.Name, c.Transport)
	} else if c.SESConfigSet == "" {
		r.Failf(SESConfigurationSet.Name, "required with %s: SES publishes events only for sends through a configuration set", FeedbackQueueURL.Name)
	}
	if f.Visibility < 3*f.ProcessTimeout {
		r.Failf(FeedbackVisibility.Name, "%s is under three times %s (%s): a batch of events must finish within it", f.Visibility, FeedbackProcessTimeout.Name, f.ProcessTimeout)
	}
	if f.RetryBase > f.RetryMax {
		r.Failf(FeedbackRetryBase.Name, "%s is above %s (%s)", f.RetryBase, FeedbackRetryMax.Name, f.RetryMax)
	}
	if c.StallAfter <= f.WaitTime {
		r.Failf(StallAfter.Name, "%s must be longer than %s (%s): a healthy long poll lasts that long", c.StallAfter, FeedbackWait.Name, f.WaitTime)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// LogValue is the configuration as logged at start: secrets masked.
func (c SenderConfig) LogValue() slog.Value {
	return slog.GroupValue(append(c.Common.logAttrs(),
		slog.String("dlqUrl", c.DLQURL),
		slog.Any("allowedFrom", c.AllowedFrom.Masked()),
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
		slog.String("smtpUsername", mask(c.SMTPUsername)),
		slog.String("smtpPassword", mask(c.SMTPPassword)),
		slog.String("smtpSecretId", c.SMTPSecretID),
		slog.String("smtpTls", c.SMTPTLS),
		slog.String("smtpCaFile", c.SMTPCAFile),
		slog.String("stallAfter", c.StallAfter.String()),
		slog.Group("feedback",
			slog.String("queueUrl", c.Feedback.QueueURL),
			slog.String("dlqUrl", c.Feedback.DLQURL),
			slog.String("topicArn", c.Feedback.TopicARN),
			slog.Int("pollers", c.Feedback.Pollers),
			slog.String("waitTime", c.Feedback.WaitTime.String()),
			slog.String("processTimeout", c.Feedback.ProcessTimeout.String()),
			slog.String("visibility", c.Feedback.Visibility.String()),
			slog.String("retryBase", c.Feedback.RetryBase.String()),
			slog.String("retryMax", c.Feedback.RetryMax.String()),
		),
	)...)
}

// mask shows only whether a secret is set.
func mask(s string) string {
	if s == "" {
		return ""
	}
	return "***"
}
