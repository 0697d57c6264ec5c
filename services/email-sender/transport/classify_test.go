package transport

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	smithy "github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"herald/services/internal/herald"
)

// sdkError wraps an API error the way the SDK hands it to callers: an
// operation error around an HTTP response error with the status code.
func sdkError(status int, apiErr error) error {
	return &smithy.OperationError{
		ServiceID:     "SESv2",
		OperationName: "SendEmail",
		Err: &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{
				Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
				Err:      apiErr,
			},
			RequestID: "req-1",
		},
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		name   string
		err    error
		class  Class
		reason string // a substring the reason must hold
	}{
		{"MessageRejected", sdkError(400, &types.MessageRejected{Message: aws.String("Email address is not verified. The following identities failed the check in region EU-WEST-1: bob@example.com")}), Permanent, "MessageRejected"},
		{"mail-from domain not verified", sdkError(400, &types.MailFromDomainNotVerifiedException{Message: aws.String("not verified")}), Permanent, "MailFromDomainNotVerifiedException"},
		{"bad request", sdkError(400, &types.BadRequestException{Message: aws.String("bad")}), Permanent, "BadRequestException"},
		{"too many requests", sdkError(429, &types.TooManyRequestsException{}), Throttled, "TooManyRequestsException"},
		{"Throttling code", sdkError(400, &smithy.GenericAPIError{Code: "Throttling", Message: "Maximum sending rate exceeded."}), Throttled, "Throttling"},
		{"throttling after SDK retries", &retry.MaxAttemptsError{Attempt: 3, Err: sdkError(429, &types.TooManyRequestsException{})}, Throttled, ""},
		{"throttling when the SDK's retry quota ran out", errors.Join(sdkError(429, &types.TooManyRequestsException{}), ratelimit.QuotaExceededError{Available: 0, Requested: 5}), Throttled, ""},
		{"sending paused", sdkError(400, &types.SendingPausedException{}), Account, "SendingPausedException"},
		{"account suspended", sdkError(400, &types.AccountSuspendedException{}), Account, "AccountSuspendedException"},
		{"daily quota", sdkError(400, &types.LimitExceededException{Message: aws.String("Daily message quota exceeded")}), Account, "LimitExceededException"},
		{"configuration set missing", sdkError(404, &types.NotFoundException{}), Account, "NotFoundException"},
		{"access denied", sdkError(403, &smithy.GenericAPIError{Code: "AccessDeniedException"}), Account, "AccessDenied"},
		{"internal error", sdkError(500, &types.InternalServiceErrorException{}), Transient, "InternalServiceErrorException"},
		{"unknown code, 503", sdkError(503, &smithy.GenericAPIError{Code: "Whatever"}), Transient, "Whatever"},
		{"unknown code, 400", sdkError(400, &smithy.GenericAPIError{Code: "Whatever"}), Permanent, "Whatever"},
		{"unknown code, 401", sdkError(401, &smithy.GenericAPIError{Code: "Whatever"}), Account, ""},
		{"unknown code, 429", sdkError(429, &smithy.GenericAPIError{Code: "Whatever"}), Throttled, ""},
		{"bare 502", sdkError(502, errors.New("bad gateway")), Transient, "502"},
		{"bare 413", sdkError(413, errors.New("too large")), Permanent, "413"},
		{"connection refused", &smithy.OperationError{Err: &smithyhttp.RequestSendError{Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}}, Transient, "network"},
		{"connection reset", &smithyhttp.RequestSendError{Err: syscall.ECONNRESET}, Transient, "network"},
		{"unexpected EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), Transient, "network"},
		{"deadline", fmt.Errorf("send: %w", context.DeadlineExceeded), Transient, "timeout"},
		{"net timeout", &net.OpError{Op: "read", Err: timeoutErr{}}, Transient, "timeout"},
		{"unreadable", fmt.Errorf("%w: no id", herald.ErrUnreadable), Unreadable, "no id"},
		{"unknown", errors.New("something odd"), Transient, "unclassified"},
		{"smtp rcpt 550", &SMTPError{"rcpt", &textproto.Error{Code: 550, Msg: "5.1.1 <bob@example.com>: Recipient address rejected"}}, Permanent, "smtp rcpt 550"},
		{"smtp data 552", &SMTPError{"data", &textproto.Error{Code: 552, Msg: "message too big"}}, Permanent, "552"},
		{"smtp mail 451", &SMTPError{"mail", &textproto.Error{Code: 451, Msg: "try later"}}, Transient, "451"},
		{"smtp greeting 421", &SMTPError{"connect", &textproto.Error{Code: 421, Msg: "busy"}}, Transient, "421"},
		{"smtp auth 535", &SMTPError{"auth", &textproto.Error{Code: 535, Msg: "authentication failed"}}, Account, "535"},
		{"smtp no starttls", &SMTPError{"starttls", ErrNoSTARTTLS}, Account, "STARTTLS"},
		{"smtp untrusted certificate", &SMTPError{"starttls", x509.UnknownAuthorityError{}}, Account, "certificate"},
		{"smtp dial refused", &SMTPError{"connect", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}}, Transient, "smtp connect: network"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := Classify(tc.err)
			if f.Class != tc.class {
				t.Fatalf("class %q, want %q (reason %q)", f.Class, tc.class, f.Reason)
			}
			if !strings.Contains(f.Reason, tc.reason) {
				t.Errorf("reason %q does not contain %q", f.Reason, tc.reason)
			}
			if strings.Contains(f.Reason, "@") {
				t.Errorf("reason %q holds an address", f.Reason)
			}
			if f.Class.Retry() != (tc.class != Permanent && tc.class != Unreadable) {
				t.Errorf("Retry() = %v for %q", f.Class.Retry(), f.Class)
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestSanitize(t *testing.T) {
	got := Sanitize("rejected: Alice <alice@example.com>, bob@example.org\r\nnext")
	if strings.Contains(got, "@") || strings.ContainsAny(got, "\r\n") {
		t.Errorf("Sanitize left an address or a line break: %q", got)
	}
	if !strings.Contains(got, "<address>") {
		t.Errorf("Sanitize = %q, want the addresses replaced", got)
	}
	long := Sanitize(strings.Repeat("é", 300))
	if len(long) > maxReasonLen+3 {
		t.Errorf("Sanitize kept %d bytes, want at most %d", len(long), maxReasonLen+3)
	}
	if !strings.HasSuffix(long, "...") || strings.ContainsRune(long, '\uFFFD') {
		t.Errorf("Sanitize cut badly: %q", long[len(long)-10:])
	}
}
