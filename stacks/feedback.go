package stacks

import (
	"errors"
	"fmt"
	"time"

	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/sesv2configurationseteventdestination"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/snstopic"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/snstopicpolicy"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/snstopicsubscription"
	"github.com/hashicorp/terraform-cdk-go/cdktf"

	"herald/services/contract"
)

// SES feedback (issue 14; services/email-sender/feedback/FEEDBACK.md): the
// configuration set publishes its events to an SNS topic, the topic
// delivers them to the feedback queue, and the sender's feedback consumer
// records them on each notification's status item.

// An event that fails contract.FeedbackMaxReceiveCount times goes to the
// feedback DLQ (the consumer backs off between tries, so its receives span
// the store's outages, not seconds); the local pipeline's queue has the same.
const (
	feedbackRetention    = 4 * 24 * time.Hour
	feedbackDLQRetention = maxQueueRetention
)

// FeedbackProps describe the path of SES's events to the sender.
type FeedbackProps struct {
	// Prefix names the topic "<Prefix>-feedback", the queues
	// "<Prefix>-feedback" and "<Prefix>-feedback-dlq", and the key's alias.
	Prefix  string
	Account string
	Region  string
	// ConfigurationSetName is the SES configuration set whose events are
	// published; ConfigurationSet, when the stack creates it, orders the
	// event destination after it.
	ConfigurationSetName string
	ConfigurationSet     cdktf.ITerraformDependable
	// Visibility is the feedback queue's visibility timeout, the
	// consumer's HERALD_FEEDBACK_VISIBILITY.
	Visibility time.Duration
}

// Feedback is the topic, the feedback queue and its DLQ (one key for all
// three), the subscription and the configuration set's event destination.
type Feedback struct {
	constructs.Construct
	// Queue holds the feedback queue, its DLQ and the key.
	Queue            *Queue
	Topic            snstopic.SnsTopic
	TopicPolicy      snstopicpolicy.SnsTopicPolicy
	EventDestination sesv2configurationseteventdestination.Sesv2ConfigurationSetEventDestination
	// TopicARN and ConfigurationSetARN are known at synth time.
	TopicARN            string
	ConfigurationSetARN string
}

// GrantConsume is what the feedback consumer needs: receive, hold and
// delete events; move what it cannot apply to the DLQ; the key through SQS.
// No SendMessage to the feedback queue: only the topic may put events
// there (its policy refuses everyone else).
func (f *Feedback) GrantConsume() []Statement {
	q := f.Queue
	return []Statement{
		{Sid: "ConsumeFeedback", Actions: []string{"sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage"}, Resources: []string{*q.Queue.Arn()}},
		{Sid: "DeadLetterFeedback", Actions: []string{"sqs:SendMessage"}, Resources: []string{*q.DeadLetter.Arn()}},
		q.grantKey("DecryptAndEncryptFeedback"),
	}
}

func (p *FeedbackProps) validate() error {
	var errs []error
	if p.Prefix == "" || p.ConfigurationSetName == "" {
		errs = append(errs, errors.New("Prefix and ConfigurationSetName are required"))
	}
	if !accountPattern.MatchString(p.Account) || !regionPattern.MatchString(p.Region) {
		errs = append(errs, errors.New("Account and Region are required"))
	}
	if err := contract.FeedbackVisibility.Check(p.Visibility); err != nil {
		errs = append(errs, fmt.Errorf("Visibility: %w", err))
	}
	return errors.Join(errs...)
}

// NewFeedback creates the key, the topic and its policy, both queues with
// their policies, the subscription and the event destination.
func NewFeedback(scope constructs.Construct, id string, props *FeedbackProps) *Feedback {
	if props == nil {
		props = &FeedbackProps{}
	}
	p := *props
	if err := p.validate(); err != nil {
		panic(fmt.Errorf("herald: feedback %s: %w", id, err))
	}
	c := constructs.NewConstruct(scope, &id)
	name := p.Prefix + "-feedback"
	f := &Feedback{
		Construct:           c,
		TopicARN:            fmt.Sprintf("arn:%s:sns:%s:%s:%s", partition(p.Region), p.Region, p.Account, name),
		ConfigurationSetARN: fmt.Sprintf("arn:%s:ses:%s:%s:configuration-set/%s", partition(p.Region), p.Region, p.Account, p.ConfigurationSetName),
	}
	fromThisAccount := Condition{Test: "StringEquals", Variable: "aws:SourceAccount", Values: []string{p.Account}}
	fromTheSet := Condition{Test: "ArnEquals", Variable: "aws:SourceArn", Values: []string{f.ConfigurationSetARN}}
	fromTheTopic := Condition{Test: "ArnEquals", Variable: "aws:SourceArn", Values: []string{f.TopicARN}}
	service := func(s string) []Principal {
		return []Principal{{Type: "Service", Identifiers: []string{s + ".amazonaws.com"}}}
	}
	snsSends := func(sid, queueARN string) Statement {
		return Statement{Sid: sid, Actions: []string{"sqs:SendMessage"}, Resources: []string{queueARN}, Principals: service("sns"), Conditions: []Condition{fromTheTopic}}
	}
	queueARN := sqsARN(p.Region, p.Account, name)
	dlqARN := sqsARN(p.Region, p.Account, name+"-dlq")
	// One key for topic and queues: SES encrypts what it publishes to the
	// topic, SNS what it delivers to the queues, each only for this
	// configuration set and this topic.
	f.Queue = NewQueue(c, "queue", &QueueProps{
		Name:            name,
		Account:         p.Account,
		Region:          p.Region,
		MaxReceiveCount: contract.FeedbackMaxReceiveCount,
		Retention:       feedbackRetention,
		DLQRetention:    feedbackDLQRetention,
		MaxMessageBytes: maxQueueMessageBytes,
		Visibility:      p.Visibility,
		KeyServiceGrants: []Statement{
			{Sid: "SESPublishesThisSetsEvents", Actions: []string{"kms:Decrypt", "kms:GenerateDataKey"}, Principals: service("ses"), Conditions: []Condition{fromThisAccount, fromTheSet}},
			{Sid: "SNSDeliversThisTopicsEvents", Actions: []string{"kms:Decrypt", "kms:GenerateDataKey"}, Principals: service("sns"), Conditions: []Condition{fromThisAccount, fromTheTopic}},
		},
		QueuePolicy: []Statement{
			snsSends("TopicDeliversEvents", queueARN),
			{
				// No role of the account can forge an event: only the
				// topic's deliveries carry its ARN as the source.
				Sid: "OnlyTheTopicSends", Deny: true, Actions: []string{"sqs:SendMessage"}, Resources: []string{queueARN},
				Principals: []Principal{{Type: "*", Identifiers: []string{"*"}}},
				Conditions: []Condition{{Test: "ArnNotEquals", Variable: "aws:SourceArn", Values: []string{f.TopicARN}}},
			},
		},
		// What SNS cannot deliver lands here (the subscription's redrive).
		DeadLetterPolicy: []Statement{snsSends("TopicDeadLettersUndeliverable", dlqARN)},
	})
	f.Topic = snstopic.NewSnsTopic(c, jsii.String("topic"), &snstopic.SnsTopicConfig{
		Name:           jsii.String(name),
		DisplayName:    jsii.String("Herald SES events of " + p.ConfigurationSetName),
		KmsMasterKeyId: f.Queue.Key.Key.Arn(),
	})
	policy := newPolicyDocument(c, "topic-policy-document", []Statement{
		{Sid: "SESPublishesThisSetsEvents", Actions: []string{"sns:Publish"}, Resources: []string{f.TopicARN}, Principals: service("ses"), Conditions: []Condition{fromThisAccount, fromTheSet}},
		{
			Sid: "RefuseUnencryptedTransport", Deny: true, Actions: []string{"sns:Publish", "sns:Subscribe"}, Resources: []string{f.TopicARN},
			Principals: []Principal{{Type: "*", Identifiers: []string{"*"}}},
			Conditions: []Condition{{Test: "Bool", Variable: "aws:SecureTransport", Values: []string{"false"}}},
		},
	}, resourcePolicy)
	f.TopicPolicy = snstopicpolicy.NewSnsTopicPolicy(c, jsii.String("topic-policy"), &snstopicpolicy.SnsTopicPolicyConfig{
		Arn:    f.Topic.Arn(),
		Policy: policy.Json(),
	})
	snstopicsubscription.NewSnsTopicSubscription(c, jsii.String("subscription"), &snstopicsubscription.SnsTopicSubscriptionConfig{
		TopicArn: f.Topic.Arn(),
		Protocol: jsii.String("sqs"),
		Endpoint: f.Queue.Queue.Arn(),
		// the processor reads the SNS envelope and refuses raw events
		RawMessageDelivery: jsii.Bool(false),
		RedrivePolicy:      jsii.String(mustJSON(map[string]any{"deadLetterTargetArn": dlqARN})),
	})
	// Without the topic's policy and the key's, SES cannot publish and the
	// events are lost: the destination waits for both.
	dependsOn := []cdktf.ITerraformDependable{f.TopicPolicy, f.Queue.Key.Key}
	if p.ConfigurationSet != nil {
		dependsOn = append(dependsOn, p.ConfigurationSet)
	}
	f.EventDestination = sesv2configurationseteventdestination.NewSesv2ConfigurationSetEventDestination(c, jsii.String("event-destination"), &sesv2configurationseteventdestination.Sesv2ConfigurationSetEventDestinationConfig{
		ConfigurationSetName: jsii.String(p.ConfigurationSetName),
		EventDestinationName: jsii.String("herald-feedback"),
		EventDestination: &sesv2configurationseteventdestination.Sesv2ConfigurationSetEventDestinationEventDestination{
			Enabled:            jsii.Bool(true),
			MatchingEventTypes: jsii.Strings(contract.SESEventTypes()...),
			SnsDestination: &sesv2configurationseteventdestination.Sesv2ConfigurationSetEventDestinationEventDestinationSnsDestination{
				TopicArn: f.Topic.Arn(),
			},
		},
		DependsOn: &dependsOn,
	})
	return f
}
