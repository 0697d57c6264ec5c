// Package sesgate is a reverse proxy in front of the SES v2 emulator that
// adds what real SES does and the emulator does not, on the real wire
// protocol, so the email sender's failure paths can be exercised locally:
//
//   - verified identities: a send whose From address (or its domain) is not
//     verified gets SES's MessageRejected error;
//   - the account's maximum send rate: sends above it get
//     TooManyRequestsException (HTTP 429);
//   - GetAccount answers with a send quota, as a production account does;
//   - a fault switch for tests: answer 503, throttle, drop connections, or
//     hang without an answer, for a while or for a number of requests, for
//     every call or only for sends whose subject has a given text;
//   - a record of each accepted send's MessageId with a millisecond timestamp
//     (the emulator's store has whole seconds), for tests and benchmarks;
//   - SES's mailbox simulator and the account-level suppression list
//     (simulator.go, suppression.go), and event publishing: each accepted
//     send's events (Send, Delivery, Bounce, Complaint, Reject,
//     DeliveryDelay, Rendering Failure) in SES's JSON inside SNS's envelope,
//     sent to the SQS queue of the configuration set's event destination
//     (events.go, publish.go). A recipient SES would not deliver to (a
//     bounce, a suppressed address, a rejected message) is not passed on to
//     the emulator, whose store is the recipients' mailboxes.
//
// Everything else (the emulator's web page, /store, templates) passes through.
// The gate's own endpoints live under /_gate/.
package sesgate

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"herald/services/devstack/sqslocal"
)

// DefaultMaxSendRate is the send rate of a new SES production account.
const DefaultMaxSendRate = 14

// maxRequestBytes bounds a send request: SES's 40 MB message limit, base64.
const maxRequestBytes = 56 << 20

// Config sets up a gate.
type Config struct {
	// Upstream is the base URL of the SES v2 emulator.
	Upstream string
	// Verified identities: email addresses ("noreply@example.com") or domains
	// ("example.com", which also covers its subdomains). Empty: every sender
	// is accepted, as if all were verified.
	Verified []string
	// MaxSendRate is the account's maximum sends per second; 0 means
	// DefaultMaxSendRate. Real SES counts recipients; the gate counts
	// SendEmail calls.
	MaxSendRate float64
	// Max24HourSend is reported by GetAccount; 0 means 50000.
	Max24HourSend float64
	// Region appears in error messages and ARNs, as in SES's; "" means us-east-1.
	Region string
	// AccountID is the account in ARNs and events; "" means 000000000000,
	// the local SQS emulator's.
	AccountID string
	// SuppressedReasons turn on the account-level suppression list for
	// these reasons (BOUNCE, COMPLAINT; SES accounts made since November
	// 2019 have both). Empty: off.
	SuppressedReasons []string
	// ConfigurationSets are the account's. Empty: a send may name any set
	// and none publishes events; otherwise a send naming another set is
	// refused, as SES refuses it (NotFoundException).
	ConfigurationSets []ConfigurationSet
	// DefaultConfigurationSet is the set of sends that name none (SES: an
	// identity's default configuration set); "" for none.
	DefaultConfigurationSet string
	// Mailboxes make addresses, or every address of a domain (keys in lower
	// case), behave as real mailboxes that bounce, complain or delay.
	Mailboxes map[string]Mailbox
	// Logger receives one line per rejected, throttled or faulted request;
	// nil discards.
	Logger *slog.Logger
}

// FaultMode is what the gate does to SES API calls while a fault is set.
type FaultMode string

const (
	// FaultUnavailable answers 503 ServiceUnavailable.
	FaultUnavailable FaultMode = "unavailable"
	// FaultThrottle answers 429 TooManyRequestsException.
	FaultThrottle FaultMode = "throttle"
	// FaultRefuse drops the connection without an answer.
	FaultRefuse FaultMode = "refuse"
	// FaultHang holds the call without an answer (and without passing it
	// on) until the caller gives up, the fault is changed or cleared, or the
	// gate closes: a frozen endpoint. Stats.Hanging counts the calls held.
	FaultHang FaultMode = "hang"
)

// Fault applies to SES API calls (paths under /v2/) until it expires: after
// For has passed, or after Count calls, whichever comes first; with neither
// set it lasts until cleared. With Subject set it applies only to SendEmail
// calls whose subject contains it (and only those use up its Count).
type Fault struct {
	Mode    FaultMode `json:"mode"`
	For     Duration  `json:"for,omitempty"`
	Count   int       `json:"count,omitempty"`
	Subject string    `json:"subject,omitempty"`
}

// Duration is a time.Duration written in JSON as "500ms", "5s".
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"5s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Send is one send SES accepted.
type Send struct {
	MessageID string    `json:"messageId"`
	At        time.Time `json:"at"`
	AtMs      int64     `json:"atMs"`
	From      string    `json:"from"`
	To        []string  `json:"to,omitempty"`
	Cc        []string  `json:"cc,omitempty"`
	Bcc       []string  `json:"bcc,omitempty"`
	Subject   string    `json:"subject,omitempty"`
	// ConfigurationSet is the send's (named, or the default).
	ConfigurationSet string `json:"configurationSet,omitempty"`
	// Tags are the send's message tags.
	Tags map[string]string `json:"tags,omitempty"`
	// NotSent are the recipients SES accepted the send for and did not
	// deliver to: bounced, suppressed, or all of a rejected message.
	NotSent []string `json:"notSent,omitempty"`
}

// AutoReply is an automatic reply the simulator's ooto@ address sent to a
// send's source (RFC 3834).
type AutoReply struct {
	InReplyTo string    `json:"inReplyTo"` // the send's SES message id
	From      string    `json:"from"`
	To        string    `json:"to"`
	Subject   string    `json:"subject"`
	At        time.Time `json:"at"`
}

// Stats counts what the gate did with SES API calls.
type Stats struct {
	Accepted       int64 `json:"accepted"`
	Rejected       int64 `json:"rejected"`
	Throttled      int64 `json:"throttled"`
	Faulted        int64 `json:"faulted"`
	UpstreamErrors int64 `json:"upstreamErrors"`
	// Hanging is how many calls a hang fault holds right now.
	Hanging int64 `json:"hanging"`
	// EventsPublished and EventErrors count the events sent to event
	// destinations, and those that could not be (or were dropped).
	EventsPublished int64 `json:"eventsPublished"`
	EventErrors     int64 `json:"eventErrors"`
}

// Gate is the proxy; it is an http.Handler.
type Gate struct {
	upstream *url.URL
	proxy    *httputil.ReverseProxy
	client   *http.Client
	log      *slog.Logger
	region   string
	max24h   float64
	account  string
	signer   *signer
	sets     map[string]*setState
	defSet   string
	boxes    map[string]Mailbox

	mu       sync.Mutex
	verified map[string]bool
	rate     float64
	limiter  *rate.Limiter
	fault    *activeFault
	// faultChanged is closed when the fault is set, cleared or the gate
	// closes: it ends the hangs of the fault before.
	faultChanged chan struct{}
	closed       bool
	sends        []Send
	stats        Stats
	// The account's suppression settings and list (by lower-case address).
	accountReasons []string
	suppressed     map[string]Suppressed
	published      []PublishedEvent
	autoReplies    []AutoReply
}

// setState is a configuration set and its event destination's publisher.
type setState struct {
	ConfigurationSet
	pub *publisher
}

type activeFault struct {
	mode    FaultMode
	until   time.Time // zero: no time limit
	left    int       // 0: no count limit
	subject string    // "": every call
}

// New makes a gate for cfg.Upstream.
func New(cfg Config) (*Gate, error) {
	u, err := url.Parse(cfg.Upstream)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("sesgate: upstream %q is not an absolute URL", cfg.Upstream)
	}
	if cfg.MaxSendRate < 0 || math.IsNaN(cfg.MaxSendRate) || math.IsInf(cfg.MaxSendRate, 0) {
		return nil, fmt.Errorf("sesgate: MaxSendRate %g must be a positive number (0 for the default)", cfg.MaxSendRate)
	}
	if cfg.MaxSendRate == 0 {
		cfg.MaxSendRate = DefaultMaxSendRate
	}
	if cfg.Max24HourSend <= 0 {
		cfg.Max24HourSend = 50000
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.AccountID == "" {
		cfg.AccountID = sqslocal.AccountID
	}
	if err := validReasons(cfg.SuppressedReasons); err != nil {
		return nil, err
	}
	if err := checkConfigurationSets(cfg.ConfigurationSets, cfg.DefaultConfigurationSet); err != nil {
		return nil, err
	}
	boxes := map[string]Mailbox{}
	for k, v := range cfg.Mailboxes {
		if v != MailboxBounce && v != MailboxComplaint && v != MailboxDelay {
			return nil, fmt.Errorf("sesgate: mailbox %q: behaviour %q is not bounce, complaint or delay", k, v)
		}
		boxes[strings.ToLower(k)] = v
	}
	g := &Gate{
		faultChanged:   make(chan struct{}),
		upstream:       u,
		log:            cfg.Logger,
		region:         cfg.Region,
		max24h:         cfg.Max24HourSend,
		account:        cfg.AccountID,
		signer:         &signer{},
		sets:           map[string]*setState{},
		defSet:         cfg.DefaultConfigurationSet,
		boxes:          boxes,
		accountReasons: append([]string{}, cfg.SuppressedReasons...),
		suppressed:     map[string]Suppressed{},
		client: &http.Client{Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		}},
	}
	if err := g.SetVerified(cfg.Verified); err != nil {
		return nil, err
	}
	g.SetMaxSendRate(cfg.MaxSendRate)
	for _, set := range cfg.ConfigurationSets {
		st := &setState{ConfigurationSet: set}
		if d := set.Events; d != nil && d.QueueURL != "" {
			st.pub = newPublisher(*d, cfg.Region, g.signer, g.log.With("configurationSet", set.Name), g.recordPublished)
		}
		g.sets[set.Name] = st
	}
	g.proxy = &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(u) },
		Transport: g.client.Transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			g.log.Warn("upstream unreachable", "path", r.URL.Path, "err", err)
			http.Error(w, "SES emulator unreachable", http.StatusBadGateway)
		},
	}
	return g, nil
}

// SetVerified replaces the verified identities; empty accepts every sender.
func (g *Gate) SetVerified(identities []string) error {
	v := map[string]bool{}
	for _, id := range identities {
		id = strings.ToLower(strings.TrimSpace(id))
		if id == "" || strings.HasPrefix(id, "@") || strings.Count(id, "@") > 1 {
			return fmt.Errorf("sesgate: identity %q is neither an address nor a domain", id)
		}
		v[id] = true
	}
	g.mu.Lock()
	g.verified = v
	g.mu.Unlock()
	return nil
}

// SetMaxSendRate changes the account's sends per second (0: the default).
func (g *Gate) SetMaxSendRate(perSecond float64) {
	if perSecond <= 0 {
		perSecond = DefaultMaxSendRate
	}
	burst := int(math.Ceil(perSecond))
	g.mu.Lock()
	g.rate = perSecond
	g.limiter = rate.NewLimiter(rate.Limit(perSecond), burst)
	g.mu.Unlock()
}

// SetFault starts a fault; a zero Mode clears it.
func (g *Gate) SetFault(f Fault) error {
	switch f.Mode {
	case "":
		g.ClearFault()
		return nil
	case FaultUnavailable, FaultThrottle, FaultRefuse, FaultHang:
	default:
		return fmt.Errorf("sesgate: fault mode %q is not one of unavailable, throttle, refuse, hang", f.Mode)
	}
	if f.For < 0 || f.Count < 0 {
		return errors.New("sesgate: fault for and count must not be negative")
	}
	a := &activeFault{mode: f.Mode, left: f.Count, subject: f.Subject}
	if f.For > 0 {
		a.until = time.Now().Add(time.Duration(f.For))
	}
	g.mu.Lock()
	g.fault = a
	g.changeFault()
	g.mu.Unlock()
	return nil
}

// ClearFault ends any fault.
func (g *Gate) ClearFault() {
	g.mu.Lock()
	g.fault = nil
	g.changeFault()
	g.mu.Unlock()
}

// changeFault releases the calls the fault before holds. Callers hold g.mu.
func (g *Gate) changeFault() {
	if !g.closed {
		close(g.faultChanged)
		g.faultChanged = make(chan struct{})
	}
}

// Close releases every held call for good, and publishes the events still
// queued (for up to five seconds). Sends after Close publish nothing.
func (g *Gate) Close() {
	g.mu.Lock()
	wasClosed := g.closed
	if !g.closed {
		close(g.faultChanged)
		g.closed = true
	}
	g.mu.Unlock()
	if wasClosed {
		return
	}
	for _, st := range g.sets {
		if st.pub != nil {
			st.pub.close(5 * time.Second)
		}
	}
}

// recordPublished counts and keeps a published event.
func (g *Gate) recordPublished(ev PublishedEvent, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		g.stats.EventErrors++
		g.log.Warn("event not published", "eventType", ev.EventType, "messageId", ev.MessageID, "err", err)
		return
	}
	g.stats.EventsPublished++
	if len(g.published) >= maxPublishedKept {
		g.published = g.published[1:]
	}
	g.published = append(g.published, ev)
}

// Published returns the events published so far (the last 10,000), oldest
// first.
func (g *Gate) Published() []PublishedEvent {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]PublishedEvent(nil), g.published...)
}

// AutoReplies returns the automatic replies sent so far, oldest first.
func (g *Gate) AutoReplies() []AutoReply {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]AutoReply(nil), g.autoReplies...)
}

// Sends returns the accepted sends so far, oldest first.
func (g *Gate) Sends() []Send {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Send(nil), g.sends...)
}

// Stats returns the counters.
func (g *Gate) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stats
}

// Reset forgets the recorded sends, events, replies and counters (not the
// suppression list, which is the account's).
func (g *Gate) Reset() {
	g.mu.Lock()
	g.sends, g.published, g.autoReplies = nil, nil, nil
	g.stats = Stats{Hanging: g.stats.Hanging} // held calls are still held
	g.mu.Unlock()
}

func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/_gate/"):
		g.serveControl(w, r)
	case strings.HasPrefix(p, "/v2/"):
		g.serveSES(w, r)
	default:
		g.proxy.ServeHTTP(w, r)
	}
}

func (g *Gate) serveSES(w http.ResponseWriter, r *http.Request) {
	send := r.Method == http.MethodPost && r.URL.Path == "/v2/email/outbound-emails"
	var body []byte
	var req sendEmailRequest
	if send {
		var err error
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
		if err != nil {
			writeError(w, http.StatusBadRequest, "BadRequestException", "Could not read the request: "+err.Error())
			return
		}
		if err := json.Unmarshal(body, &req); err != nil {
			writeError(w, http.StatusBadRequest, "BadRequestException", "The request body is not valid JSON.")
			return
		}
	}
	if mode, released, ok := g.takeFault(send, req.subject()); ok {
		g.count(func(s *Stats) { s.Faulted++ })
		g.log.Info("fault injected", "mode", string(mode), "path", r.URL.Path)
		switch mode {
		case FaultRefuse:
			// Tells net/http to drop the connection without a response.
			panic(http.ErrAbortHandler)
		case FaultHang:
			g.count(func(s *Stats) { s.Hanging++ })
			select {
			case <-r.Context().Done():
			case <-released:
			}
			g.count(func(s *Stats) { s.Hanging-- })
			panic(http.ErrAbortHandler)
		case FaultThrottle:
			writeError(w, http.StatusTooManyRequests, "TooManyRequestsException", "Maximum sending rate exceeded.")
		default:
			writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "Service is unavailable. Please try again later.")
		}
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v2/email/account":
		g.serveGetAccount(w)
	case send:
		g.serveSendEmail(w, r, body, &req)
	case g.serveSuppression(w, r):
	default:
		g.proxy.ServeHTTP(w, r)
	}
}

// takeFault reports whether a fault applies to this call (send: a SendEmail
// with this subject), using up one of its count, and the channel that
// releases the call if it hangs.
func (g *Gate) takeFault(send bool, subject string) (FaultMode, <-chan struct{}, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.fault
	if f == nil {
		return "", nil, false
	}
	if !f.until.IsZero() && time.Now().After(f.until) {
		g.fault = nil
		return "", nil, false
	}
	if f.subject != "" && (!send || !strings.Contains(subject, f.subject)) {
		return "", nil, false
	}
	if f.left > 0 {
		f.left--
		if f.left == 0 {
			g.fault = nil
		}
	}
	return f.mode, g.faultChanged, true
}

func (g *Gate) count(f func(*Stats)) {
	g.mu.Lock()
	f(&g.stats)
	g.mu.Unlock()
}

func (g *Gate) serveGetAccount(w http.ResponseWriter) {
	g.mu.Lock()
	maxRate := g.rate
	sent := 0
	cutoff := time.Now().Add(-24 * time.Hour)
	for _, s := range g.sends {
		if s.At.After(cutoff) {
			sent++
		}
	}
	reasons := append([]string{}, g.accountReasons...)
	g.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"DedicatedIpAutoWarmupEnabled": false,
		"EnforcementStatus":            "HEALTHY",
		"ProductionAccessEnabled":      true,
		"SendingEnabled":               true,
		"SendQuota": map[string]float64{
			"Max24HourSend":   g.max24h,
			"MaxSendRate":     maxRate,
			"SentLast24Hours": float64(sent),
		},
		"SuppressionAttributes": map[string][]string{"SuppressedReasons": reasons},
	})
}

// sendEmailRequest is the part of SendEmail the gate reads.
type sendEmailRequest struct {
	FromEmailAddress string
	Destination      *struct {
		ToAddresses, CcAddresses, BccAddresses []string
	}
	ReplyToAddresses     []string
	ConfigurationSetName string
	EmailTags            []struct{ Name, Value string }
	Content              struct {
		Simple *struct {
			Subject struct{ Data string }
			Body    struct {
				Text, Html *struct{ Data string }
			}
			Headers     []struct{ Name, Value string }
			Attachments []struct{ RawContent string }
		}
		Raw *struct {
			Data string
		}
		Template *templateContent
	}
}

// subject is the send's subject, from simple or raw content.
func (req *sendEmailRequest) subject() string {
	_, subject := req.fromAndSubject()
	return subject
}

func (req *sendEmailRequest) fromAndSubject() (from, subject string) {
	from = req.FromEmailAddress
	if req.Content.Simple != nil {
		subject = req.Content.Simple.Subject.Data
	}
	if req.Content.Raw != nil {
		rawFrom, rawSubject := rawHeaders(req.Content.Raw.Data)
		if from == "" {
			from = rawFrom
		}
		subject = rawSubject
	}
	return from, subject
}

func (g *Gate) serveSendEmail(w http.ResponseWriter, r *http.Request, body []byte, req *sendEmailRequest) {
	from, subject := req.fromAndSubject()
	addr, err := mail.ParseAddress(from)
	if err != nil {
		g.count(func(s *Stats) { s.Rejected++ })
		writeError(w, http.StatusBadRequest, "BadRequestException", fmt.Sprintf("Illegal address: %q", from))
		return
	}
	identity, ok := g.verifiedIdentity(addr.Address)
	if !ok {
		g.count(func(s *Stats) { s.Rejected++ })
		g.log.Info("sender not verified", "from", addr.Address)
		writeError(w, http.StatusBadRequest, "MessageRejected", fmt.Sprintf(
			"Email address is not verified. The following identities failed the check in region %s: %s",
			strings.ToUpper(g.region), addr.Address))
		return
	}
	set, err := g.configurationSet(req.ConfigurationSetName)
	if err != nil {
		g.count(func(s *Stats) { s.Rejected++ })
		writeError(w, http.StatusNotFound, "NotFoundException", err.Error())
		return
	}
	if !g.allow() {
		g.count(func(s *Stats) { s.Throttled++ })
		writeError(w, http.StatusTooManyRequests, "TooManyRequestsException", "Maximum sending rate exceeded.")
		return
	}

	sub := g.submit(r, req, from, subject, identity, set)
	accepted := time.Now()
	reached := sub.reached()
	// Each send is recorded before it is answered: whoever reads the
	// gate's records after SendEmail returned finds it there.
	if len(reached) == 0 && len(sub.plans) > 0 {
		// SES accepts the send and delivers it to nobody: the emulator,
		// which stands for the recipients' mailboxes, does not see it.
		id := sesID(accepted)
		g.accepted(r, sub, id, accepted)
		writeJSON(w, http.StatusOK, map[string]string{"MessageId": id})
		return
	}
	if len(reached) < len(sub.plans) && req.Destination != nil {
		body = withDestination(body, reached)
	}
	resp, ok := g.forward(w, r, body)
	if !ok {
		return
	}
	if resp.status == http.StatusOK {
		var sent struct{ MessageId string }
		if json.Unmarshal(resp.body, &sent) == nil && sent.MessageId != "" {
			g.accepted(r, sub, sent.MessageId, accepted)
		}
	}
	for k, vs := range resp.header {
		if k == "Connection" || k == "Keep-Alive" || k == "Transfer-Encoding" || k == "Content-Length" {
			continue
		}
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(resp.body)))
	w.WriteHeader(resp.status)
	w.Write(resp.body)
}

// upstreamAnswer is the emulator's answer to a send.
type upstreamAnswer struct {
	status int
	header http.Header
	body   []byte
}

// forward passes a send on to the emulator and returns its answer; ok is
// false when there was none (the caller got a 502).
func (g *Gate) forward(w http.ResponseWriter, r *http.Request, body []byte) (upstreamAnswer, bool) {
	out, err := http.NewRequestWithContext(r.Context(), r.Method, g.upstream.JoinPath(r.URL.Path).String(), bytes.NewReader(body))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalFailure", err.Error())
		return upstreamAnswer{}, false
	}
	for k, vs := range r.Header {
		switch k {
		// Hop-by-hop headers stay here; without Accept-Encoding the answer
		// comes back uncompressed, so its MessageId can be read. The body
		// may have been rewritten: its length is the new one's.
		case "Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Accept-Encoding", "Content-Length":
			continue
		}
		out.Header[k] = vs
	}
	resp, err := g.client.Do(out)
	if err != nil {
		g.count(func(s *Stats) { s.UpstreamErrors++ })
		g.log.Warn("upstream unreachable", "path", r.URL.Path, "err", err)
		http.Error(w, "SES emulator unreachable", http.StatusBadGateway)
		return upstreamAnswer{}, false
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		g.count(func(s *Stats) { s.UpstreamErrors++ })
		http.Error(w, "SES emulator answer cut off", http.StatusBadGateway)
		return upstreamAnswer{}, false
	}
	return upstreamAnswer{status: resp.StatusCode, header: resp.Header, body: respBody}, true
}

// rawHeaders reads From and Subject from a base64 MIME message.
func rawHeaders(data string) (from, subject string) {
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return "", ""
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return "", ""
	}
	return m.Header.Get("From"), m.Header.Get("Subject")
}

// verifiedIdentity is the verified identity that covers addr: the address
// itself, its domain or a parent domain (the from domain when every sender
// is accepted).
func (g *Gate) verifiedIdentity(addr string) (string, bool) {
	addr = strings.ToLower(addr)
	g.mu.Lock()
	defer g.mu.Unlock()
	at := strings.LastIndexByte(addr, '@')
	if len(g.verified) == 0 {
		return addr[at+1:], true
	}
	if g.verified[addr] {
		return addr, true
	}
	for domain := addr[at+1:]; domain != ""; {
		if g.verified[domain] {
			return domain, true
		}
		dot := strings.IndexByte(domain, '.')
		if dot < 0 {
			break
		}
		domain = domain[dot+1:]
	}
	return "", false
}

func (g *Gate) allow() bool {
	g.mu.Lock()
	l := g.limiter
	g.mu.Unlock()
	return l.Allow()
}

// writeError answers as SES v2 does (restJson1): the error code in the
// x-amzn-ErrorType header, the message in a JSON body.
func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("x-amzn-ErrorType", code)
	w.Header().Set("x-amzn-RequestId", requestID())
	writeJSON(w, status, map[string]string{"message": message})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

var reqSeq atomic.Uint64

func requestID() string {
	return fmt.Sprintf("sesgate-%d-%d", time.Now().UnixNano(), reqSeq.Add(1))
}
