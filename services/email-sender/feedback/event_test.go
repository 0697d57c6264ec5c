package feedback

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"herald/services/internal/store"
)

func ms(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func TestParseEachEventType(t *testing.T) {
	const at = "2026-03-01T12:00:03.456Z"
	sentAt := ms("2026-03-01T12:00:00.120Z")
	alice, bob := "alice@example.com", "Bob Smith <Bob@Example.org>"
	cases := []struct {
		name   string
		record string
		want   []store.Recipient
	}{
		{"send", sendEvent(testID, alice), nil},
		{"delivery", deliveryEvent(testID, at, alice, bob), []store.Recipient{
			{Address: "alice@example.com", Outcome: store.OutcomeDelivered, At: ms(at), Diagnostic: "250 2.6.0 Message received"},
			{Address: "bob@example.org", Outcome: store.OutcomeDelivered, At: ms(at), Diagnostic: "250 2.6.0 Message received"},
		}},
		{"bounce", bounceEvent(testID, at, "Permanent", "General", "smtp; 550 5.1.1 user unknown", alice), []store.Recipient{
			{Address: "alice@example.com", Outcome: store.OutcomeBounced, At: ms(at), Type: "Permanent", SubType: "General", Status: "5.1.1", Diagnostic: "smtp; 550 5.1.1 user unknown"},
		}},
		{"bounce of an address on the account's suppression list", bounceEvent(testID, at, "Permanent", "OnAccountSuppressionList", "Amazon SES did not send the message", bob), []store.Recipient{
			{Address: "bob@example.org", Outcome: store.OutcomeBounced, At: ms(at), Type: "Permanent", SubType: "OnAccountSuppressionList", Status: "5.1.1", Diagnostic: "Amazon SES did not send the message"},
		}},
		{"complaint", complaintEvent(testID, at, "", alice), []store.Recipient{
			{Address: "alice@example.com", Outcome: store.OutcomeComplained, At: ms(at), Type: "abuse"},
		}},
		{"complaint of an address suppressed after a complaint", complaintEvent(testID, at, "OnAccountSuppressionList", alice), []store.Recipient{
			{Address: "alice@example.com", Outcome: store.OutcomeComplained, At: ms(at), SubType: "OnAccountSuppressionList"},
		}},
		{"delivery delay", delayEvent(testID, at, alice), []store.Recipient{
			{Address: "alice@example.com", Outcome: store.OutcomeDelayed, At: ms(at), Type: "TransientCommunicationFailure", Status: "4.4.1", Diagnostic: "smtp; 421 4.4.1 Unable to connect to remote host"},
		}},
		{"reject: every recipient, at the send", rejectEvent(testID, alice, bob), []store.Recipient{
			{Address: "alice@example.com", Outcome: store.OutcomeRejected, At: sentAt, Type: "Reject", Diagnostic: "Bad content"},
			{Address: "bob@example.org", Outcome: store.OutcomeRejected, At: sentAt, Type: "Reject", Diagnostic: "Bad content"},
		}},
		{"rendering failure", renderingFailureEvent(testID, alice), []store.Recipient{
			{Address: "alice@example.com", Outcome: store.OutcomeRejected, At: sentAt, Type: "RenderingFailure", Diagnostic: "Welcome: Attribute 'name' is not present in the rendering data."},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := Parse(sns(t, tc.record), testTopic)
			if err != nil {
				t.Fatal(err)
			}
			if ev.NotificationID != testID || ev.Feedback.ProviderMessageID != testMsgID || !ev.Feedback.SentAt.Equal(sentAt) || ev.TopicARN != testTopic {
				t.Errorf("event %+v: want notification %s, SES message %s sent at %s", ev, testID, testMsgID, sentAt)
			}
			if fmt.Sprint(ev.Feedback.Recipients) != fmt.Sprint(tc.want) {
				t.Errorf("recipients\n got %+v\nwant %+v", ev.Feedback.Recipients, tc.want)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	replace := func(s, old, new string) string {
		if !strings.Contains(s, old) {
			panic("fixture lacks " + old)
		}
		return strings.Replace(s, old, new, 1)
	}
	delivery := deliveryEvent(testID, "2026-03-01T12:00:03.456Z", "a@example.com")
	envelope := string(sns(t, delivery))
	cases := []struct {
		name, body, kind string
	}{
		{"not JSON", "hello", KindNotSNS},
		{"a JSON array", "[1]", KindNotSNS},
		{"trailing data", envelope + "{}", KindNotSNS},
		{"raw message delivery on", delivery, KindNotSNS},
		{"a subscription confirmation", replace(envelope, `"Type":"Notification"`, `"Type":"SubscriptionConfirmation"`), KindNotSNS},
		{"no message id", replace(envelope, `"MessageId":"5c3b9a7e-1d2f-5a4b-8c6d-7e8f9a0b1c2d"`, `"MessageId":""`), KindMissingField},
		{"another topic", replace(envelope, testTopic+`"`, `arn:aws:sns:us-east-1:111122223333:other"`), KindForeignTopic},
		{"a bad SNS timestamp", replace(envelope, `"Timestamp":"2026-03-01T12:00:02.031Z"`, `"Timestamp":"yesterday"`), KindBadValue},
		{"message not SES", string(sns(t, `"just text"`)), KindNotSES},
		{"an identity notification", string(sns(t, `{"notificationType":"Bounce","mail":{}}`)), KindNotSES},
		{"an open event", string(sns(t, replace(sendEvent(testID, "a@example.com"), `"Send"`, `"Open"`))), KindUnknownType},
		{"a subscription event", string(sns(t, replace(sendEvent(testID, "a@example.com"), `"Send"`, `"Subscription"`))), KindUnknownType},
		{"untagged", string(sns(t, sendEvent("", "a@example.com"))), KindUntagged},
		{"a tag that is no id", string(sns(t, sendEvent("not-an-id", "a@example.com"))), KindBadValue},
		{"no SES message id", string(sns(t, replace(delivery, `"messageId":"`+testMsgID+`","destination"`, `"destination"`))), KindMissingField},
		{"no mail timestamp", string(sns(t, replace(delivery, `"timestamp":"2026-03-01T12:00:00.120Z",`, ``))), KindMissingField},
		{"a delivery without recipients", string(sns(t, replace(delivery, `"recipients":["a@example.com"]`, `"recipients":[]`))), KindMissingField},
		{"a delivery with a bad time", string(sns(t, replace(delivery, `"timestamp":"2026-03-01T12:00:03.456Z"`, `"timestamp":"2026-03-01 12:00"`))), KindBadValue},
		{"a bounce without a type", string(sns(t, bounceEvent(testID, "2026-03-01T12:00:03.456Z", "", "General", "x", "a@example.com"))), KindMissingField},
		{"a bounce without a bounce", string(sns(t, replace(sendEvent(testID, "a@example.com"), `"Send"`, `"Bounce"`))), KindMissingField},
		{"a recipient that is no address", string(sns(t, bounceEvent(testID, "2026-03-01T12:00:03.456Z", "Permanent", "General", "x", "nobody"))), KindBadValue},
		{"a reject without its object", string(sns(t, replace(rejectEvent(testID, "a@example.com"), `,"reject":{"reason":"Bad content"}`, ``))), KindMissingField},
		{"too large", `{"Type":"Notification","Message":"` + strings.Repeat("x", 300<<10) + `"}`, KindOversizedRecord},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.body), testTopic)
			var m *Malformed
			if !errors.As(err, &m) || m.Kind != tc.kind {
				t.Fatalf("Parse: %v, want a %s *Malformed", err, tc.kind)
			}
			if strings.Contains(m.Reason, "a@example.com") {
				t.Errorf("the reason %q names a recipient", m.Reason)
			}
		})
	}
	// Any topic when none is configured.
	if _, err := Parse([]byte(replace(envelope, testTopic+`"`, `arn:aws:sns:us-east-1:111122223333:other"`)), ""); err != nil {
		t.Fatalf("another topic with none configured: %v", err)
	}
}
