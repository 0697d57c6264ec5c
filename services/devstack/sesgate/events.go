package sesgate

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"sync"
	"time"
)

// The records the gate publishes, in the shapes AWS documents:
//
//   - the SES event record: "Contents of event data that Amazon SES
//     publishes to Amazon SNS" and its examples page, one per event type
//     (https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-contents.html,
//     .../event-publishing-retrieving-sns-examples.html), with the field
//     order of those examples;
//   - the values SES gives the mailbox simulator's events, as SES's own
//     records show them (bounce@: Permanent/General, status 5.1.1,
//     "smtp; 550 5.1.1 user unknown"; complaint@: feedback type abuse, user
//     agent "Amazon SES Mailbox Simulator", complaintSubType null;
//     suppressionlist@: Permanent/Suppressed, the global suppression list's
//     diagnostic), and of an address on the account's suppression list
//     (Permanent/OnAccountSuppressionList and its diagnostic; a complaint
//     with complaintSubType OnAccountSuppressionList for an address
//     suppressed after a complaint: "Complaint subtypes" on the contents page);
//   - the SNS envelope around it: "HTTP/HTTPS notification JSON format"
//     (https://docs.aws.amazon.com/sns/latest/dg/http-notification-json.html),
//     which an SQS subscriber without raw message delivery receives as the
//     message body, signed as "Verifying the signatures of Amazon SNS
//     messages" says (SignatureVersion 1: SHA1withRSA over Message,
//     MessageId, Subject, Timestamp, TopicArn and Type, each as
//     "name\nvalue\n"), with the gate's own key and certificate, served at
//     /_gate/sns-certificate.pem.

// Event types as SES names them in records (eventType) and in the API
// (MatchingEventTypes).
const (
	typeSend             = "Send"
	typeDelivery         = "Delivery"
	typeBounce           = "Bounce"
	typeComplaint        = "Complaint"
	typeReject           = "Reject"
	typeRenderingFailure = "Rendering Failure"
	typeDeliveryDelay    = "DeliveryDelay"
)

// apiEventType maps a record's eventType to its MatchingEventTypes name.
var apiEventType = map[string]string{
	typeSend: "SEND", typeDelivery: "DELIVERY", typeBounce: "BOUNCE", typeComplaint: "COMPLAINT",
	typeReject: "REJECT", typeRenderingFailure: "RENDERING_FAILURE", typeDeliveryDelay: "DELIVERY_DELAY",
}

type sesRecord struct {
	EventType     string            `json:"eventType"`
	Bounce        *sesBounce        `json:"bounce,omitempty"`
	Complaint     *sesComplaint     `json:"complaint,omitempty"`
	Mail          sesMail           `json:"mail"`
	Delivery      *sesDelivery      `json:"delivery,omitempty"`
	Send          *struct{}         `json:"send,omitempty"`
	Reject        *sesReject        `json:"reject,omitempty"`
	Failure       *sesFailure       `json:"failure,omitempty"`
	DeliveryDelay *sesDeliveryDelay `json:"deliveryDelay,omitempty"`
}

type sesMail struct {
	Timestamp        string              `json:"timestamp"`
	Source           string              `json:"source"`
	SourceArn        string              `json:"sourceArn"`
	SendingAccountID string              `json:"sendingAccountId"`
	MessageID        string              `json:"messageId"`
	Destination      []string            `json:"destination"`
	HeadersTruncated bool                `json:"headersTruncated"`
	Headers          []sesHeader         `json:"headers,omitempty"`
	CommonHeaders    *sesCommonHeaders   `json:"commonHeaders,omitempty"`
	Tags             map[string][]string `json:"tags"`
}

type sesHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type sesCommonHeaders struct {
	From      []string `json:"from"`
	ReplyTo   []string `json:"replyTo,omitempty"`
	To        []string `json:"to,omitempty"`
	Cc        []string `json:"cc,omitempty"`
	MessageID string   `json:"messageId"`
	Subject   string   `json:"subject,omitempty"`
}

type sesBounce struct {
	BounceType        string                `json:"bounceType"`
	BounceSubType     string                `json:"bounceSubType"`
	BouncedRecipients []sesBouncedRecipient `json:"bouncedRecipients"`
	Timestamp         string                `json:"timestamp"`
	FeedbackID        string                `json:"feedbackId"`
	ReportingMTA      string                `json:"reportingMTA,omitempty"`
}

type sesBouncedRecipient struct {
	EmailAddress   string `json:"emailAddress"`
	Action         string `json:"action,omitempty"`
	Status         string `json:"status,omitempty"`
	DiagnosticCode string `json:"diagnosticCode,omitempty"`
}

type sesComplaint struct {
	ComplainedRecipients []sesAddress `json:"complainedRecipients"`
	Timestamp            string       `json:"timestamp"`
	FeedbackID           string       `json:"feedbackId"`
	// ComplaintSubType is null or OnAccountSuppressionList: written either way.
	ComplaintSubType      *string `json:"complaintSubType"`
	UserAgent             string  `json:"userAgent,omitempty"`
	ComplaintFeedbackType string  `json:"complaintFeedbackType,omitempty"`
	ArrivalDate           string  `json:"arrivalDate,omitempty"`
}

type sesAddress struct {
	EmailAddress string `json:"emailAddress"`
}

type sesDelivery struct {
	Timestamp            string   `json:"timestamp"`
	ProcessingTimeMillis int64    `json:"processingTimeMillis"`
	Recipients           []string `json:"recipients"`
	SMTPResponse         string   `json:"smtpResponse"`
	ReportingMTA         string   `json:"reportingMTA"`
}

type sesReject struct {
	Reason string `json:"reason"`
}

type sesFailure struct {
	ErrorMessage string `json:"errorMessage"`
	TemplateName string `json:"templateName"`
}

type sesDeliveryDelay struct {
	Timestamp         string                `json:"timestamp"`
	DelayType         string                `json:"delayType"`
	ExpirationTime    string                `json:"expirationTime"`
	DelayedRecipients []sesBouncedRecipient `json:"delayedRecipients"`
}

// snsNotification is the envelope, in the field order of SNS's example.
type snsNotification struct {
	Type             string
	MessageId        string
	TopicArn         string
	Subject          string
	Message          string
	Timestamp        string
	SignatureVersion string
	Signature        string
	SigningCertURL   string
	UnsubscribeURL   string
}

// snsSubject is the Subject SNS notifications of SES events carry.
const snsSubject = "Amazon SES Email Event Notification"

// isoMillis formats a time as SES and SNS do: 2017-08-05T00:41:02.669Z.
func isoMillis(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// newUUID is a random (version 4) UUID, as SNS message ids are.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// sesID is an id in SES's form (message and feedback ids): 16 hex digits
// from the time, a UUID, -000000.
func sesID(at time.Time) string {
	return fmt.Sprintf("%016x-%s-000000", 0x0100000000000000|uint64(at.UnixMilli()), newUUID())
}

// signer signs SNS envelopes with a key and self-signed certificate made on
// first use (RSA 2048, as SNS's certificates are).
type signer struct {
	once sync.Once
	key  *rsa.PrivateKey
	cert []byte // PEM
	err  error
}

func (s *signer) init() {
	s.once.Do(func() {
		s.key, s.err = rsa.GenerateKey(rand.Reader, 2048)
		if s.err != nil {
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "sns.local.sesgate"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(10 * 365 * 24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &s.key.PublicKey, s.key)
		if err != nil {
			s.err = err
			return
		}
		s.cert = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	})
}

// certificate is the signing certificate, PEM.
func (s *signer) certificate() ([]byte, error) {
	s.init()
	return s.cert, s.err
}

// sign sets n.Signature: SignatureVersion 1.
func (s *signer) sign(n *snsNotification) error {
	s.init()
	if s.err != nil {
		return s.err
	}
	n.SignatureVersion = "1"
	sum := sha1.Sum([]byte(stringToSign(n)))
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA1, sum[:])
	if err != nil {
		return err
	}
	n.Signature = base64.StdEncoding.EncodeToString(sig)
	return nil
}

// stringToSign is SNS's canonical form of a notification.
func stringToSign(n *snsNotification) string {
	s := "Message\n" + n.Message + "\nMessageId\n" + n.MessageId + "\n"
	if n.Subject != "" {
		s += "Subject\n" + n.Subject + "\n"
	}
	return s + "Timestamp\n" + n.Timestamp + "\nTopicArn\n" + n.TopicArn + "\nType\n" + n.Type + "\n"
}

// envelope wraps a record as SNS delivers it to an SQS subscriber.
func (s *signer) envelope(topicARN, region, certURL string, record *sesRecord, at time.Time) ([]byte, error) {
	msg, err := json.Marshal(record)
	if err != nil {
		return nil, err
	}
	n := &snsNotification{
		Type:           "Notification",
		MessageId:      newUUID(),
		TopicArn:       topicARN,
		Subject:        snsSubject,
		Message:        string(msg),
		Timestamp:      isoMillis(at),
		SigningCertURL: certURL,
		UnsubscribeURL: "https://sns." + region + ".amazonaws.com/?Action=Unsubscribe&SubscriptionArn=" + topicARN + ":" + newUUID(),
	}
	if err := s.sign(n); err != nil {
		return nil, fmt.Errorf("sesgate: sign the SNS notification: %w", err)
	}
	return json.Marshal(n)
}
