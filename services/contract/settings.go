package contract

import (
	"errors"
	"net/url"
	"strings"
	"time"

	"herald/services/mailaddr"
)

// SQS's limits, which bound several settings.
const (
	// SQSMaxBatch is the most entries one SQS batch call takes.
	SQSMaxBatch = 10
	// SQSMaxWait is the longest long-poll wait (WaitTimeSeconds).
	SQSMaxWait = 20 * time.Second
	// SQSMaxDelay is the largest DelaySeconds of a message.
	SQSMaxDelay = 15 * time.Minute
	// SQSMaxVisibility is the largest visibility timeout.
	SQSMaxVisibility = 12 * time.Hour
	// SQSMaxRetention is the longest a queue keeps a message.
	SQSMaxRetention = 14 * 24 * time.Hour
)

var both = []Service{API, Sender}

// Settings of both services.
var (
	EnvironmentName = Text{
		Variable: Variable{Name: "HERALD_ENV", ReadBy: both, Source: Set,
			Meaning: "name of the environment (the deployment: `dev`, `prod`); a metric dimension and a log attribute"},
		Default: "local",
	}
	Region = Text{
		Variable: Variable{Name: "AWS_REGION", ReadBy: both, Source: Set, Meaning: "AWS region for the SDK"},
		Required: true,
	}
	EndpointSQS = Text{
		Variable: Variable{Name: "AWS_ENDPOINT_URL_SQS", ReadBy: both, Meaning: "endpoint override for SQS (the local emulator)"},
		Check:    checkURL,
	}
	EndpointSESv2 = Text{
		Variable: Variable{Name: "AWS_ENDPOINT_URL_SESV2", ReadBy: []Service{Sender}, Meaning: "endpoint override for SES v2 (the local SES gate)"},
		Check:    checkURL,
	}
	EndpointSecretsManager = Text{
		Variable: Variable{Name: "AWS_ENDPOINT_URL_SECRETSMANAGER", ReadBy: both, Meaning: "endpoint override for Secrets Manager (the local emulator)"},
		Check:    checkURL,
	}
	QueueURL = Text{
		Variable: Variable{Name: "HERALD_QUEUE_URL", ReadBy: both, Source: Set, Meaning: "the notification queue"},
		Required: true,
		Check:    checkURL,
	}
	HTTPAddr = Addr{
		Variable: Variable{Name: "HERALD_HTTP_ADDR", ReadBy: both, Source: Set, Meaning: "listen address (the sender's serves its health check only)"},
		Default:  map[Service]string{API: ListenAddr(API), Sender: ListenAddr(Sender)},
	}
	LogLevel = Enum{
		Variable: Variable{Name: "HERALD_LOG_LEVEL", ReadBy: both, Source: Set, Meaning: "the lowest level logged"},
		Default:  "info",
		Choices:  []string{"debug", "info", "warn", "error"},
	}
	MetricsInterval = Duration{
		Variable: Variable{Name: "HERALD_METRICS_INTERVAL", ReadBy: both, Source: Tunable, Meaning: "how often EMF metric lines are flushed; `0` turns metrics off"},
		Default:  10 * time.Second, Min: 0, Max: time.Hour,
	}
	ShutdownTimeout = Duration{
		Variable: Variable{Name: "HERALD_SHUTDOWN_TIMEOUT", ReadBy: both, Source: Set,
			Meaning: "drain deadline on SIGTERM; below ECS's stop timeout (30 s)"},
		Default: 25 * time.Second, Min: time.Second, Max: 2 * time.Minute,
	}
	AllowedFrom = AllowListSetting{
		Variable: Variable{Name: "HERALD_ALLOWED_FROM", ReadBy: both, Source: Set,
			Meaning: "comma list of addresses, or `@domain` for a whole domain, a notification may use as `from`; the API adds `HERALD_DEFAULT_FROM`. " +
				"The API refuses any other `from` with 400, the sender dead-letters a queued one as `permanent` (a message put on the queue around the API). " +
				"Domains compare ignoring case; the stacks set the same list for both, the default sender included"},
	}
)

// Settings of the notification API.
var (
	DefaultFrom = Text{
		Variable: Variable{Name: "HERALD_DEFAULT_FROM", ReadBy: []Service{API}, Source: SetSecret,
			Meaning: "sender address used when a request has no `from` (an SSM parameter in a stack)"},
		Required: true,
		Check:    mailaddr.CheckSender,
	}
	APIKeyHashes = Text{
		Variable: Variable{Name: "HERALD_API_KEY_HASHES", ReadBy: []Service{API},
			Meaning: "`keyid:sha256hex,...` (local use; with the secret too, both sets are valid)"},
		Secret: true,
		Check:  func(s string) error { _, err := ParseKeyHashes(s); return err },
	}
	APIKeysSecretID = Text{
		Variable: Variable{Name: "HERALD_API_KEYS_SECRET_ID", ReadBy: []Service{API}, Source: SetSecret,
			Meaning: "Secrets Manager secret whose string is JSON `{\"<key id>\": \"<sha256 hex>\"}`; one of the two key sources is required"},
	}
	APIKeysRefresh = Duration{
		Variable: Variable{Name: "HERALD_API_KEYS_REFRESH", ReadBy: []Service{API}, Source: Tunable, Meaning: "how often the secret is read again"},
		Default:  5 * time.Minute, Min: 10 * time.Second, Max: 24 * time.Hour,
	}
	MaxMessageBytes = Int{
		Variable: Variable{Name: "HERALD_MAX_MESSAGE_BYTES", ReadBy: []Service{API}, Source: Set,
			Meaning: "largest queued message (the queue's MaximumMessageSize)"},
		Default: 262144, Min: 1024, Max: 1048576, Unit: "bytes",
	}
	RateLimit = Float{
		Variable: Variable{Name: "HERALD_RATE_LIMIT", ReadBy: []Service{API}, Source: Tunable,
			Meaning: "notifications per second per API key, for all API tasks together with the store, per process without it (a batch costs one per item, at most the burst); `0` turns limiting off"},
		Default: 100, Min: 0, Max: 1e6,
	}
	RateBurst = Int{
		Variable: Variable{Name: "HERALD_RATE_BURST", ReadBy: []Service{API}, Source: Tunable, Meaning: "burst of the per-key rate limit"},
		Default:  200, Min: 1, Max: 1000000,
	}
	RateLease = Duration{
		Variable: Variable{Name: "HERALD_RATE_LEASE", ReadBy: []Service{API}, Source: Tunable,
			Meaning: "with the store: how much of its recent demand for a key a task leases from the key's shared bucket at once, and how long it may hold leased tokens; longer: fewer DynamoDB writes, and a key may pass its limit by at most the rate times this in any window"},
		Default: time.Second, Min: 10 * time.Millisecond, Max: 10 * time.Second,
	}
	RateTasks = Int{
		Variable: Variable{Name: "HERALD_RATE_TASKS", ReadBy: []Service{API}, Source: Set, When: "with the store",
			Meaning: "with the store: while it cannot be used, each task limits a key to the rate and burst divided by this (the stacks set the API's maximum task count, so the tasks together stay under the limit)"},
		Default: 1, Min: 1, Max: 1000,
	}
	BatchLinger = Duration{
		Variable: Variable{Name: "HERALD_BATCH_LINGER", ReadBy: []Service{API}, Source: Tunable,
			Meaning: "how long a single send may wait to share a `SendMessageBatch`, and a keyed request's state-store writes a `TransactWriteItems` (Begin) or `BatchWriteItem` (Complete); `0` makes each call on its own"},
		Default: 2 * time.Millisecond, Min: 0, Max: 100 * time.Millisecond,
	}
	ReadyCache = Duration{
		Variable: Variable{Name: "HERALD_READY_CACHE", ReadBy: []Service{API}, Source: Tunable, Meaning: "how long a `/readyz` queue check is reused"},
		Default:  5 * time.Second, Min: 0, Max: 5 * time.Minute,
	}
	MaxConnections = Int{
		Variable: Variable{Name: "HERALD_MAX_CONNECTIONS", ReadBy: []Service{API}, Source: Tunable,
			Meaning: "most open connections per process; at the cap a new connection waits until one closes and idle keep-alive connections are closed"},
		Default: 1024, Min: 1, Max: 65536,
	}
)

// Settings of the email sender.
var (
	DLQURL = Text{
		Variable: Variable{Name: "HERALD_DLQ_URL", ReadBy: []Service{Sender}, Source: Set, Meaning: "dead-letter queue for permanent failures"},
		Required: true,
		Check:    checkURL,
	}
	Transport = Enum{
		Variable: Variable{Name: "HERALD_TRANSPORT", ReadBy: []Service{Sender}, Source: Set, Meaning: "how mail leaves: SES v2 or an SMTP relay"},
		Default:  "ses", Choices: []string{"ses", "smtp"},
	}
	Pollers = Int{
		Variable: Variable{Name: "HERALD_POLLERS", ReadBy: []Service{Sender}, Source: Tunable, Meaning: "concurrent long-polls"},
		Default:  2, Min: 1, Max: 64,
	}
	Workers = Int{
		Variable: Variable{Name: "HERALD_WORKERS", ReadBy: []Service{Sender}, Source: Tunable, Meaning: "concurrent sends"},
		Default:  32, Min: 1, Max: 4096,
	}
	ReceiveBatch = Int{
		Variable: Variable{Name: "HERALD_RECEIVE_BATCH", ReadBy: []Service{Sender}, Source: Tunable,
			Meaning: "most messages one `ReceiveMessage` asks for; a poller waits for that many free workers"},
		Default: SQSMaxBatch, Min: 1, Max: SQSMaxBatch,
	}
	DeleteBatch = Int{
		Variable: Variable{Name: "HERALD_DELETE_BATCH", ReadBy: []Service{Sender}, Source: Tunable,
			Meaning: "most messages one delete removes; successes wait up to 50 ms to share a `DeleteMessageBatch`, `1` deletes each at once with `DeleteMessage`"},
		Default: SQSMaxBatch, Min: 1, Max: SQSMaxBatch,
	}
	WaitTime = Duration{
		Variable: Variable{Name: "HERALD_WAIT_TIME", ReadBy: []Service{Sender}, Source: Set,
			Meaning: "SQS long-poll wait. Not `0`: SQS would short-poll, answering at once and often empty, and the pollers would spin"},
		Default: SQSMaxWait, Min: time.Second, Max: SQSMaxWait, WholeSeconds: true,
	}
	VisibilityTimeout = Duration{
		Variable: Variable{Name: "HERALD_VISIBILITY_TIMEOUT", ReadBy: []Service{Sender}, Source: Set,
			Meaning: "the queue's visibility timeout (heartbeat at half of it); the stacks derive it from the send timeout"},
		Default: 60 * time.Second, Min: 2 * time.Second, Max: SQSMaxVisibility, WholeSeconds: true,
	}
	SendTimeout = Duration{
		Variable: Variable{Name: "HERALD_SEND_TIMEOUT", ReadBy: []Service{Sender}, Source: Set, Meaning: "one SES/SMTP send"},
		Default:  10 * time.Second, Min: 100 * time.Millisecond, Max: 5 * time.Minute,
	}
	SendRate = Float{
		Variable: Variable{Name: "HERALD_SEND_RATE", ReadBy: []Service{Sender}, Source: SetSecret,
			Meaning: "the account's sends per second, for all sender tasks together; `0` = the SES account's max send rate from `GetAccount` (14 when it cannot be read), unlimited on SMTP (an SSM parameter in a stack)"},
		Default: 0, Min: 0, Max: 1e6, Unit: "per second",
	}
	SenderTasks = Int{
		Variable: Variable{Name: "HERALD_SENDER_TASKS", ReadBy: []Service{Sender}, Source: Set,
			Meaning: "how many sender tasks share that rate; each starts at the rate divided by it and adapts (the stacks set the sender's minimum task count)"},
		Default: 1, Min: 1, Max: 1000,
	}
	RetryBase = Duration{
		Variable: Variable{Name: "HERALD_RETRY_BASE", ReadBy: []Service{Sender}, Source: Tunable,
			Meaning: "first backoff of a transient failure (exponential, full jitter); at most `HERALD_RETRY_MAX`"},
		Default: 5 * time.Second, Min: time.Second, Max: SQSMaxDelay,
	}
	RetryMax = Duration{
		Variable: Variable{Name: "HERALD_RETRY_MAX", ReadBy: []Service{Sender}, Source: Tunable,
			Meaning: "longest backoff (a re-queued copy waits it as SQS `DelaySeconds`), and the longest a worker holds a message waiting to send"},
		Default: SQSMaxDelay, Min: time.Second, Max: SQSMaxDelay,
	}
	RetryWindow = Duration{
		Variable: Variable{Name: "HERALD_RETRY_WINDOW", ReadBy: []Service{Sender}, Source: Set,
			Meaning: "how long after its first failed attempt a message is retried before it is dead-lettered as `expired` (the queue's retention must exceed it by a day, checked at synth)"},
		Default: 12 * time.Hour, Min: time.Second, Max: SQSMaxRetention,
	}
	SESConfigurationSet = Text{
		Variable: Variable{Name: "HERALD_SES_CONFIGURATION_SET", ReadBy: []Service{Sender}, Source: Set, When: "with an SES configuration set",
			Meaning: "SES configuration set name"},
	}
	SMTPAddr = Text{
		Variable: Variable{Name: "HERALD_SMTP_ADDR", ReadBy: []Service{Sender}, Source: Set, When: "with SMTP",
			Meaning: "`host:port` of the SMTP relay; required with `smtp`"},
	}
	SMTPUsername = Text{
		Variable: Variable{Name: "HERALD_SMTP_USERNAME", ReadBy: []Service{Sender}, Source: SetSecret, When: "with SMTP",
			Meaning: "SMTP user name (an ECS secret from Secrets Manager in a stack)"},
		Secret: true,
	}
	SMTPPassword = Text{
		Variable: Variable{Name: "HERALD_SMTP_PASSWORD", ReadBy: []Service{Sender}, Source: SetSecret, When: "with SMTP",
			Meaning: "SMTP password, set with the user name"},
		Secret: true,
	}
	SMTPSecretID = Text{
		Variable: Variable{Name: "HERALD_SMTP_SECRET_ID", ReadBy: []Service{Sender},
			Meaning: "alternatively, a secret with JSON `{\"username\",\"password\"}`"},
	}
	SMTPTLS = Enum{
		Variable: Variable{Name: "HERALD_SMTP_TLS", ReadBy: []Service{Sender}, Source: Tunable,
			Meaning: "`starttls` (required by the server), or `none` (loopback servers only)"},
		Default: "starttls", Choices: []string{"starttls", "none"},
	}
	SMTPCAFile = Text{
		Variable: Variable{Name: "HERALD_SMTP_CA_FILE", ReadBy: []Service{Sender},
			Meaning: "PEM certificates trusted for the SMTP server besides the system roots (a private relay's CA)"},
	}
	StallAfter = Duration{
		Variable: Variable{Name: "HERALD_STALL_AFTER", ReadBy: []Service{Sender}, Source: Tunable,
			Meaning: "the health check fails when no poll completed for this long; longer than `HERALD_WAIT_TIME`"},
		Default: 90 * time.Second, Min: time.Second, Max: time.Hour,
	}
)

// The state store (services/internal/store, DESIGN.md): Idempotency-Key
// records and notification status.
var (
	EndpointDynamoDB = Text{
		Variable: Variable{Name: "AWS_ENDPOINT_URL_DYNAMODB", ReadBy: both, Meaning: "endpoint override for DynamoDB (the local emulator)"},
		Check:    checkURL,
	}
	StoreTable = Text{
		Variable: Variable{Name: "HERALD_STORE_TABLE", ReadBy: both, Source: Set,
			Meaning: "the DynamoDB table of idempotency keys and notification status; empty: no store (local use only: no `Idempotency-Key`, no status, no deduplication)"},
	}
	IDSecretID = Text{
		Variable: Variable{Name: "HERALD_ID_SECRET_ID", ReadBy: []Service{API}, Source: SetSecret,
			Meaning: "Secrets Manager secret whose string (at least 32 bytes, used as is) derives and signs notification ids; required with the store"},
	}
	IdempotencyTTL = Duration{
		Variable: Variable{Name: "HERALD_IDEMPOTENCY_TTL", ReadBy: []Service{API}, Source: Tunable,
			Meaning: "how long an `Idempotency-Key` stays bound to its first request and answer"},
		Default: 24 * time.Hour, Min: time.Minute, Max: 7 * 24 * time.Hour,
	}
	StatusTTL = Duration{
		Variable: Variable{Name: "HERALD_STATUS_TTL", ReadBy: both, Source: Set,
			Meaning: "how long a notification's status is kept (and a redelivery recognised); at least the queue's retention plus the dead-letter queue's (checked at synth)"},
		Default: 30 * 24 * time.Hour, Min: time.Hour, Max: 365 * 24 * time.Hour,
	}
)

// FeedbackMaxReceiveCount is the feedback queue's redrive count: with the
// consumer's backoff up to HERALD_FEEDBACK_RETRY_MAX between receives, about
// 1.5 h of store outage before SQS moves an event to the feedback DLQ.
const FeedbackMaxReceiveCount = 20

// SES feedback (services/email-sender/feedback, FEEDBACK.md): the sender's
// consumer of the events SES publishes, on when the queue is set.
var (
	FeedbackQueueURL = Text{
		Variable: Variable{Name: "HERALD_FEEDBACK_QUEUE_URL", ReadBy: []Service{Sender}, Source: Set, When: "with SES feedback",
			Meaning: "the queue SES events arrive on (through SNS); empty: feedback off"},
		Check: checkURL,
	}
	FeedbackDLQURL = Text{
		Variable: Variable{Name: "HERALD_FEEDBACK_DLQ_URL", ReadBy: []Service{Sender}, Source: Set, When: "with SES feedback",
			Meaning: "where events that cannot be applied go, with their reason; required with the feedback queue"},
		Check: checkURL,
	}
	FeedbackTopicARN = Text{
		Variable: Variable{Name: "HERALD_FEEDBACK_TOPIC_ARN", ReadBy: []Service{Sender}, Source: Set, When: "with SES feedback",
			Meaning: "the SNS topic events must come from; empty: any topic"},
		Check: checkSNSTopic,
	}
	FeedbackPollers = Int{
		Variable: Variable{Name: "HERALD_FEEDBACK_POLLERS", ReadBy: []Service{Sender}, Source: Tunable,
			Meaning: "concurrent long-polls of the feedback queue (ten events in flight each)"},
		Default: 1, Min: 1, Max: 100,
	}
	FeedbackWait = Duration{
		Variable: Variable{Name: "HERALD_FEEDBACK_WAIT", ReadBy: []Service{Sender}, Source: Tunable, Meaning: "the feedback queue's long-poll wait"},
		Default:  SQSMaxWait, Min: time.Second, Max: SQSMaxWait, WholeSeconds: true,
	}
	FeedbackProcessTimeout = Duration{
		Variable: Variable{Name: "HERALD_FEEDBACK_PROCESS_TIMEOUT", ReadBy: []Service{Sender}, Source: Tunable, Meaning: "one event's processing"},
		Default:  5 * time.Second, Min: 10 * time.Millisecond, Max: time.Hour,
	}
	FeedbackVisibility = Duration{
		Variable: Variable{Name: "HERALD_FEEDBACK_VISIBILITY", ReadBy: []Service{Sender}, Source: Set,
			Meaning: "the feedback queue's visibility timeout (the stacks set the queue's from the same value); at least three process timeouts"},
		Default: 30 * time.Second, Min: 3 * time.Second, Max: SQSMaxVisibility, WholeSeconds: true,
	}
	FeedbackRetryBase = Duration{
		Variable: Variable{Name: "HERALD_FEEDBACK_RETRY_BASE", ReadBy: []Service{Sender}, Source: Tunable,
			Meaning: "first backoff of an event whose store write failed"},
		Default: 5 * time.Second, Min: time.Second, Max: SQSMaxVisibility,
	}
	FeedbackRetryMax = Duration{
		Variable: Variable{Name: "HERALD_FEEDBACK_RETRY_MAX", ReadBy: []Service{Sender}, Source: Tunable,
			Meaning: "longest backoff of an event; at least the base"},
		Default: 5 * time.Minute, Min: time.Second, Max: SQSMaxVisibility,
	}
)

// Settings lists every setting, in the order services/README.md shows them.
func Settings() []Setting {
	return []Setting{
		EnvironmentName, Region, EndpointSQS, EndpointSESv2, EndpointSecretsManager, QueueURL, HTTPAddr, LogLevel,
		MetricsInterval, ShutdownTimeout, AllowedFrom,
		DefaultFrom, APIKeyHashes, APIKeysSecretID, APIKeysRefresh, MaxMessageBytes, RateLimit, RateBurst, RateLease, RateTasks,
		BatchLinger, ReadyCache, MaxConnections,
		DLQURL, Transport, Pollers, Workers, ReceiveBatch, DeleteBatch, WaitTime, VisibilityTimeout, SendTimeout,
		SendRate, SenderTasks, RetryBase, RetryMax, RetryWindow, SESConfigurationSet, SMTPAddr, SMTPUsername,
		SMTPPassword, SMTPSecretID, SMTPTLS, SMTPCAFile, StallAfter,
		EndpointDynamoDB, StoreTable, StatusTTL, IDSecretID, IdempotencyTTL,
		FeedbackQueueURL, FeedbackDLQURL, FeedbackTopicARN, FeedbackPollers, FeedbackWait, FeedbackProcessTimeout,
		FeedbackVisibility, FeedbackRetryBase, FeedbackRetryMax,
	}
}

// Lookup returns the setting of a variable name.
func Lookup(name string) (Setting, bool) {
	for _, s := range Settings() {
		if s.Var().Name == name {
			return s, true
		}
	}
	return nil, false
}

// ReadBy lists the settings svc reads.
func ReadBy(svc Service) []Setting {
	var out []Setting
	for _, s := range Settings() {
		if s.Var().Reads(svc) {
			out = append(out, s)
		}
	}
	return out
}

// Tunables are the names of svc's settings an environment may set
// (ServiceConfig.Tuning); the stacks set the others themselves or leave
// them unset.
func Tunables(svc Service) []string {
	var out []string
	for _, s := range ReadBy(svc) {
		if s.Var().Source == Tunable {
			out = append(out, s.Var().Name)
		}
	}
	return out
}

// checkSNSTopic accepts an SNS topic ARN (any partition).
func checkSNSTopic(s string) error {
	parts := strings.Split(s, ":")
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "sns" || parts[3] == "" || parts[4] == "" || parts[5] == "" {
		return errors.New("not an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)")
	}
	return nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return errors.New("not an absolute URL")
	}
	return nil
}
