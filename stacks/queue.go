package stacks

import (
	"errors"
	"fmt"
	"time"

	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/sqsqueue"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/sqsqueuepolicy"
	"github.com/cdktf/cdktf-provider-aws-go/aws/v19/sqsqueueredriveallowpolicy"
	"github.com/hashicorp/terraform-cdk-go/cdktf"

	"herald/services/contract"
)

// sqsActions are all SQS actions, named one by one so that the TLS-only
// deny carries no wildcard.
var sqsActions = []string{
	"sqs:AddPermission", "sqs:CancelMessageMoveTask", "sqs:ChangeMessageVisibility",
	"sqs:CreateQueue", "sqs:DeleteMessage", "sqs:DeleteQueue", "sqs:GetQueueAttributes",
	"sqs:GetQueueUrl", "sqs:ListDeadLetterSourceQueues", "sqs:ListMessageMoveTasks",
	"sqs:ListQueueTags", "sqs:PurgeQueue", "sqs:ReceiveMessage", "sqs:RemovePermission",
	"sqs:SendMessage", "sqs:SetQueueAttributes", "sqs:StartMessageMoveTask",
	"sqs:TagQueue", "sqs:UntagQueue",
}

// QueueProps describe the notification queue and its dead-letter queue.
type QueueProps struct {
	// Name of the queue; the DLQ is "<Name>-dlq".
	Name    string
	Account string
	Region  string
	// MaxReceiveCount before SQS moves a message to the DLQ.
	MaxReceiveCount int
	// Retention of the queue and of the DLQ, which must be longer.
	Retention    time.Duration
	DLQRetention time.Duration
	// MaxMessageBytes is MaximumMessageSize.
	MaxMessageBytes int
	// SendTimeout is the sender's timeout for one send; the visibility
	// timeout is derived from it.
	SendTimeout time.Duration
	// Visibility, when set, is the visibility timeout instead (a queue
	// whose consumer is not the sender's send loop); SendTimeout is then
	// unused.
	Visibility time.Duration
	// KeyServiceGrants are key-policy statements for AWS services that
	// write to the queues themselves (SNS); see KeyProps.
	KeyServiceGrants []Statement
	// QueuePolicy and DeadLetterPolicy are further statements of each
	// queue's resource policy, beside the TLS-only deny.
	QueuePolicy, DeadLetterPolicy []Statement
}

// Queue is the encrypted queue pair.
type Queue struct {
	constructs.Construct
	Key        *Key
	Queue      sqsqueue.SqsQueue
	DeadLetter sqsqueue.SqsQueue
	// Names, ARNs and URLs are known at synth time.
	Name           string
	DeadLetterName string
	ARN            string
	DeadLetterARN  string
	URL            string
	DeadLetterURL  string
	// VisibilityTimeout of the queue, handed to the sender as
	// HERALD_VISIBILITY_TIMEOUT.
	VisibilityTimeout time.Duration
	// WaitTime is the long-poll wait (HERALD_WAIT_TIME).
	WaitTime time.Duration
	// MaxMessageBytes is the queue's MaximumMessageSize.
	MaxMessageBytes int
	region          string
}

// Grants, as AWS CDK's queue.grantSendMessages and grantConsumeMessages:
// the queue knows what its producers and its consumer need, its key
// included (used through SQS only).

// GrantSend is what a producer needs: send to the queue, read its
// attributes (a readiness check), encrypt with its key.
func (q *Queue) GrantSend() []Statement {
	return []Statement{
		{Sid: "EnqueueNotifications", Actions: []string{"sqs:GetQueueAttributes", "sqs:SendMessage"}, Resources: []string{*q.Queue.Arn()}},
		q.grantKey("EncryptQueuedMessages"),
	}
}

// GrantConsume is what the consumer needs: receive, keep messages
// invisible, delete them, read the attributes; dead-letter permanent
// failures; send a transiently failing message back as a copy that carries
// its retry budget; and the key both ways.
func (q *Queue) GrantConsume() []Statement {
	return []Statement{
		{Sid: "ConsumeNotifications", Actions: []string{"sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"}, Resources: []string{*q.Queue.Arn()}},
		{Sid: "DeadLetterPermanentFailures", Actions: []string{"sqs:SendMessage"}, Resources: []string{*q.DeadLetter.Arn()}},
		{Sid: "RequeueForRetry", Actions: []string{"sqs:SendMessage"}, Resources: []string{*q.Queue.Arn()}},
		q.grantKey("DecryptAndEncryptQueuedMessages"),
	}
}

// grantKey lets SQS use the queues' key on the role's behalf: data keys to
// encrypt what it sends, decryption of what it receives.
func (q *Queue) grantKey(sid string) Statement {
	return Statement{Sid: sid, Actions: []string{"kms:Decrypt", "kms:GenerateDataKey"}, Resources: []string{*q.Key.Key.Arn()}, Conditions: viaService("sqs", q.region)}
}

const queueWaitTime = 20 * time.Second

func (p *QueueProps) validate() error {
	var errs []error
	if p.Name == "" || len(p.Name)+len("-dlq") > 80 {
		errs = append(errs, fmt.Errorf("Name %q must be 1..76 characters", p.Name))
	}
	env := Environment{
		Name:  p.Name,
		Queue: QueueConfig{MaxReceiveCount: p.MaxReceiveCount, Retention: p.Retention, DLQRetention: p.DLQRetention, MaxMessageBytes: p.MaxMessageBytes},
		Email: EmailConfig{SendTimeout: p.SendTimeout},
	}
	pr := &problems{env: p.Name}
	if p.Visibility != 0 {
		if p.Visibility < time.Second || p.Visibility > contract.SQSMaxVisibility || p.Visibility%time.Second != 0 {
			pr.add("Visibility", "%s is not whole seconds within 1s..%s", p.Visibility, contract.SQSMaxVisibility)
		}
		// validateQueue reads the visibility as 6 x the send timeout
		env.Email.SendTimeout = p.Visibility / visibilityPerSend
		env.validateQueue(pr)
		return errors.Join(append(errs, pr.errs...)...)
	}
	env.validateQueue(pr)
	if err := contract.VisibilityTimeout.Check(env.Email.VisibilityTimeout()); err != nil || p.SendTimeout < time.Second {
		pr.add("SendTimeout", "%s gives a visibility timeout of %s, outside %s", p.SendTimeout, env.Email.VisibilityTimeout(), contract.VisibilityTimeout.Values())
	}
	return errors.Join(append(errs, pr.errs...)...)
}

// NewQueue creates the key, both queues, the redrive and TLS-only policies.
func NewQueue(scope constructs.Construct, id string, props *QueueProps) *Queue {
	if props == nil {
		props = &QueueProps{}
	}
	p := *props
	if err := p.validate(); err != nil {
		panic(fmt.Errorf("herald: queue %s: %w", id, err))
	}
	c := constructs.NewConstruct(scope, &id)
	visibility := visibilityPerSend * p.SendTimeout
	if p.Visibility != 0 {
		visibility = p.Visibility
	}
	q := &Queue{
		Construct:         c,
		Name:              p.Name,
		DeadLetterName:    p.Name + "-dlq",
		VisibilityTimeout: visibility,
		region:            p.Region,
		WaitTime:          queueWaitTime,
		MaxMessageBytes:   p.MaxMessageBytes,
	}
	// Producers and consumers use the key through SQS with their own IAM
	// permissions; the key policy needs a service statement only for a
	// service that sends on its own (KeyServiceGrants).
	q.Key = NewKey(c, "key", keyFor(p.Name, "Encrypts the messages of "+p.Name+" and its dead-letter queue", p.Account, p.Region, p.KeyServiceGrants...))
	// Both queues share every setting but name and retention.
	queueConfig := func(name string, retention time.Duration) *sqsqueue.SqsQueueConfig {
		return &sqsqueue.SqsQueueConfig{
			Name:                         jsii.String(name),
			KmsMasterKeyId:               q.Key.Key.Arn(),
			KmsDataKeyReusePeriodSeconds: jsii.Number(300),
			MessageRetentionSeconds:      jsii.Number(retention.Seconds()),
			MaxMessageSize:               jsii.Number(float64(p.MaxMessageBytes)),
			ReceiveWaitTimeSeconds:       jsii.Number(queueWaitTime.Seconds()),
			VisibilityTimeoutSeconds:     jsii.Number(q.VisibilityTimeout.Seconds()),
		}
	}
	q.DeadLetter = sqsqueue.NewSqsQueue(c, jsii.String("dead-letter"), queueConfig(q.DeadLetterName, p.DLQRetention))
	// ARNs and URLs are spelled out rather than referenced: they are known
	// from the names, and JSON documents that embed no reference render
	// cleanly in both of cdktf's output formats.
	q.ARN = sqsARN(p.Region, p.Account, q.Name)
	q.DeadLetterARN = sqsARN(p.Region, p.Account, q.DeadLetterName)
	q.URL = fmt.Sprintf("https://sqs.%s.amazonaws.com/%s/%s", p.Region, p.Account, q.Name)
	q.DeadLetterURL = fmt.Sprintf("https://sqs.%s.amazonaws.com/%s/%s", p.Region, p.Account, q.DeadLetterName)
	main := queueConfig(p.Name, p.Retention)
	main.RedrivePolicy = jsii.String(mustJSON(map[string]any{
		"deadLetterTargetArn": q.DeadLetterARN,
		"maxReceiveCount":     p.MaxReceiveCount,
	}))
	// SQS checks that the dead-letter queue exists
	main.DependsOn = &[]cdktf.ITerraformDependable{q.DeadLetter}
	q.Queue = sqsqueue.NewSqsQueue(c, jsii.String("queue"), main)
	// Only the notification queue may dead-letter into the DLQ.
	sqsqueueredriveallowpolicy.NewSqsQueueRedriveAllowPolicy(c, jsii.String("dead-letter-sources"), &sqsqueueredriveallowpolicy.SqsQueueRedriveAllowPolicyConfig{
		QueueUrl: q.DeadLetter.Url(),
		RedriveAllowPolicy: jsii.String(mustJSON(map[string]any{
			"redrivePermission": "byQueue",
			"sourceQueueArns":   []string{q.ARN},
		})),
	})
	for _, target := range []struct {
		id    string
		queue sqsqueue.SqsQueue
		extra []Statement
	}{{"queue", q.Queue, p.QueuePolicy}, {"dead-letter", q.DeadLetter, p.DeadLetterPolicy}} {
		doc := newPolicyDocument(c, target.id+"-policy-document", append([]Statement{{
			Sid:        "RefuseUnencryptedTransport",
			Deny:       true,
			Actions:    sqsActions,
			Resources:  []string{*target.queue.Arn()},
			Principals: []Principal{{Type: "*", Identifiers: []string{"*"}}},
			Conditions: []Condition{{Test: "Bool", Variable: "aws:SecureTransport", Values: []string{"false"}}},
		}}, target.extra...), resourcePolicy)
		sqsqueuepolicy.NewSqsQueuePolicy(c, jsii.String(target.id+"-policy"), &sqsqueuepolicy.SqsQueuePolicyConfig{
			QueueUrl: target.queue.Url(),
			Policy:   doc.Json(),
		})
	}
	return q
}

func sqsARN(region, account, name string) string {
	return fmt.Sprintf("arn:%s:sqs:%s:%s:%s", partition(region), region, account, name)
}
