package feedback

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"herald/services/contract"
)

// Event records in the shapes of the SES developer guide's "Examples of
// event data that Amazon SES publishes to Amazon SNS" (one per event type),
// with Herald's tag among mail.tags, wrapped in the SNS envelope of "HTTP/HTTPS
// notification JSON format" (what an SQS subscriber without raw message
// delivery receives). Values are this test's own.

const (
	testTopic = "arn:aws:sns:us-east-1:111122223333:herald-feedback"
	testMsgID = "0100018c1a2b3c4d-5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9-000000"
	testID    = "018f6a4c-2b1e-7c3d-9e4f-5a6b7c8d9e0f"
)

// mailJSON is the mail object of an event of testMsgID to to, tagged with id
// (no tag when id is "").
func mailJSON(id string, to ...string) string {
	tags := `"ses:configuration-set":["herald"],"ses:source-ip":["192.0.2.10"],"ses:from-domain":["example.com"],"ses:caller-identity":["herald-sender"],"team":["billing"]`
	if id != "" {
		tags += `,"` + contract.SESNotificationTag + `":["` + id + `"]`
	}
	dest, _ := json.Marshal(to)
	return fmt.Sprintf(`{"timestamp":"2026-03-01T12:00:00.120Z","source":"Herald <noreply@example.com>",`+
		`"sourceArn":"arn:aws:ses:us-east-1:111122223333:identity/example.com","sendingAccountId":"111122223333",`+
		`"messageId":%q,"destination":%s,"headersTruncated":false,`+
		`"headers":[{"name":"From","value":"Herald <noreply@example.com>"},{"name":"To","value":%q},{"name":"Subject","value":"Your receipt"}],`+
		`"commonHeaders":{"from":["Herald <noreply@example.com>"],"to":%s,"messageId":%q,"subject":"Your receipt"},"tags":{%s}}`,
		testMsgID, dest, strings.Join(to, ", "), dest, testMsgID, tags)
}

// Event objects of each type, for recipients to.
func sendEvent(id string, to ...string) string {
	return `{"eventType":"Send","mail":` + mailJSON(id, to...) + `,"send":{}}`
}

func deliveryEvent(id, at string, to ...string) string {
	rs, _ := json.Marshal(to)
	return `{"eventType":"Delivery","mail":` + mailJSON(id, to...) + `,"delivery":{"timestamp":"` + at +
		`","processingTimeMillis":812,"recipients":` + string(rs) + `,"smtpResponse":"250 2.6.0 Message received","reportingMTA":"a8-1.smtp-out.amazonses.com"}}`
}

func bounceEvent(id, at, typ, sub, diagnostic string, to ...string) string {
	var rs []string
	for _, a := range to {
		rs = append(rs, fmt.Sprintf(`{"emailAddress":%q,"action":"failed","status":"5.1.1","diagnosticCode":%q}`, a, diagnostic))
	}
	return `{"eventType":"Bounce","bounce":{"bounceType":"` + typ + `","bounceSubType":"` + sub + `","bouncedRecipients":[` + strings.Join(rs, ",") +
		`],"timestamp":"` + at + `","feedbackId":"0100018c-feedback-000000","reportingMTA":"dns; amazonses.com"},"mail":` + mailJSON(id, to...) + `}`
}

func complaintEvent(id, at, subType string, to ...string) string {
	var rs []string
	for _, a := range to {
		rs = append(rs, fmt.Sprintf(`{"emailAddress":%q}`, a))
	}
	sub := "null"
	feedbackType := `,"userAgent":"Amazon SES Mailbox Simulator","complaintFeedbackType":"abuse","arrivalDate":"` + at + `"`
	if subType != "" {
		sub, feedbackType = `"`+subType+`"`, ""
	}
	return `{"eventType":"Complaint","complaint":{"complainedRecipients":[` + strings.Join(rs, ",") + `],"timestamp":"` + at +
		`","feedbackId":"0100018c-complaint-000000","complaintSubType":` + sub + feedbackType + `},"mail":` + mailJSON(id, to...) + `}`
}

func delayEvent(id, at string, to ...string) string {
	var rs []string
	for _, a := range to {
		rs = append(rs, fmt.Sprintf(`{"emailAddress":%q,"status":"4.4.1","diagnosticCode":"smtp; 421 4.4.1 Unable to connect to remote host"}`, a))
	}
	return `{"eventType":"DeliveryDelay","mail":` + mailJSON(id, to...) + `,"deliveryDelay":{"timestamp":"` + at +
		`","delayType":"TransientCommunicationFailure","expirationTime":"2026-03-01T13:00:00.000Z","delayedRecipients":[` + strings.Join(rs, ",") + `]}}`
}

func rejectEvent(id string, to ...string) string {
	return `{"eventType":"Reject","mail":` + mailJSON(id, to...) + `,"reject":{"reason":"Bad content"}}`
}

func renderingFailureEvent(id string, to ...string) string {
	return `{"eventType":"Rendering Failure","mail":` + mailJSON(id, to...) +
		`,"failure":{"errorMessage":"Attribute 'name' is not present in the rendering data.","templateName":"Welcome"}}`
}

// sns wraps an SES event record in the envelope SNS delivers to SQS.
func sns(t testing.TB, record string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"Type":             "Notification",
		"MessageId":        "5c3b9a7e-1d2f-5a4b-8c6d-7e8f9a0b1c2d",
		"TopicArn":         testTopic,
		"Subject":          "Amazon SES Email Event Notification",
		"Message":          record,
		"Timestamp":        "2026-03-01T12:00:02.031Z",
		"SignatureVersion": "1",
		"Signature":        "dGVzdA==",
		"SigningCertURL":   "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem",
		"UnsubscribeURL":   "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=" + testTopic + ":1",
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
