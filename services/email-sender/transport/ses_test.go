package transport

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"

	"herald/services/contract"
	"herald/services/internal/herald"
)

type fakeSES struct {
	in      *sesv2.SendEmailInput
	err     error
	account *sesv2.GetAccountOutput
}

func (f *fakeSES) SendEmail(ctx context.Context, in *sesv2.SendEmailInput, _ ...func(*sesv2.Options)) (*sesv2.SendEmailOutput, error) {
	f.in = in
	if f.err != nil {
		return nil, f.err
	}
	return &sesv2.SendEmailOutput{MessageId: aws.String("ses-1")}, nil
}

func (f *fakeSES) GetAccount(ctx context.Context, in *sesv2.GetAccountInput, _ ...func(*sesv2.Options)) (*sesv2.GetAccountOutput, error) {
	if f.err != nil {
		return nil, f.err
	}
	return f.account, nil
}

func TestSESSend(t *testing.T) {
	fake := &fakeSES{}
	e := &herald.Envelope{
		ID: "id-1", From: "Sender <sender@example.com>", ReplyTo: "r@example.com",
		To: []string{"a@example.com"}, Cc: []string{"c@example.com"}, Bcc: []string{"b@example.com"},
		Subject: "Subject", Text: "text", HTML: "<p>html</p>",
		Metadata: map[string]string{"campaign": "spring-2026", "user id": "42", "ok_key": "bad value!", "tenant": "acme"},
	}
	id, err := NewSES(fake, "herald-events").Send(context.Background(), e)
	if err != nil || id != "ses-1" {
		t.Fatalf("Send = %q, %v", id, err)
	}
	in := fake.in
	if aws.ToString(in.FromEmailAddress) != e.From || aws.ToString(in.ConfigurationSetName) != "herald-events" {
		t.Errorf("from %q, configuration set %q", aws.ToString(in.FromEmailAddress), aws.ToString(in.ConfigurationSetName))
	}
	d := in.Destination
	if len(d.ToAddresses) != 1 || d.ToAddresses[0] != "a@example.com" || d.CcAddresses[0] != "c@example.com" || d.BccAddresses[0] != "b@example.com" {
		t.Errorf("destination %+v", d)
	}
	if len(in.ReplyToAddresses) != 1 || in.ReplyToAddresses[0] != "r@example.com" {
		t.Errorf("reply-to %v", in.ReplyToAddresses)
	}
	s := in.Content.Simple
	if aws.ToString(s.Subject.Data) != "Subject" || aws.ToString(s.Body.Text.Data) != "text" || aws.ToString(s.Body.Html.Data) != "<p>html</p>" {
		t.Errorf("content %+v", s)
	}
	if aws.ToString(s.Subject.Charset) != "UTF-8" {
		t.Errorf("subject charset %q", aws.ToString(s.Subject.Charset))
	}
	// Only the entries within SES's tag charset, in key order, then the
	// notification id.
	want := []string{"campaign=spring-2026", "tenant=acme", contract.SESNotificationTag + "=id-1"}
	if len(in.EmailTags) != len(want) {
		t.Fatalf("tags %v, want %v", tagStrings(in.EmailTags), want)
	}
	for i, tag := range tagStrings(in.EmailTags) {
		if tag != want[i] {
			t.Errorf("tag %d = %s, want %s", i, tag, want[i])
		}
	}
}

func TestSESAddressEncodesNonASCIINames(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.com":            "alice@example.com",
		"Bob <bob@example.org>":        "Bob <bob@example.org>",
		"Zoë Sender <zoe@example.com>": "=?utf-8?q?Zo=C3=AB_Sender?= <zoe@example.com>",
	} {
		if got := sesAddress(in); got != want {
			t.Errorf("sesAddress(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSESSendTextOnlyNoExtras(t *testing.T) {
	fake := &fakeSES{}
	e := &herald.Envelope{ID: "id", From: "s@example.com", To: []string{"a@example.com"}, Subject: "S", Text: "t"}
	if _, err := NewSES(fake, "").Send(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if fake.in.Content.Simple.Body.Html != nil || fake.in.ReplyToAddresses != nil || fake.in.ConfigurationSetName != nil {
		t.Errorf("unset fields were sent: %+v", fake.in)
	}
	// The one tag: the notification id, for SES's events.
	if got := tagStrings(fake.in.EmailTags); len(got) != 1 || got[0] != contract.SESNotificationTag+"=id" {
		t.Errorf("tags %v, want only %s=id", got, contract.SESNotificationTag)
	}
}

func TestSESSendPassesErrorsThrough(t *testing.T) {
	rejected := &types.MessageRejected{Message: aws.String("no")}
	_, err := NewSES(&fakeSES{err: rejected}, "").Send(context.Background(), &herald.Envelope{From: "s@example.com"})
	if !errors.As(err, &rejected) || Classify(err).Class != Permanent {
		t.Errorf("err %v not passed through as MessageRejected", err)
	}
}

func tagStrings(tags []types.MessageTag) []string {
	var out []string
	for _, t := range tags {
		out = append(out, aws.ToString(t.Name)+"="+aws.ToString(t.Value))
	}
	return out
}

func TestAccountSendRate(t *testing.T) {
	r, err := AccountSendRate(context.Background(), &fakeSES{account: &sesv2.GetAccountOutput{SendQuota: &types.SendQuota{MaxSendRate: 14}}})
	if err != nil || r != 14 {
		t.Errorf("rate %v, %v; want 14", r, err)
	}
	if _, err := AccountSendRate(context.Background(), &fakeSES{account: &sesv2.GetAccountOutput{}}); err == nil {
		t.Error("no quota in the answer gave no error")
	}
	if _, err := AccountSendRate(context.Background(), &fakeSES{err: errors.New("denied")}); err == nil {
		t.Error("GetAccount failure gave no error")
	}
}
