package devstack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"herald/services/internal/herald"
)

// Email is one mail in the SES emulator's store.
type Email struct {
	MessageID   string   `json:"messageId"`
	From        string   `json:"from"`
	ReplyTo     []string `json:"replyTo"`
	Destination struct {
		To  []string `json:"to"`
		Cc  []string `json:"cc"`
		Bcc []string `json:"bcc"`
	} `json:"destination"`
	Subject string `json:"subject"`
	Body    struct {
		Text string `json:"text"`
		HTML string `json:"html"`
	} `json:"body"`
	// At is when the emulator stored it, in whole Unix seconds (the gate's
	// records have milliseconds).
	At int64 `json:"at"`
}

// Emails returns every mail in the SES emulator's store.
func (s *Stack) Emails(ctx context.Context) ([]Email, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.SESURL()+"/store", nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read the SES store: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("read the SES store: status %d: %s", resp.StatusCode, b)
	}
	var store struct {
		Emails []Email `json:"emails"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&store); err != nil {
		return nil, fmt.Errorf("decode the SES store: %w", err)
	}
	return store.Emails, nil
}

// ClearEmails empties the SES emulator's store.
func (s *Stack) ClearEmails(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.SESURL()+"/clear-store", nil)
	if err != nil {
		return err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return fmt.Errorf("clear the SES store: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("clear the SES store: status %d", resp.StatusCode)
	}
	return nil
}

// SQSClient is an SDK client for the SQS emulator; its HTTP timeout leaves
// room for 20 s long polls. (A restarted emulator keeps its endpoint.)
func (s *Stack) SQSClient() *sqs.Client {
	return sqs.New(sqs.Options{
		Region:       s.cfg.Region,
		BaseEndpoint: aws.String(s.SQSEndpoint()),
		Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
		// Guarded like the services' clients: without it, an answer lost to
		// the SDK's body quirk makes it retry a ReceiveMessage, and what the
		// lost answer handed out stays invisible (a peek sees nothing).
		HTTPClient: herald.GuardRequestBodies(&http.Client{Timeout: 30 * time.Second, Transport: s.http.Transport}),
	})
}

// Depth is how many messages a queue holds.
type Depth struct {
	// Visible messages wait to be received.
	Visible int
	// InFlight messages were received and not yet deleted, or are delayed.
	InFlight int
}

// Total is every message the queue holds.
func (d Depth) Total() int { return d.Visible + d.InFlight }

// QueueDepth reads a queue's depth from GetQueueAttributes. (goaws counts
// in-flight messages inside ApproximateNumberOfMessages, unlike SQS; Depth
// separates them again.)
func (s *Stack) QueueDepth(ctx context.Context, queueURL string) (Depth, error) {
	out, err := s.SQSClient().GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(queueURL),
		AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		return Depth{}, fmt.Errorf("queue depth of %s: %w", queueURL, err)
	}
	atoi := func(name sqstypes.QueueAttributeName) (int, error) {
		n, err := strconv.Atoi(out.Attributes[string(name)])
		if err != nil {
			return 0, fmt.Errorf("queue depth of %s: attribute %s: %w", queueURL, name, err)
		}
		return n, nil
	}
	all, err := atoi(sqstypes.QueueAttributeNameApproximateNumberOfMessages)
	if err != nil {
		return Depth{}, err
	}
	hidden, err := atoi(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)
	if err != nil {
		return Depth{}, err
	}
	return Depth{Visible: all - hidden, InFlight: hidden}, nil
}

// DeadLetter is one message in the dead-letter queue.
type DeadLetter struct {
	MessageID  string
	Body       string
	Attributes map[string]string // message attributes (string values)
	// ReceiveCount is how often it was received, this peek included.
	ReceiveCount int
}

// PeekDeadLetters receives every message in the dead-letter queue and makes
// each visible again at once, so they stay there.
func (s *Stack) PeekDeadLetters(ctx context.Context) ([]DeadLetter, error) {
	c := s.SQSClient()
	dlq := s.DLQURL()
	var out []DeadLetter
	var handles []string
	seen := map[string]bool{}
	for i := 0; i < 100; i++ { // at most 1000 messages
		res, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(dlq),
			MaxNumberOfMessages:         10,
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameApproximateReceiveCount},
			VisibilityTimeout:           30,
		})
		if err != nil {
			return nil, fmt.Errorf("peek the dead-letter queue: %w", err)
		}
		if len(res.Messages) == 0 {
			break
		}
		for _, m := range res.Messages {
			handles = append(handles, aws.ToString(m.ReceiptHandle))
			id := aws.ToString(m.MessageId)
			if seen[id] {
				continue
			}
			seen[id] = true
			d := DeadLetter{MessageID: id, Body: aws.ToString(m.Body), Attributes: map[string]string{}}
			d.ReceiveCount, _ = strconv.Atoi(m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)])
			for k, v := range m.MessageAttributes {
				d.Attributes[k] = aws.ToString(v.StringValue)
			}
			out = append(out, d)
		}
	}
	for _, h := range handles {
		if _, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
			QueueUrl: aws.String(dlq), ReceiptHandle: aws.String(h), VisibilityTimeout: 0,
		}); err != nil {
			return out, fmt.Errorf("release a peeked dead letter: %w", err)
		}
	}
	return out, nil
}
