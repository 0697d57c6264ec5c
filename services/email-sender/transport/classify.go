// Package transport sends one envelope as an email, through SES v2 or SMTP,
// and says what a failure means for the queue message that carried it.
package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"regexp"
	"strings"
	"syscall"

	smithy "github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"herald/services/internal/herald"
)

// Class says what a failed send means for its queue message. It is also the
// Class dimension of the Failed metric and the herald.failure.class attribute
// of a dead-lettered message.
type Class string

const (
	// Transient: the provider or the network failed (5xx, timeouts, lost
	// connections, SMTP 4xx). The same message will likely go through later.
	Transient Class = "transient"
	// Throttled: the provider asked us to slow down (429, TooManyRequests,
	// Throttling).
	Throttled Class = "throttled"
	// Account: nothing is wrong with this message; the account or this
	// service's own setup cannot send at the moment (sending paused, account
	// suspended, daily quota used up, credentials refused, configuration set
	// missing, SMTP server refusing our session). Dead-lettering would move
	// every message of the queue to the DLQ within minutes and leave an
	// operator a mass redrive to do once the account is fixed; pausing and
	// probing lets mail flow again by itself as soon as the account
	// recovers, while the retry window still bounds how long a message can
	// keep failing.
	Account Class = "account"
	// Permanent: the provider will never accept this message as it is
	// (MessageRejected, unverified sender, bad request, SMTP 5xx on the
	// message's own commands). It goes to the dead-letter queue at once.
	Permanent Class = "permanent"
	// Unreadable: the queue message is not a valid envelope.
	Unreadable Class = "unreadable"
	// Expired: the message failed transiently until its retry window ran
	// out. It is never the class of a send error, only of a dead letter.
	Expired Class = "expired"
)

// Retry reports whether a message failing with this class should be tried
// again later.
func (c Class) Retry() bool { return c != Permanent && c != Unreadable && c != Expired }

// Failure is a classified send error. Reason is short and safe to log and to
// attach to a dead-lettered message: it never holds an address.
type Failure struct {
	Class  Class
	Reason string
}

// maxReasonLen bounds a reason: it is a log field and an SQS attribute.
const maxReasonLen = 200

// Classify decides what err means for the message whose send failed.
// Anything it does not recognise is transient: retrying a message that cannot
// succeed costs attempts until its retry window runs out, while
// dead-lettering one that could have succeeded needs a person.
func Classify(err error) Failure {
	if err == nil {
		return Failure{}
	}
	if errors.Is(err, herald.ErrUnreadable) {
		return Failure{Unreadable, Sanitize(err.Error())}
	}
	var se *SMTPError
	if errors.As(err, &se) {
		return classifySMTP(se)
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		if f, ok := classifyAPI(apiErr, httpStatus(err)); ok {
			return f
		}
	}
	if status := httpStatus(err); status != 0 {
		return classifyStatus(status, "http")
	}
	return classifyLowLevel(err)
}

// classifyAPI handles an error the AWS service returned, by its code first
// (SES v2's typed exceptions and the codes AWS uses across services), then by
// the HTTP status.
func classifyAPI(apiErr smithy.APIError, status int) (Failure, bool) {
	code := apiErr.ErrorCode()
	reason := "ses " + code
	if msg := apiErr.ErrorMessage(); msg != "" {
		reason += ": " + msg
	}
	reason = Sanitize(reason)
	switch code {
	case "MessageRejected", "MailFromDomainNotVerifiedException", "MailFromDomainNotVerified",
		"BadRequestException", "InvalidParameterValue", "ValidationException", "ValidationError":
		return Failure{Permanent, reason}, true
	case "TooManyRequestsException", "Throttling", "ThrottlingException", "RequestThrottled",
		"RequestLimitExceeded", "SlowDown":
		return Failure{Throttled, reason}, true
	case "SendingPausedException", "AccountSuspendedException", "LimitExceededException",
		// The configuration set named by HERALD_SES_CONFIGURATION_SET is missing:
		// a deployment error, not the message's fault.
		"NotFoundException",
		// Credentials or permissions: fixed by an operator, not by the message.
		"AccessDenied", "AccessDeniedException", "UnrecognizedClientException",
		"InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException",
		"SignatureDoesNotMatch", "IncompleteSignature", "MissingAuthenticationToken",
		"InvalidSignatureException", "NotAuthorized":
		return Failure{Account, reason}, true
	case "InternalServiceErrorException", "InternalFailure", "InternalError",
		"ServiceUnavailable", "ServiceUnavailableException", "ConcurrentModificationException":
		return Failure{Transient, reason}, true
	}
	if status != 0 {
		f := classifyStatus(status, "ses")
		f.Reason = reason
		return f, true
	}
	return Failure{}, false
}

// classifyStatus: 429 throttled, 5xx transient, 401/403 account, other 4xx
// permanent.
func classifyStatus(status int, prefix string) Failure {
	reason := fmt.Sprintf("%s status %d", prefix, status)
	switch {
	case status == 429:
		return Failure{Throttled, reason}
	case status >= 500:
		return Failure{Transient, reason}
	case status == 401 || status == 403:
		return Failure{Account, reason}
	case status >= 400:
		return Failure{Permanent, reason}
	}
	return Failure{Transient, reason}
}

func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// classifyLowLevel handles errors below the protocol: deadlines, lost
// connections, refused dials.
func classifyLowLevel(err error) Failure {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return Failure{Transient, "timeout"}
	case errors.Is(err, context.Canceled):
		return Failure{Transient, "canceled"}
	}
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &certErr) || errors.As(err, &unknownAuth) || errors.As(err, &hostErr) {
		// The server's certificate is not trusted: configuration, not the message.
		return Failure{Account, "tls certificate not trusted"}
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return Failure{Transient, "network timeout"}
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) {
		return Failure{Transient, "network error"}
	}
	return Failure{Transient, "unclassified error: " + Sanitize(err.Error())}
}

// classifySMTP: a reply code on the message's own commands (MAIL, RCPT,
// DATA) speaks about the message: 5xx permanent, 4xx transient. A refusal
// while setting up the session (greeting, EHLO, STARTTLS, AUTH) speaks about
// this service's configuration or the relay's state, so it is never
// permanent for the message: 5xx there is an account-level failure.
func classifySMTP(se *SMTPError) Failure {
	var tpErr *textproto.Error
	if errors.As(se.Err, &tpErr) {
		reason := Sanitize(fmt.Sprintf("smtp %s %d: %s", se.Stage, tpErr.Code, tpErr.Msg))
		switch {
		case tpErr.Code >= 500 && se.messageStage():
			return Failure{Permanent, reason}
		case tpErr.Code >= 500:
			return Failure{Account, reason}
		default:
			return Failure{Transient, reason}
		}
	}
	if errors.Is(se.Err, ErrNoSTARTTLS) || errors.Is(se.Err, ErrNoAuth) {
		return Failure{Account, Sanitize("smtp " + se.Stage + ": " + se.Err.Error())}
	}
	f := classifyLowLevel(se.Err)
	f.Reason = "smtp " + se.Stage + ": " + f.Reason
	return f
}

var addrPattern = regexp.MustCompile(`[^\s<>"'(),;:\[\]]+@[^\s<>"'(),;:\[\]]+`)

// Sanitize makes provider text fit for logs and DLQ attributes: addresses
// replaced, control characters dropped, length bounded.
func Sanitize(s string) string {
	s = addrPattern.ReplaceAllString(s, "<address>")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxReasonLen {
		cut := maxReasonLen
		for cut > 0 && s[cut]&0xc0 == 0x80 { // do not split a UTF-8 sequence
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}
