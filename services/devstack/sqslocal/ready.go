package sqslocal

// Ready is the one JSON line the sqs-local binary prints on stdout once it
// serves, so a parent process learns the port it picked and the queue URLs.
type Ready struct {
	Ready    bool   `json:"ready"`
	Endpoint string `json:"endpoint"`
	QueueURL string `json:"queueUrl"`
	DLQURL   string `json:"dlqUrl,omitempty"`
	// FeedbackURL and FeedbackDLQURL are the SES feedback queue's and its
	// dead-letter queue's, when sqs-local made them.
	FeedbackURL    string `json:"feedbackUrl,omitempty"`
	FeedbackDLQURL string `json:"feedbackDlqUrl,omitempty"`
}
