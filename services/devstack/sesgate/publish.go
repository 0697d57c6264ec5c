package sesgate

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// ConfigurationSet is one of the account's configuration sets.
type ConfigurationSet struct {
	Name string
	// SuppressedReasons, when not nil, replace the account's for sends
	// with this set (SES's SuppressionOptions of a configuration set); an
	// empty, non-nil list turns suppression off for them.
	SuppressedReasons []string
	// Events is the set's event destination; nil publishes nothing.
	Events *EventDestination
}

// EventDestination publishes a configuration set's events to an SNS topic
// with one subscriber, an SQS queue without raw message delivery: the gate
// sends each event, in its SNS envelope, to that queue.
type EventDestination struct {
	// EventTypes are the MatchingEventTypes: SEND, REJECT, BOUNCE,
	// COMPLAINT, DELIVERY, DELIVERY_DELAY, RENDERING_FAILURE.
	EventTypes []string
	// TopicARN is the topic's, carried in each envelope.
	TopicARN string
	// SQSEndpoint is the SQS emulator's base URL and QueueURL the queue's.
	// Either empty: no events.
	SQSEndpoint, QueueURL string
}

// PublishedEvent is one event the gate published.
type PublishedEvent struct {
	EventType    string    `json:"eventType"`
	MessageID    string    `json:"messageId"`
	Recipients   []string  `json:"recipients,omitempty"`
	SNSMessageID string    `json:"snsMessageId"`
	At           time.Time `json:"at"`
}

// maxPublishedKept bounds the record of published events.
const maxPublishedKept = 10000

// publisher sends one destination's events in order, off the SES call's path.
type publisher struct {
	dest   EventDestination
	types  map[string]bool
	client *sqs.Client
	signer *signer
	region string
	log    *slog.Logger
	record func(PublishedEvent, error)

	in     chan []*sesRecord
	done   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	// certURL is where the signing certificate is served, from the first
	// send's Host (the gate does not know its own address before that).
	mu      sync.Mutex
	certURL string
}

func newPublisher(dest EventDestination, region string, s *signer, log *slog.Logger, record func(PublishedEvent, error)) *publisher {
	ctx, cancel := context.WithCancel(context.Background())
	p := &publisher{
		dest: dest, types: reasonSet(dest.EventTypes), signer: s, region: region, log: log, record: record,
		client: sqs.New(sqs.Options{
			Region:       region,
			BaseEndpoint: aws.String(dest.SQSEndpoint),
			Credentials:  credentials.NewStaticCredentialsProvider("sesgate", "sesgate", ""),
		}),
		in: make(chan []*sesRecord, 4096), done: make(chan struct{}), ctx: ctx, cancel: cancel,
	}
	go p.loop()
	return p
}

// publish queues one send's events; false when the queue is full (the
// events are dropped and counted, the SES call is not held up).
func (p *publisher) publish(certURL string, recs []*sesRecord) bool {
	p.mu.Lock()
	if p.certURL == "" {
		p.certURL = certURL
	}
	p.mu.Unlock()
	select {
	case p.in <- recs:
		return true
	default:
		return false
	}
}

func (p *publisher) loop() {
	defer close(p.done)
	for recs := range p.in {
		for _, rec := range recs {
			if !p.types[apiEventType[rec.EventType]] {
				continue
			}
			ev, err := p.send(rec)
			p.record(ev, err)
		}
	}
}

// send publishes one record, with the SQS client's retries.
func (p *publisher) send(rec *sesRecord) (PublishedEvent, error) {
	now := time.Now()
	ev := PublishedEvent{EventType: rec.EventType, MessageID: rec.Mail.MessageID, Recipients: recordRecipients(rec), At: now}
	p.mu.Lock()
	certURL := p.certURL
	p.mu.Unlock()
	body, err := p.signer.envelope(p.dest.TopicARN, p.region, certURL, rec, now)
	if err != nil {
		return ev, err
	}
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	out, err := p.client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(p.dest.QueueURL), MessageBody: aws.String(string(body))})
	if err != nil {
		return ev, fmt.Errorf("sesgate: publish %s of %s: %w", rec.EventType, rec.Mail.MessageID, err)
	}
	ev.SNSMessageID = aws.ToString(out.MessageId)
	return ev, nil
}

// close publishes what is queued, for up to grace, then drops the rest.
func (p *publisher) close(grace time.Duration) {
	close(p.in)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.cancel()
		<-p.done
	}
	p.cancel()
}

// recordRecipients are the addresses an event is about.
func recordRecipients(rec *sesRecord) []string {
	var out []string
	switch {
	case rec.Delivery != nil:
		out = rec.Delivery.Recipients
	case rec.Bounce != nil:
		for _, r := range rec.Bounce.BouncedRecipients {
			out = append(out, r.EmailAddress)
		}
	case rec.Complaint != nil:
		for _, r := range rec.Complaint.ComplainedRecipients {
			out = append(out, r.EmailAddress)
		}
	case rec.DeliveryDelay != nil:
		for _, r := range rec.DeliveryDelay.DelayedRecipients {
			out = append(out, r.EmailAddress)
		}
	default:
		out = rec.Mail.Destination
	}
	return append([]string(nil), out...)
}

func checkConfigurationSets(sets []ConfigurationSet, def string) error {
	names := map[string]bool{}
	for _, s := range sets {
		if s.Name == "" || names[s.Name] {
			return fmt.Errorf("sesgate: configuration set name %q is empty or given twice", s.Name)
		}
		names[s.Name] = true
		if err := validReasons(s.SuppressedReasons); err != nil {
			return err
		}
		if d := s.Events; d != nil {
			for _, t := range d.EventTypes {
				if !knownAPIEventType(t) {
					return fmt.Errorf("sesgate: configuration set %s: event type %q is not one of %s", s.Name, t, strings.Join(sortedAPIEventTypes(), ", "))
				}
			}
			if (d.SQSEndpoint == "") != (d.QueueURL == "") {
				return fmt.Errorf("sesgate: configuration set %s: the SQS endpoint and the queue URL go together", s.Name)
			}
			if d.QueueURL != "" && !strings.HasPrefix(d.TopicARN, "arn:aws:sns:") {
				return fmt.Errorf("sesgate: configuration set %s: topic ARN %q is not an SNS topic's", s.Name, d.TopicARN)
			}
		}
	}
	if def != "" && !names[def] {
		return fmt.Errorf("sesgate: the default configuration set %q is not among the configuration sets", def)
	}
	return nil
}

func knownAPIEventType(t string) bool {
	for _, v := range apiEventType {
		if v == t {
			return true
		}
	}
	return false
}

func sortedAPIEventTypes() []string {
	return sortedKeys(reasonSet(mapValues(apiEventType)), func(s string) string { return s })
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
