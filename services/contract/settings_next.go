package contract

import "time"

// Settings declared for SES feedback (issue 14). Each joins the list in Settings when a service reads it; the
// engineer wiring a setting moves its declaration to settings.go then, and
// this file goes when it is empty.

// SES feedback settings (services/email-sender/feedback, FEEDBACK.md).
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

// pending lists the settings above: Lookup finds them (so the stacks may set
// them before a service reads them), Settings and the README do not.
func pending() []Setting {
	return []Setting{
		FeedbackQueueURL, FeedbackDLQURL, FeedbackTopicARN, FeedbackPollers, FeedbackWait,
		FeedbackProcessTimeout, FeedbackVisibility, FeedbackRetryBase, FeedbackRetryMax,
	}
}
