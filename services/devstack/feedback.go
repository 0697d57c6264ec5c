package devstack

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"

	"herald/services/email-sender/transport"
	"herald/services/internal/herald"
	"herald/services/internal/store"
)

// SendAsSender makes one send to the addresses as the email sender makes
// it, from this process: a new notification id claimed in the state store
// for the dev key, the transport's SendEmail (the configuration set, the
// notification tag) through the SES gate, MarkSent with SES's message id.
// The gate then publishes the send's events to the feedback queue, where a
// test can take them while the senders are stopped. It returns the
// notification id.
func (s *Stack) SendAsSender(ctx context.Context, subject string, to ...string) (string, error) {
	st, err := store.New(s.Dynamo().Client(), store.Config{
		Table: s.cfg.StoreTable, IdempotencyTTL: time.Hour, StatusTTL: 24 * time.Hour, Clock: time.Now,
	})
	if err != nil {
		return "", err
	}
	id := herald.NewID()
	claim, err := st.Claim(ctx, id, DevKeyID, time.Minute)
	if err != nil {
		return "", err
	}
	if claim.Outcome != store.Claimed {
		return "", fmt.Errorf("devstack: claim of a new id: %s", claim.Outcome)
	}
	env := &herald.Envelope{V: herald.EnvelopeVersion, ID: id, KeyID: DevKeyID, CreatedAt: time.Now().UTC(),
		From: s.cfg.DefaultFrom, To: to, Subject: subject, Text: "x"}
	ses := sesv2.New(sesv2.Options{Region: s.cfg.Region, BaseEndpoint: aws.String(s.GateURL()),
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")})
	out, err := ses.SendEmail(ctx, transport.SendEmailInput(env, ConfigurationSet))
	if err != nil {
		return "", fmt.Errorf("devstack: send through the gate: %w", err)
	}
	if _, err := st.MarkSent(ctx, claim.Lease, aws.ToString(out.MessageId), time.Now()); err != nil {
		return "", err
	}
	return id, nil
}
