package sqslocal

// Ready is the one JSON line the sqs-local binary prints on stdout once it
// serves, so a parent process learns the port it picked and the queue URLs.
type Ready struct {
	Ready    bool   `json:"ready"`
	Endpoint string `json:"endpoint"`
	QueueURL string `json:"queueUrl"`
	DLQURL   string `json:"dlqUrl,omitempty"`
}
