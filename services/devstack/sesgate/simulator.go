package sesgate

import (
	"net/mail"
	"sort"
	"strings"
	"time"
)

// What SES does with each recipient of an accepted send, after "Using the
// mailbox simulator manually" (https://docs.aws.amazon.com/ses/latest/dg/send-an-email-from-console.html)
// and "Using the Amazon SES account-level suppression list"
// (https://docs.aws.amazon.com/ses/latest/dg/sending-email-suppression-list.html):
//
//   - success@simulator.amazonses.com: delivered;
//   - bounce@: a hard bounce (SMTP 550 5.1.1), and the address is not put
//     on the suppression list (the simulator's addresses never are);
//   - ooto@: delivered, then an automatic reply (RFC 3834) to the sender,
//     which is mail to the sender, not an event: the gate records it
//     (Gate.AutoReplies);
//   - complaint@: delivered, then a complaint;
//   - suppressionlist@: a hard bounce "as if the recipient's address is on
//     the global suppression list" (bounceSubType Suppressed);
//   - a label after + (bounce+label1@) is ignored, so a test can tell its
//     sends apart; the other local parts of the simulator's domain are not
//     documented, and are delivered here;
//   - an address on the account's suppression list, for a reason the send's
//     suppression options name: SES accepts the send and does not send it,
//     and reports a bounce (Permanent/OnAccountSuppressionList) for an
//     address suppressed after a bounce, a complaint (complaintSubType
//     OnAccountSuppressionList) for one suppressed after a complaint;
//   - an address the gate's Mailboxes make bounce or complain, as a real
//     mailbox would: on the suppression list afterwards, when the send's
//     suppression options name that reason;
//   - any other address: delivered.
//
// A message with a virus (the EICAR test string, which "Testing Reject
// events" on the same page describes) is rejected as a whole, and a
// templated send whose data lacks an attribute of its template fails to
// render: no recipient gets either.

// SimulatorDomain is the mailbox simulator's domain.
const SimulatorDomain = "simulator.amazonses.com"

// Mailbox is how an ordinary address (or every address of a domain) behaves
// in the gate, as a real recipient would.
type Mailbox string

const (
	// MailboxBounce: no such mailbox; a hard bounce (550 5.1.1).
	MailboxBounce Mailbox = "bounce"
	// MailboxComplaint: delivered, then marked as spam (abuse).
	MailboxComplaint Mailbox = "complaint"
	// MailboxDelay: the server does not answer at first (a DeliveryDelay),
	// then takes the mail.
	MailboxDelay Mailbox = "delay"
)

// Suppression reasons (SES's SuppressedReasons).
const (
	ReasonBounce    = "BOUNCE"
	ReasonComplaint = "COMPLAINT"
)

// Diagnostics and values of the events, as SES writes them.
const (
	diagUserUnknown  = "smtp; 550 5.1.1 user unknown"
	diagGlobalList   = "Amazon SES has suppressed sending to this address because it has a recent history of bouncing as an invalid address. For more information about how to remove an address from the suppression list, see the Amazon SES Developer Guide: http://docs.aws.amazon.com/ses/latest/DeveloperGuide/remove-from-suppressionlist.html "
	diagAccountList  = "Amazon SES did not send the message to this address because it is on the suppression list for your account. For more information about removing addresses from the suppression list, see the Amazon SES Developer Guide at https://docs.aws.amazon.com/ses/latest/DeveloperGuide/sending-email-suppression-list.html"
	diagDelay        = "smtp; 421 4.4.1 Unable to connect to remote host"
	simulatorAgent   = "Amazon SES Mailbox Simulator"
	smtpAccepted     = "250 2.6.0 Message received"
	reportingMTA     = "a8-30.smtp-out.amazonses.com"
	reportingDSN     = "dns; amazonses.com"
	reportingBounce  = "dsn; " + reportingMTA
	onAccountList    = "OnAccountSuppressionList"
	eicarSignature   = "EICAR-STANDARD-ANTIVIRUS-TEST-FILE"
	rejectBadContent = "Bad content"
)

// When each event happens, after SES accepted the send: fixed, so that a
// test can tell what the order of outcomes of one recipient is.
const (
	afterDelay     = 100 * time.Millisecond
	afterDelivery  = 500 * time.Millisecond
	afterComplaint = time.Second
)

// bounceKind is a bounce as SES reports it.
type bounceKind struct {
	typ, subType, status, diagnostic, reportingMTA string
}

// complaintKind is a complaint as SES reports it.
type complaintKind struct {
	feedbackType, userAgent string
	subType                 *string
}

// plan is what happens to one recipient.
type plan struct {
	addr      string // as the send named it, bare
	delay     bool   // a DeliveryDelay first
	deliver   bool
	bounce    *bounceKind
	complaint *complaintKind
	autoReply bool
	// suppress puts the address on the account's list with this reason.
	suppress string
}

// planFor decides what SES does with addr. reasons are the suppression
// reasons in force for the send; listed is the reason the address is on the
// account's list for ("" when it is not).
func planFor(addr string, reasons map[string]bool, listed string, mailboxes map[string]Mailbox) plan {
	p := plan{addr: addr}
	lower := strings.ToLower(addr)
	if listed != "" && reasons[listed] {
		if listed == ReasonComplaint {
			sub := onAccountList
			p.complaint = &complaintKind{subType: &sub}
		} else {
			p.bounce = &bounceKind{typ: "Permanent", subType: onAccountList, status: "5.1.1", diagnostic: diagAccountList, reportingMTA: reportingDSN}
		}
		return p
	}
	at := strings.LastIndexByte(lower, '@')
	local, domain := lower[:at], lower[at+1:]
	if domain == SimulatorDomain {
		if plus := strings.IndexByte(local, '+'); plus >= 0 {
			local = local[:plus]
		}
		switch local {
		case "bounce":
			p.bounce = &bounceKind{typ: "Permanent", subType: "General", status: "5.1.1", diagnostic: diagUserUnknown, reportingMTA: reportingBounce}
		case "suppressionlist":
			p.bounce = &bounceKind{typ: "Permanent", subType: "Suppressed", status: "5.1.1", diagnostic: diagGlobalList, reportingMTA: reportingDSN}
		case "complaint":
			p.deliver = true
			p.complaint = &complaintKind{feedbackType: "abuse", userAgent: simulatorAgent}
		case "ooto":
			p.deliver, p.autoReply = true, true
		default: // success@, and what the guide does not describe
			p.deliver = true
		}
		return p
	}
	box, ok := mailboxes[lower]
	if !ok {
		box = mailboxes[domain]
	}
	switch box {
	case MailboxBounce:
		p.bounce = &bounceKind{typ: "Permanent", subType: "General", status: "5.1.1", diagnostic: diagUserUnknown, reportingMTA: reportingBounce}
		if reasons[ReasonBounce] {
			p.suppress = ReasonBounce
		}
	case MailboxComplaint:
		p.deliver = true
		p.complaint = &complaintKind{feedbackType: "abuse", userAgent: "Mail Feedback Loop"}
		if reasons[ReasonComplaint] {
			p.suppress = ReasonComplaint
		}
	case MailboxDelay:
		p.delay, p.deliver = true, true
	default:
		p.deliver = true
	}
	return p
}

// records are the SES events of one accepted send, in the order SES would
// publish them: Send, then a Reject or Rendering Failure of the whole
// message, or the recipients' delays, delivery, bounces and complaints, a
// bounce or complaint per kind for all the recipients it applies to (SES
// "combines the bounce responses into a single response").
func records(mail sesMail, accepted time.Time, plans []plan, reject, renderFailure *string, template string) []*sesRecord {
	out := []*sesRecord{{EventType: typeSend, Mail: mail, Send: &struct{}{}}}
	switch {
	case reject != nil:
		return append(out, &sesRecord{EventType: typeReject, Mail: mail, Reject: &sesReject{Reason: *reject}})
	case renderFailure != nil:
		m := mail
		m.Headers, m.CommonHeaders = nil, nil // rendered later, never
		return append(out, &sesRecord{EventType: typeRenderingFailure, Mail: m, Failure: &sesFailure{ErrorMessage: *renderFailure, TemplateName: template}})
	}
	var delayed []sesBouncedRecipient
	var delivered []string
	bounces := map[bounceKind][]sesBouncedRecipient{}
	complaints := map[string][]sesAddress{}
	complaintKinds := map[string]complaintKind{}
	for _, p := range plans {
		if p.delay {
			delayed = append(delayed, sesBouncedRecipient{EmailAddress: p.addr, Status: "4.4.1", DiagnosticCode: diagDelay})
		}
		if p.deliver {
			delivered = append(delivered, p.addr)
		}
		if p.bounce != nil {
			bounces[*p.bounce] = append(bounces[*p.bounce], sesBouncedRecipient{EmailAddress: p.addr, Action: "failed", Status: p.bounce.status, DiagnosticCode: p.bounce.diagnostic})
		}
		if c := p.complaint; c != nil {
			k := c.feedbackType + "|" + c.userAgent
			if c.subType != nil {
				k += "|" + *c.subType
			}
			complaints[k] = append(complaints[k], sesAddress{EmailAddress: p.addr})
			complaintKinds[k] = *c
		}
	}
	if len(delayed) > 0 {
		at := accepted.Add(afterDelay)
		out = append(out, &sesRecord{EventType: typeDeliveryDelay, Mail: mail, DeliveryDelay: &sesDeliveryDelay{
			Timestamp: isoMillis(at), DelayType: "TransientCommunicationFailure",
			ExpirationTime: isoMillis(accepted.Add(14 * time.Hour)), DelayedRecipients: delayed,
		}})
	}
	if len(delivered) > 0 {
		out = append(out, &sesRecord{EventType: typeDelivery, Mail: mail, Delivery: &sesDelivery{
			Timestamp: isoMillis(accepted.Add(afterDelivery)), ProcessingTimeMillis: afterDelivery.Milliseconds(),
			Recipients: delivered, SMTPResponse: smtpAccepted, ReportingMTA: reportingMTA,
		}})
	}
	for _, k := range sortedKeys(bounces, func(b bounceKind) string { return b.typ + b.subType + b.diagnostic }) {
		out = append(out, &sesRecord{EventType: typeBounce, Mail: mail, Bounce: &sesBounce{
			BounceType: k.typ, BounceSubType: k.subType, BouncedRecipients: bounces[k],
			Timestamp: isoMillis(accepted.Add(afterDelivery)), FeedbackID: sesID(accepted), ReportingMTA: k.reportingMTA,
		}})
	}
	for _, k := range sortedKeys(complaints, func(s string) string { return s }) {
		c := complaintKinds[k]
		at := isoMillis(accepted.Add(afterComplaint))
		rec := &sesComplaint{ComplainedRecipients: complaints[k], Timestamp: at, FeedbackID: sesID(accepted),
			ComplaintSubType: c.subType, UserAgent: c.userAgent, ComplaintFeedbackType: c.feedbackType}
		if c.feedbackType != "" {
			rec.ArrivalDate = at
		}
		out = append(out, &sesRecord{EventType: typeComplaint, Mail: mail, Complaint: rec})
	}
	return out
}

func sortedKeys[K comparable, V any](m map[K]V, key func(K) string) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return key(out[i]) < key(out[j]) })
	return out
}

// bareAddress is the address of a "Name <addr>" or addr; "" when it does not parse.
func bareAddress(s string) string {
	a, err := mail.ParseAddress(s)
	if err != nil {
		return ""
	}
	return a.Address
}

// domainOf is the part after the last @, in lower case.
func domainOf(addr string) string {
	return strings.ToLower(addr[strings.LastIndexByte(addr, '@')+1:])
}
