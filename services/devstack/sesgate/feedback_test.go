package sesgate

import (
	"context"
	"crypto"
	"crypto/md5"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"

	"herald/services/contract"
	"herald/services/email-sender/feedback/sestag"
)

// fakeSQS takes SendMessage calls (the JSON protocol) and keeps the bodies.
type fakeSQS struct {
	mu     sync.Mutex
	bodies []string
	queues []string
}

func (f *fakeSQS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var in struct{ QueueUrl, MessageBody string }
	b, _ := io.ReadAll(r.Body)
	if r.Header.Get("X-Amz-Target") != "AmazonSQS.SendMessage" || json.Unmarshal(b, &in) != nil {
		http.Error(w, "unexpected call", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.bodies = append(f.bodies, in.MessageBody)
	f.queues = append(f.queues, in.QueueUrl)
	n := len(f.bodies)
	f.mu.Unlock()
	sum := md5.Sum([]byte(in.MessageBody))
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	fmt.Fprintf(w, `{"MessageId":"sqs-%d","MD5OfMessageBody":%q}`, n, hex.EncodeToString(sum[:]))
}

func (f *fakeSQS) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.bodies)
}

// wait returns the first n bodies once they are there (10 s at most).
func (f *fakeSQS) wait(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for f.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d events published in 10 s, want %d", f.count(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.bodies[:n]...)
}

const (
	testTopic = "arn:aws:sns:us-east-1:000000000000:herald-feedback"
	testQueue = "http://sqs.local/000000000000/herald-feedback"
	testSet   = "herald"
	testID    = "018f6a4c-2b1e-7c3d-9e4f-5a6b7c8d9e0f"
)

// feedbackGate is a gate with the configuration set testSet publishing
// every event type to a fake SQS; change adjusts its config.
func feedbackGate(t *testing.T, change func(*Config)) (*Gate, *fakeSES, *fakeSQS, string) {
	t.Helper()
	q := &fakeSQS{}
	qs := httptest.NewServer(q)
	t.Cleanup(qs.Close)
	cfg := Config{
		MaxSendRate:       1000,
		Verified:          []string{"example.com"},
		SuppressedReasons: []string{ReasonBounce, ReasonComplaint},
		ConfigurationSets: []ConfigurationSet{{Name: testSet, Events: &EventDestination{
			EventTypes: contract.SESEventTypes(), TopicARN: testTopic, SQSEndpoint: qs.URL, QueueURL: testQueue,
		}}},
		Mailboxes: map[string]Mailbox{"gone@example.org": MailboxBounce, "angry@example.org": MailboxComplaint, "slow.example.net": MailboxDelay},
	}
	if change != nil {
		change(&cfg)
	}
	g, up, url := newGate(t, cfg)
	t.Cleanup(g.Close)
	return g, up, q, url
}

// sendTo sends as Herald's sender does: simple content, the configuration
// set, the notification tag among the metadata's tags.
func sendTo(t *testing.T, c *sesv2.Client, set string, to ...string) string {
	t.Helper()
	in := &sesv2.SendEmailInput{
		FromEmailAddress: aws.String("Herald <noreply@example.com>"),
		Destination:      &types.Destination{ToAddresses: to},
		Content: &types.EmailContent{Simple: &types.Message{
			Subject: &types.Content{Data: aws.String("Your receipt")},
			Body:    &types.Body{Text: &types.Content{Data: aws.String("Thanks.")}},
		}},
		EmailTags: sestag.WithNotificationTag([]types.MessageTag{{Name: aws.String("team"), Value: aws.String("billing")}}, testID),
	}
	if set != "" {
		in.ConfigurationSetName = aws.String(set)
	}
	out, err := c.SendEmail(context.Background(), in)
	if err != nil {
		t.Fatalf("send to %v: %v", to, err)
	}
	return aws.ToString(out.MessageId)
}

// The keys of each object, as the SES developer guide's examples of event
// records published to SNS show them, and of SNS's notification.
var documentedKeys = map[string]string{
	"envelope":         "Message MessageId Signature SignatureVersion SigningCertURL Subject Timestamp TopicArn Type UnsubscribeURL",
	"mail":             "commonHeaders destination headers headersTruncated messageId sendingAccountId source sourceArn tags timestamp",
	"commonHeaders":    "from messageId subject to",
	"send":             "",
	"delivery":         "processingTimeMillis recipients reportingMTA smtpResponse timestamp",
	"bounce":           "bounceSubType bounceType bouncedRecipients feedbackId reportingMTA timestamp",
	"bouncedRecipient": "action diagnosticCode emailAddress status",
	// complaint@'s, with the feedback report's fields.
	"complaint":         "arrivalDate complainedRecipients complaintFeedbackType complaintSubType feedbackId timestamp userAgent",
	"complaintNoReport": "complainedRecipients complaintSubType feedbackId timestamp",
	"deliveryDelay":     "delayType delayedRecipients expirationTime timestamp",
	"delayedRecipient":  "diagnosticCode emailAddress status",
	"reject":            "reason",
	"failure":           "errorMessage templateName",
	"failureMail":       "destination headersTruncated messageId sendingAccountId source sourceArn tags timestamp",
}

func keysOf(m map[string]any) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, " ")
}

func obj(t *testing.T, v any, what string) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s is %T, not an object", what, v)
	}
	return m
}

var (
	isoMs   = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)
	uuidRe  = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	sesIDRe = regexp.MustCompile(`^[0-9a-f]{16}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-000000$`)
)

// checkEnvelope checks an SNS notification field by field, its signature
// with the gate's certificate, and returns the SES record inside.
func checkEnvelope(t *testing.T, gateURL, body string) map[string]any {
	t.Helper()
	var env map[string]any
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatalf("envelope: %v", err)
	}
	if got := keysOf(env); got != documentedKeys["envelope"] {
		t.Errorf("envelope keys %q, want %q", got, documentedKeys["envelope"])
	}
	str := func(k string) string { s, _ := env[k].(string); return s }
	if str("Type") != "Notification" || !uuidRe.MatchString(str("MessageId")) || str("TopicArn") != testTopic ||
		str("Subject") != "Amazon SES Email Event Notification" || !isoMs.MatchString(str("Timestamp")) || str("SignatureVersion") != "1" ||
		str("SigningCertURL") != gateURL+"/_gate/sns-certificate.pem" ||
		!strings.HasPrefix(str("UnsubscribeURL"), "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn="+testTopic+":") {
		t.Errorf("envelope %v", env)
	}
	// SignatureVersion 1: SHA1withRSA over "name\nvalue\n" of Message,
	// MessageId, Subject, Timestamp, TopicArn, Type.
	var canonical strings.Builder
	for _, k := range []string{"Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"} {
		canonical.WriteString(k + "\n" + str(k) + "\n")
	}
	resp, err := http.Get(str("SigningCertURL"))
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatalf("no certificate at %s: %q", str("SigningCertURL"), certPEM)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.StdEncoding.DecodeString(str("Signature"))
	sum := sha1.Sum([]byte(canonical.String()))
	if err := rsa.VerifyPKCS1v15(cert.PublicKey.(*rsa.PublicKey), crypto.SHA1, sum[:], sig); err != nil {
		t.Errorf("signature: %v", err)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(str("Message")), &rec); err != nil {
		t.Fatalf("Message is not a JSON record: %v", err)
	}
	return rec
}

// checkMail checks the mail object of a send by Herald's sender.
func checkMail(t *testing.T, rec map[string]any, messageID string, to []string, keys string) {
	t.Helper()
	m := obj(t, rec["mail"], "mail")
	if got := keysOf(m); got != keys {
		t.Errorf("mail keys %q, want %q", got, keys)
	}
	if m["source"] != "Herald <noreply@example.com>" || m["sourceArn"] != "arn:aws:ses:us-east-1:000000000000:identity/example.com" ||
		m["sendingAccountId"] != "000000000000" || m["messageId"] != messageID || m["headersTruncated"] != false ||
		!isoMs.MatchString(fmt.Sprint(m["timestamp"])) || fmt.Sprint(m["destination"]) != fmt.Sprint(to) {
		t.Errorf("mail %v", m)
	}
	tags := obj(t, m["tags"], "mail.tags")
	want := map[string]string{"ses:configuration-set": testSet, "ses:from-domain": "example.com", "ses:caller-identity": "local",
		"ses:source-ip": "127.0.0.1", "team": "billing", contract.SESNotificationTag: testID}
	for k, v := range want {
		if fmt.Sprint(tags[k]) != "["+v+"]" {
			t.Errorf("tag %s = %v, want [%s]", k, tags[k], v)
		}
	}
	if h, ok := m["commonHeaders"]; ok {
		ch := obj(t, h, "commonHeaders")
		if got := keysOf(ch); got != documentedKeys["commonHeaders"] {
			t.Errorf("commonHeaders keys %q, want %q", got, documentedKeys["commonHeaders"])
		}
		if ch["messageId"] != messageID || ch["subject"] != "Your receipt" || fmt.Sprint(ch["from"]) != "[Herald <noreply@example.com>]" {
			t.Errorf("commonHeaders %v", ch)
		}
		headers := map[string]string{}
		for _, h := range m["headers"].([]any) {
			hm := obj(t, h, "header")
			if keysOf(hm) != "name value" {
				t.Errorf("header %v", hm)
			}
			headers[hm["name"].(string)] = hm["value"].(string)
		}
		if headers["From"] != "Herald <noreply@example.com>" || headers["To"] != strings.Join(to, ", ") || headers["Subject"] != "Your receipt" || headers["MIME-Version"] != "1.0" {
			t.Errorf("headers %v", headers)
		}
	}
}

// eventTypes lists the records' types in order.
func eventTypes(recs []map[string]any) string {
	var out []string
	for _, r := range recs {
		out = append(out, fmt.Sprint(r["eventType"]))
	}
	return strings.Join(out, ",")
}

func publishedRecords(t *testing.T, q *fakeSQS, url string, n int) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, b := range q.wait(t, n) {
		out = append(out, checkEnvelope(t, url, b))
	}
	return out
}

// Each address of the mailbox simulator gives the events SES gives.
func TestMailboxSimulator(t *testing.T) {
	type check func(t *testing.T, recs []map[string]any, g *Gate)
	bounceCheck := func(sub, diag, mta string) check {
		return func(t *testing.T, recs []map[string]any, g *Gate) {
			b := obj(t, recs[1]["bounce"], "bounce")
			if got := keysOf(b); got != documentedKeys["bounce"] {
				t.Errorf("bounce keys %q", got)
			}
			r := obj(t, b["bouncedRecipients"].([]any)[0], "bouncedRecipient")
			if got := keysOf(r); got != documentedKeys["bouncedRecipient"] {
				t.Errorf("bounced recipient keys %q", got)
			}
			if b["bounceType"] != "Permanent" || b["bounceSubType"] != sub || !isoMs.MatchString(fmt.Sprint(b["timestamp"])) ||
				!sesIDRe.MatchString(fmt.Sprint(b["feedbackId"])) || b["reportingMTA"] != mta ||
				r["action"] != "failed" || r["status"] != "5.1.1" || r["diagnosticCode"] != diag {
				t.Errorf("bounce %v", b)
			}
			if len(g.SuppressedList()) != 0 {
				t.Errorf("the simulator's address went on the suppression list: %v", g.SuppressedList())
			}
		}
	}
	deliveryCheck := func(t *testing.T, recs []map[string]any, _ *Gate) {
		d := obj(t, recs[1]["delivery"], "delivery")
		if got := keysOf(d); got != documentedKeys["delivery"] {
			t.Errorf("delivery keys %q", got)
		}
		if d["smtpResponse"] != "250 2.6.0 Message received" || d["processingTimeMillis"] != float64(500) || !isoMs.MatchString(fmt.Sprint(d["timestamp"])) ||
			d["reportingMTA"] == "" || len(d["recipients"].([]any)) != 1 {
			t.Errorf("delivery %v", d)
		}
	}
	cases := []struct {
		addr      string
		types     string
		forwarded bool
		check     check
	}{
		{"success@simulator.amazonses.com", "Send,Delivery", true, deliveryCheck},
		{"bounce@simulator.amazonses.com", "Send,Bounce", false, bounceCheck("General", "smtp; 550 5.1.1 user unknown", "dsn; a8-30.smtp-out.amazonses.com")},
		{"bounce+label1@simulator.amazonses.com", "Send,Bounce", false, bounceCheck("General", "smtp; 550 5.1.1 user unknown", "dsn; a8-30.smtp-out.amazonses.com")},
		{"suppressionlist@simulator.amazonses.com", "Send,Bounce", false, bounceCheck("Suppressed", diagGlobalList, "dns; amazonses.com")},
		{"ooto@simulator.amazonses.com", "Send,Delivery", true, func(t *testing.T, recs []map[string]any, g *Gate) {
			deliveryCheck(t, recs, g)
			if r := g.AutoReplies(); len(r) != 1 || r[0].From != "ooto@simulator.amazonses.com" || r[0].To != "noreply@example.com" {
				t.Errorf("automatic replies %+v, want one from ooto@ to the source", r)
			}
		}},
		{"complaint@simulator.amazonses.com", "Send,Delivery,Complaint", true, func(t *testing.T, recs []map[string]any, g *Gate) {
			deliveryCheck(t, recs, g)
			c := obj(t, recs[2]["complaint"], "complaint")
			if got := keysOf(c); got != documentedKeys["complaint"] {
				t.Errorf("complaint keys %q", got)
			}
			if c["complaintSubType"] != nil || c["complaintFeedbackType"] != "abuse" || c["userAgent"] != "Amazon SES Mailbox Simulator" ||
				fmt.Sprint(c["complainedRecipients"]) != "[map[emailAddress:complaint@simulator.amazonses.com]]" {
				t.Errorf("complaint %v", c)
			}
			if len(g.SuppressedList()) != 0 {
				t.Errorf("the simulator's address went on the suppression list")
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.addr, func(t *testing.T) {
			g, up, q, url := feedbackGate(t, nil)
			id := sendTo(t, client(url), testSet, tc.addr)
			n := len(strings.Split(tc.types, ","))
			recs := publishedRecords(t, q, url, n)
			if got := eventTypes(recs); got != tc.types {
				t.Fatalf("events %s, want %s", got, tc.types)
			}
			if s := obj(t, recs[0]["send"], "send"); len(s) != 0 {
				t.Errorf("send object %v, want {}", s)
			}
			for _, rec := range recs {
				checkMail(t, rec, id, []string{tc.addr}, documentedKeys["mail"])
			}
			tc.check(t, recs, g)
			if got := up.calls.Load() == 1; got != tc.forwarded {
				t.Errorf("reached the emulator: %v, want %v", got, tc.forwarded)
			}
			if s := g.Sends(); len(s) != 1 || s[0].MessageID != id || s[0].ConfigurationSet != testSet || s[0].Tags[contract.SESNotificationTag] != testID ||
				(len(s[0].NotSent) == 0) != tc.forwarded {
				t.Errorf("record %+v", s)
			}
			// Nothing more comes.
			g.Close()
			if q.count() != n {
				t.Errorf("%d events, want %d", q.count(), n)
			}
		})
	}
}

// An address that hard-bounced or complained goes on the account's list;
// a later send to it is accepted (SendEmail does not fail) and not sent:
// a bounce, or a complaint, with subtype OnAccountSuppressionList.
func TestAccountSuppressionList(t *testing.T) {
	g, up, q, url := feedbackGate(t, nil)
	c := client(url)
	ctx := context.Background()

	first := sendTo(t, c, testSet, "gone@example.org")
	recs := publishedRecords(t, q, url, 2)
	if b := obj(t, recs[1]["bounce"], "bounce"); eventTypes(recs) != "Send,Bounce" || b["bounceSubType"] != "General" {
		t.Fatalf("first send: %s %v", eventTypes(recs), recs[1]["bounce"])
	}
	got, err := c.GetSuppressedDestination(ctx, &sesv2.GetSuppressedDestinationInput{EmailAddress: aws.String("Gone@Example.org")})
	if err != nil || got.SuppressedDestination.Reason != types.SuppressionListReasonBounce || aws.ToString(got.SuppressedDestination.Attributes.MessageId) != first {
		t.Fatalf("GetSuppressedDestination: %+v, %v", got, err)
	}

	second := sendTo(t, c, testSet, "gone@example.org")
	recs = publishedRecords(t, q, url, 4)[2:]
	b := obj(t, recs[1]["bounce"], "bounce")
	r := obj(t, b["bouncedRecipients"].([]any)[0], "bouncedRecipient")
	if eventTypes(recs) != "Send,Bounce" || b["bounceType"] != "Permanent" || b["bounceSubType"] != "OnAccountSuppressionList" ||
		r["diagnosticCode"] != diagAccountList || r["status"] != "5.1.1" || r["action"] != "failed" || b["reportingMTA"] != "dns; amazonses.com" {
		t.Fatalf("second send: %s %v", eventTypes(recs), b)
	}
	checkMail(t, recs[1], second, []string{"gone@example.org"}, documentedKeys["mail"])

	// Complaints: the first is delivered and complained of, the second is
	// a complaint from the list, without a feedback report.
	sendTo(t, c, testSet, "angry@example.org")
	recs = publishedRecords(t, q, url, 7)[4:]
	if eventTypes(recs) != "Send,Delivery,Complaint" {
		t.Fatalf("first send to a complainer: %s", eventTypes(recs))
	}
	sendTo(t, c, testSet, "angry@example.org")
	recs = publishedRecords(t, q, url, 9)[7:]
	cm := obj(t, recs[1]["complaint"], "complaint")
	if eventTypes(recs) != "Send,Complaint" || keysOf(cm) != documentedKeys["complaintNoReport"] || cm["complaintSubType"] != "OnAccountSuppressionList" {
		t.Fatalf("second send to a complainer: %s %v", eventTypes(recs), cm)
	}

	// A send to a suppressed and an ordinary address reaches the emulator
	// for the ordinary one only.
	before := up.calls.Load()
	sendTo(t, c, testSet, "gone@example.org", "fine@example.com")
	if up.calls.Load() != before+1 || strings.Contains(up.last.Load().(string), "gone@") || !strings.Contains(up.last.Load().(string), "fine@example.com") {
		t.Fatalf("forwarded %q", up.last.Load())
	}
	recs = publishedRecords(t, q, url, 12)[9:]
	if eventTypes(recs) != "Send,Delivery,Bounce" {
		t.Fatalf("mixed send: %s", eventTypes(recs))
	}

	list, err := c.ListSuppressedDestinations(ctx, &sesv2.ListSuppressedDestinationsInput{Reasons: []types.SuppressionListReason{types.SuppressionListReasonComplaint}})
	if err != nil || len(list.SuppressedDestinationSummaries) != 1 || aws.ToString(list.SuppressedDestinationSummaries[0].EmailAddress) != "angry@example.org" {
		t.Fatalf("ListSuppressedDestinations(COMPLAINT): %+v, %v", list, err)
	}
	// Removed from the list, the address is tried (and bounces) again.
	if _, err := c.DeleteSuppressedDestination(ctx, &sesv2.DeleteSuppressedDestinationInput{EmailAddress: aws.String("gone@example.org")}); err != nil {
		t.Fatal(err)
	}
	var nf *types.NotFoundException
	if _, err := c.GetSuppressedDestination(ctx, &sesv2.GetSuppressedDestinationInput{EmailAddress: aws.String("gone@example.org")}); !errors.As(err, &nf) {
		t.Fatalf("GetSuppressedDestination after the delete: %v, want NotFoundException", err)
	}
	sendTo(t, c, testSet, "gone@example.org")
	recs = publishedRecords(t, q, url, 14)[12:]
	if b := obj(t, recs[1]["bounce"], "bounce"); b["bounceSubType"] != "General" {
		t.Fatalf("after the delete: %v", b)
	}
	// Suppression off for the account: the list is not consulted, nothing is added.
	if _, err := c.PutAccountSuppressionAttributes(ctx, &sesv2.PutAccountSuppressionAttributesInput{SuppressedReasons: []types.SuppressionListReason{}}); err != nil {
		t.Fatal(err)
	}
	acct, err := c.GetAccount(ctx, &sesv2.GetAccountInput{})
	if err != nil || len(acct.SuppressionAttributes.SuppressedReasons) != 0 {
		t.Fatalf("GetAccount after turning suppression off: %+v, %v", acct.SuppressionAttributes, err)
	}
	sendTo(t, c, testSet, "angry@example.org")
	recs = publishedRecords(t, q, url, 17)[14:]
	if eventTypes(recs) != "Send,Delivery,Complaint" {
		t.Fatalf("suppression off: %s", eventTypes(recs))
	}
	if _, err := c.PutSuppressedDestination(ctx, &sesv2.PutSuppressedDestinationInput{EmailAddress: aws.String("manual@example.org"), Reason: types.SuppressionListReasonBounce}); err != nil {
		t.Fatal(err)
	}
	if l := g.SuppressedList(); len(l) != 3 || l[2].EmailAddress != "manual@example.org" {
		t.Fatalf("list %+v", l)
	}
}

// A configuration set's own suppression options replace the account's.
func TestConfigurationSetSuppressionOptions(t *testing.T) {
	_, _, q, url := feedbackGate(t, func(c *Config) {
		c.ConfigurationSets[0].SuppressedReasons = []string{} // off for this set
	})
	c := client(url)
	sendTo(t, c, testSet, "gone@example.org")
	sendTo(t, c, testSet, "gone@example.org")
	recs := publishedRecords(t, q, url, 4)
	for _, i := range []int{1, 3} {
		if b := obj(t, recs[i]["bounce"], "bounce"); b["bounceSubType"] != "General" {
			t.Fatalf("send %d with suppression off in the set: %v", i/2+1, b)
		}
	}
}

func TestRejectRenderingFailureAndDelay(t *testing.T) {
	g, up, q, url := feedbackGate(t, nil)
	c := client(url)
	ctx := context.Background()

	// A virus (the EICAR test string) in an attachment: rejected, not sent.
	eicar := `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`
	out, err := c.SendEmail(ctx, &sesv2.SendEmailInput{
		FromEmailAddress: aws.String("Herald <noreply@example.com>"), ConfigurationSetName: aws.String(testSet),
		Destination: &types.Destination{ToAddresses: []string{"a@example.com"}},
		EmailTags:   sestag.WithNotificationTag([]types.MessageTag{{Name: aws.String("team"), Value: aws.String("billing")}}, testID),
		Content: &types.EmailContent{Simple: &types.Message{
			Subject: &types.Content{Data: aws.String("Your receipt")}, Body: &types.Body{Text: &types.Content{Data: aws.String("see attached")}},
			Attachments: []types.Attachment{{FileName: aws.String("sample.txt"), RawContent: []byte(eicar)}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	recs := publishedRecords(t, q, url, 2)
	rej := obj(t, recs[1]["reject"], "reject")
	if eventTypes(recs) != "Send,Reject" || keysOf(rej) != documentedKeys["reject"] || rej["reason"] != "Bad content" {
		t.Fatalf("virus: %s %v", eventTypes(recs), rej)
	}
	checkMail(t, recs[1], aws.ToString(out.MessageId), []string{"a@example.com"}, documentedKeys["mail"])
	if up.calls.Load() != 0 {
		t.Error("a rejected message reached the emulator")
	}

	// A template whose data lacks an attribute: a rendering failure.
	_, err = c.SendEmail(ctx, &sesv2.SendEmailInput{
		FromEmailAddress: aws.String("noreply@example.com"), ConfigurationSetName: aws.String(testSet),
		Destination: &types.Destination{ToAddresses: []string{"a@example.com"}}, EmailTags: sestag.WithNotificationTag(nil, testID),
		Content: &types.EmailContent{Template: &types.Template{
			TemplateContent: &types.EmailTemplateContent{Subject: aws.String("Hello {{name}}"), Text: aws.String("Dear {{ name }}, {{plan}}")},
			TemplateData:    aws.String(`{"plan":"pro"}`),
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	recs = publishedRecords(t, q, url, 4)[2:]
	f := obj(t, recs[1]["failure"], "failure")
	if eventTypes(recs) != "Send,Rendering Failure" || keysOf(f) != documentedKeys["failure"] ||
		f["errorMessage"] != "Attribute 'name' is not present in the rendering data." || keysOf(obj(t, recs[1]["mail"], "mail")) != documentedKeys["failureMail"] {
		t.Fatalf("rendering failure: %s %v", eventTypes(recs), recs[1])
	}

	// A slow server: a delay, then the delivery.
	sendTo(t, c, testSet, "someone@slow.example.net")
	recs = publishedRecords(t, q, url, 7)[4:]
	d := obj(t, recs[1]["deliveryDelay"], "deliveryDelay")
	r := obj(t, d["delayedRecipients"].([]any)[0], "delayedRecipient")
	if eventTypes(recs) != "Send,DeliveryDelay,Delivery" || keysOf(d) != documentedKeys["deliveryDelay"] || keysOf(r) != documentedKeys["delayedRecipient"] ||
		d["delayType"] != "TransientCommunicationFailure" || r["status"] != "4.4.1" || r["emailAddress"] != "someone@slow.example.net" {
		t.Fatalf("delay: %s %v", eventTypes(recs), d)
	}
	if len(g.Sends()) != 3 {
		t.Errorf("%d sends recorded, want 3", len(g.Sends()))
	}
}

// Only the destination's event types are published; a send names a set or
// uses the default; a set the account does not have is refused.
func TestConfigurationSetsAndEventTypes(t *testing.T) {
	t.Run("matching event types", func(t *testing.T) {
		g, _, q, url := feedbackGate(t, func(c *Config) { c.ConfigurationSets[0].Events.EventTypes = []string{"BOUNCE", "COMPLAINT"} })
		c := client(url)
		sendTo(t, c, testSet, "success@simulator.amazonses.com")
		sendTo(t, c, testSet, "bounce@simulator.amazonses.com")
		recs := publishedRecords(t, q, url, 1)
		g.Close()
		if q.count() != 1 || eventTypes(recs) != "Bounce" {
			t.Fatalf("%d events (%s), want the bounce only", q.count(), eventTypes(recs))
		}
	})
	t.Run("the default set", func(t *testing.T) {
		_, _, q, url := feedbackGate(t, func(c *Config) { c.DefaultConfigurationSet = testSet })
		sendTo(t, client(url), "", "success@simulator.amazonses.com")
		if recs := publishedRecords(t, q, url, 2); eventTypes(recs) != "Send,Delivery" {
			t.Fatalf("events %s", eventTypes(recs))
		}
	})
	t.Run("no set, no default: no events", func(t *testing.T) {
		g, _, q, url := feedbackGate(t, nil)
		sendTo(t, client(url), "", "success@simulator.amazonses.com")
		g.Close()
		if q.count() != 0 {
			t.Fatalf("%d events for a send without a configuration set", q.count())
		}
	})
	t.Run("an unknown set", func(t *testing.T) {
		_, up, _, url := feedbackGate(t, nil)
		_, err := client(url).SendEmail(context.Background(), &sesv2.SendEmailInput{
			FromEmailAddress: aws.String("noreply@example.com"), ConfigurationSetName: aws.String("other"),
			Destination: &types.Destination{ToAddresses: []string{"a@example.com"}},
			Content:     &types.EmailContent{Simple: &types.Message{Subject: &types.Content{Data: aws.String("s")}, Body: &types.Body{Text: &types.Content{Data: aws.String("b")}}}},
		})
		var nf *types.NotFoundException
		if !errors.As(err, &nf) || up.calls.Load() != 0 {
			t.Fatalf("send with an unknown set: %v, want NotFoundException", err)
		}
	})
	t.Run("no destination queue: no events", func(t *testing.T) {
		g, _, q, url := feedbackGate(t, func(c *Config) {
			c.ConfigurationSets[0].Events.SQSEndpoint, c.ConfigurationSets[0].Events.QueueURL = "", ""
		})
		sendTo(t, client(url), testSet, "success@simulator.amazonses.com")
		g.Close()
		if q.count() != 0 {
			t.Fatalf("%d events without a queue", q.count())
		}
	})
}

// The SQS endpoint down: the send succeeds, the events are counted as errors.
func TestEventDestinationDown(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	g, _, _, url := feedbackGate(t, func(c *Config) { c.ConfigurationSets[0].Events.SQSEndpoint = downURL })
	sendTo(t, client(url), testSet, "success@simulator.amazonses.com")
	deadline := time.Now().Add(30 * time.Second)
	for g.Stats().EventErrors < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v, want 2 event errors", g.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if g.Stats().EventsPublished != 0 || g.Stats().Accepted != 1 {
		t.Fatalf("stats %+v", g.Stats())
	}
}

func TestBadFeedbackConfig(t *testing.T) {
	dest := func() *EventDestination {
		return &EventDestination{EventTypes: []string{"SEND"}, TopicARN: testTopic, SQSEndpoint: "http://127.0.0.1:1", QueueURL: testQueue}
	}
	for name, cfg := range map[string]Config{
		"unknown event type":      {ConfigurationSets: []ConfigurationSet{{Name: "a", Events: &EventDestination{EventTypes: []string{"OPENED"}}}}},
		"a set twice":             {ConfigurationSets: []ConfigurationSet{{Name: "a"}, {Name: "a"}}},
		"a default set not there": {ConfigurationSets: []ConfigurationSet{{Name: "a"}}, DefaultConfigurationSet: "b"},
		"an unknown reason":       {SuppressedReasons: []string{"UNSUBSCRIBE"}},
		"a set's unknown reason":  {ConfigurationSets: []ConfigurationSet{{Name: "a", SuppressedReasons: []string{"X"}}}},
		"an unknown mailbox":      {Mailboxes: map[string]Mailbox{"a@b.c": "explode"}},
		"a queue without an endpoint": {ConfigurationSets: []ConfigurationSet{{Name: "a", Events: func() *EventDestination {
			d := dest()
			d.SQSEndpoint = ""
			return d
		}()}}},
		"not a topic ARN": {ConfigurationSets: []ConfigurationSet{{Name: "a", Events: func() *EventDestination {
			d := dest()
			d.TopicARN = "herald-feedback"
			return d
		}()}}},
	} {
		cfg.Upstream = "http://127.0.0.1:1"
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
