package transport

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"

	"herald/services/email-sender/feedback/sestag"
	"herald/services/internal/herald"
)

// SESAPI is the part of the SES v2 client the transport uses.
type SESAPI interface {
	SendEmail(ctx context.Context, in *sesv2.SendEmailInput, optFns ...func(*sesv2.Options)) (*sesv2.SendEmailOutput, error)
}

// SES sends through SES v2 SendEmail with Simple content.
type SES struct {
	client           SESAPI
	configurationSet string
}

// NewSES sends with client; configurationSet may be empty.
func NewSES(client SESAPI, configurationSet string) *SES {
	return &SES{client: client, configurationSet: configurationSet}
}

// Send returns the SES message id.
func (s *SES) Send(ctx context.Context, e *herald.Envelope) (string, error) {
	out, err := s.client.SendEmail(ctx, SendEmailInput(e, s.configurationSet))
	if err != nil {
		return "", err
	}
	return aws.ToString(out.MessageId), nil
}

// SendEmailInput maps an envelope to an SES v2 request.
func SendEmailInput(e *herald.Envelope, configurationSet string) *sesv2.SendEmailInput {
	body := &types.Body{}
	if e.Text != "" {
		body.Text = &types.Content{Data: aws.String(e.Text), Charset: aws.String("UTF-8")}
	}
	if e.HTML != "" {
		body.Html = &types.Content{Data: aws.String(e.HTML), Charset: aws.String("UTF-8")}
	}
	in := &sesv2.SendEmailInput{
		FromEmailAddress: aws.String(sesAddress(e.From)),
		Destination: &types.Destination{
			ToAddresses:  sesAddresses(e.To),
			CcAddresses:  sesAddresses(e.Cc),
			BccAddresses: sesAddresses(e.Bcc),
		},
		Content: &types.EmailContent{Simple: &types.Message{
			Subject: &types.Content{Data: aws.String(e.Subject), Charset: aws.String("UTF-8")},
			Body:    body,
		}},
		// Every send carries its notification id, so each SES event finds
		// its notification (the feedback consumer; FEEDBACK.md).
		EmailTags: sestag.WithNotificationTag(EmailTags(e.Metadata), e.ID),
	}
	if e.ReplyTo != "" {
		in.ReplyToAddresses = []string{sesAddress(e.ReplyTo)}
	}
	if configurationSet != "" {
		in.ConfigurationSetName = aws.String(configurationSet)
	}
	return in
}

// sesAddress returns an address as SES takes it: SES wants a display name
// with non-ASCII characters in RFC 2047 encoded-word form, which net/mail
// writes; other addresses pass as they are.
func sesAddress(addr string) string {
	a, err := mail.ParseAddress(addr)
	if err != nil || isPrintableASCII(a.Name) {
		return addr
	}
	return a.String()
}

func sesAddresses(list []string) []string {
	if list == nil {
		return nil
	}
	out := make([]string, len(list))
	for i, a := range list {
		out[i] = sesAddress(a)
	}
	return out
}

// EmailTags turns metadata into SES message tags, in key order. SES accepts
// only ASCII letters, digits, '_' and '-' (at most 256 characters) in a tag's
// name and value and rejects the whole send otherwise, so entries outside
// that charset are skipped rather than sent.
func EmailTags(metadata map[string]string) []types.MessageTag {
	keys := make([]string, 0, len(metadata))
	for k, v := range metadata {
		if validTagText(k) && validTagText(v) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	sort.Strings(keys)
	tags := make([]types.MessageTag, len(keys))
	for i, k := range keys {
		tags[i] = types.MessageTag{Name: aws.String(k), Value: aws.String(metadata[k])}
	}
	return tags
}

func validTagText(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// AccountAPI is the SES v2 call that reads the account's sending quota.
type AccountAPI interface {
	GetAccount(ctx context.Context, in *sesv2.GetAccountInput, optFns ...func(*sesv2.Options)) (*sesv2.GetAccountOutput, error)
}

// AccountSendRate returns the account's maximum send rate (messages per
// second) in the client's region.
func AccountSendRate(ctx context.Context, client AccountAPI) (float64, error) {
	out, err := client.GetAccount(ctx, &sesv2.GetAccountInput{})
	if err != nil {
		return 0, fmt.Errorf("ses GetAccount: %w", err)
	}
	if out.SendQuota == nil || out.SendQuota.MaxSendRate <= 0 {
		return 0, errors.New("ses GetAccount: no send quota in the answer")
	}
	return out.SendQuota.MaxSendRate, nil
}
