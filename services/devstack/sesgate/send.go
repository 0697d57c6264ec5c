package sesgate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// templateContent is SendEmail's Template content.
type templateContent struct {
	TemplateName    string
	TemplateData    string
	TemplateContent *struct{ Subject, Html, Text string }
}

// submission is an accepted SendEmail as SES processes it.
type submission struct {
	from, subject string
	identity      string
	set           *setState
	reasons       map[string]bool
	plans         []plan
	req           *sendEmailRequest
	rawHeaders    []sesHeader
	sourceIP      string
	callerID      string
	// reject and renderFailure, when set, end the message for every recipient.
	reject, renderFailure *string
	template              string
}

// reached are the recipients whose mailbox gets the mail.
func (s *submission) reached() []string {
	var out []string
	if s.reject != nil || s.renderFailure != nil {
		return nil
	}
	for _, p := range s.plans {
		if p.deliver {
			out = append(out, p.addr)
		}
	}
	return out
}

// configurationSet is the set a send uses: the one it names, or the
// default; nil when the gate has none. A name the gate does not know is
// refused when the gate has configuration sets.
func (g *Gate) configurationSet(name string) (*setState, error) {
	if name == "" {
		name = g.defSet
	}
	if len(g.sets) == 0 || name == "" {
		return nil, nil
	}
	st, ok := g.sets[name]
	if !ok {
		return nil, fmt.Errorf("Configuration set <%s> does not exist.", name)
	}
	return st, nil
}

// submit works out what SES does with an accepted send.
func (g *Gate) submit(r *http.Request, req *sendEmailRequest, from, subject, identity string, set *setState) *submission {
	s := &submission{from: from, subject: subject, identity: identity, set: set, req: req}
	s.sourceIP, _, _ = net.SplitHostPort(r.RemoteAddr)
	s.callerID = callerIdentity(r)
	var raw []byte
	if req.Content.Raw != nil {
		raw, _ = base64.StdEncoding.DecodeString(req.Content.Raw.Data)
		s.rawHeaders = headerLines(raw)
	}
	g.mu.Lock()
	reasons := g.accountReasons
	g.mu.Unlock()
	if set != nil && set.SuppressedReasons != nil {
		reasons = set.SuppressedReasons
	}
	s.reasons = reasonSet(reasons)

	if hasVirus(req, raw) {
		reason := rejectBadContent
		s.reject = &reason
	} else if t := req.Content.Template; t != nil {
		s.template, s.renderFailure = g.checkTemplate(r.Context(), t)
	}
	g.mu.Lock()
	for _, addr := range s.recipients() {
		listed := g.suppressed[strings.ToLower(addr)].Reason
		s.plans = append(s.plans, planFor(addr, s.reasons, listed, g.boxes))
	}
	g.mu.Unlock()
	return s
}

// recipients are the send's addresses, bare: the Destination's, or a raw
// message's To, Cc and Bcc when it has none.
func (s *submission) recipients() []string {
	var list []string
	if d := s.req.Destination; d != nil {
		list = append(append(append(list, d.ToAddresses...), d.CcAddresses...), d.BccAddresses...)
	} else {
		for _, h := range s.rawHeaders {
			switch strings.ToLower(h.Name) {
			case "to", "cc", "bcc":
				if as, err := mail.ParseAddressList(h.Value); err == nil {
					for _, a := range as {
						list = append(list, a.Address)
					}
				}
			}
		}
	}
	var out []string
	for _, a := range list {
		if b := bareAddress(a); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// accepted records a send SES accepted under messageID and carries out what
// follows: the suppression list, the simulator's automatic replies, the
// events.
func (g *Gate) accepted(r *http.Request, s *submission, messageID string, at time.Time) {
	rec := Send{MessageID: messageID, At: at, AtMs: at.UnixMilli(), From: s.from, Subject: s.subject}
	if d := s.req.Destination; d != nil {
		rec.To, rec.Cc, rec.Bcc = d.ToAddresses, d.CcAddresses, d.BccAddresses
	}
	if s.set != nil {
		rec.ConfigurationSet = s.set.Name
	}
	if len(s.req.EmailTags) > 0 {
		rec.Tags = map[string]string{}
		for _, t := range s.req.EmailTags {
			rec.Tags[t.Name] = t.Value
		}
	}
	reached := map[string]bool{}
	for _, a := range s.reached() {
		reached[a] = true
	}
	for _, p := range s.plans {
		if !reached[p.addr] {
			rec.NotSent = append(rec.NotSent, p.addr)
		}
	}
	mailObj := s.mailObject(g, messageID, at)
	recs := records(mailObj, at, s.plans, s.reject, s.renderFailure, s.template)

	g.mu.Lock()
	g.sends = append(g.sends, rec)
	g.stats.Accepted++
	for _, p := range s.plans {
		if p.suppress != "" && s.reject == nil && s.renderFailure == nil {
			key := strings.ToLower(p.addr)
			if _, listed := g.suppressed[key]; !listed {
				g.suppressed[key] = Suppressed{EmailAddress: p.addr, Reason: p.suppress, At: at, MessageID: messageID, FeedbackID: sesID(at)}
			}
		}
		if p.autoReply && s.reject == nil && s.renderFailure == nil {
			g.autoReplies = append(g.autoReplies, AutoReply{InReplyTo: messageID, From: p.addr, To: bareAddress(s.from),
				Subject: "Auto: " + s.subject, At: at.Add(afterDelivery)})
		}
	}
	// Under g.mu: Close marks the gate closed under it before it closes
	// the publishers' queues.
	if s.set != nil && s.set.pub != nil && !g.closed && !s.set.pub.publish("http://"+r.Host+certificatePath, recs) {
		g.stats.EventErrors += int64(len(recs))
		g.log.Warn("event queue full; the events of a send are dropped", "messageId", messageID)
	}
	g.mu.Unlock()
}

// mailObject is the event records' mail object.
func (s *submission) mailObject(g *Gate, messageID string, at time.Time) sesMail {
	var dest []string
	for _, p := range s.plans {
		dest = append(dest, p.addr)
	}
	headers, common := s.headers(messageID)
	truncated := false
	size := 0
	for i, h := range headers {
		if size += len(h.Name) + len(h.Value); size > 10<<10 {
			headers, truncated = headers[:i], true
			break
		}
	}
	tags := map[string][]string{
		"ses:source-ip":       {s.sourceIP},
		"ses:from-domain":     {domainOf(bareAddress(s.from))},
		"ses:caller-identity": {s.callerID},
	}
	if s.set != nil {
		tags["ses:configuration-set"] = []string{s.set.Name}
	}
	for _, t := range s.req.EmailTags {
		tags[t.Name] = []string{t.Value}
	}
	return sesMail{
		Timestamp: isoMillis(at), Source: s.from,
		SourceArn:        fmt.Sprintf("arn:aws:ses:%s:%s:identity/%s", g.region, g.account, s.identity),
		SendingAccountID: g.account, MessageID: messageID, Destination: dest,
		HeadersTruncated: truncated, Headers: headers, CommonHeaders: common, Tags: tags,
	}
}

// headers are the mail's headers as SES reports them: a raw message's own,
// or those SES writes for simple and templated content.
func (s *submission) headers(messageID string) ([]sesHeader, *sesCommonHeaders) {
	common := &sesCommonHeaders{From: []string{s.from}, MessageID: messageID, Subject: s.subject}
	if s.req.Content.Raw != nil {
		for _, h := range s.rawHeaders {
			switch strings.ToLower(h.Name) {
			case "to":
				common.To = splitList(h.Value)
			case "cc":
				common.Cc = splitList(h.Value)
			case "reply-to":
				common.ReplyTo = splitList(h.Value)
			}
		}
		return s.rawHeaders, common
	}
	hs := []sesHeader{{"From", s.from}}
	if len(s.req.ReplyToAddresses) > 0 {
		hs = append(hs, sesHeader{"Reply-To", strings.Join(s.req.ReplyToAddresses, ", ")})
		common.ReplyTo = s.req.ReplyToAddresses
	}
	if d := s.req.Destination; d != nil {
		if len(d.ToAddresses) > 0 {
			hs = append(hs, sesHeader{"To", strings.Join(d.ToAddresses, ", ")})
			common.To = d.ToAddresses
		}
		if len(d.CcAddresses) > 0 {
			hs = append(hs, sesHeader{"Cc", strings.Join(d.CcAddresses, ", ")})
			common.Cc = d.CcAddresses
		}
	}
	if s.subject != "" {
		hs = append(hs, sesHeader{"Subject", s.subject})
	}
	hs = append(hs, sesHeader{"MIME-Version", "1.0"})
	if simple := s.req.Content.Simple; simple != nil {
		ct := "text/plain; charset=UTF-8"
		if simple.Body.Html != nil {
			ct = "multipart/alternative; boundary=\"----=_Part_0_sesgate\""
		}
		hs = append(hs, sesHeader{"Content-Type", ct})
		for _, h := range simple.Headers {
			hs = append(hs, sesHeader{h.Name, h.Value})
		}
	}
	return hs, common
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// headerLines reads a message's header lines in order, unfolded.
func headerLines(raw []byte) []sesHeader {
	var out []sesHeader
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(out) > 0 {
			out[len(out)-1].Value += " " + strings.TrimSpace(line)
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		out = append(out, sesHeader{Name: strings.TrimSpace(name), Value: strings.TrimSpace(value)})
	}
	return out
}

// hasVirus: the message carries the EICAR test string, in its body, an
// attachment or a raw message.
func hasVirus(req *sendEmailRequest, raw []byte) bool {
	if bytes.Contains(raw, []byte(eicarSignature)) {
		return true
	}
	if s := req.Content.Simple; s != nil {
		for _, b := range []*struct{ Data string }{s.Body.Text, s.Body.Html} {
			if b != nil && strings.Contains(b.Data, eicarSignature) {
				return true
			}
		}
		for _, a := range s.Attachments {
			if data, err := base64.StdEncoding.DecodeString(a.RawContent); err == nil && bytes.Contains(data, []byte(eicarSignature)) {
				return true
			}
		}
	}
	return false
}

var templateVar = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)

// checkTemplate renders a templated send's variables as SES does after
// accepting it: a variable the data lacks is a rendering failure, with SES's
// message. The template comes inline or from the emulator, which keeps the
// account's templates; one the gate cannot read is not checked.
func (g *Gate) checkTemplate(ctx context.Context, t *templateContent) (name string, failure *string) {
	parts := t.TemplateContent
	if parts == nil && t.TemplateName != "" {
		parts = g.fetchTemplate(ctx, t.TemplateName)
	}
	if parts == nil {
		return t.TemplateName, nil
	}
	var data map[string]any
	if t.TemplateData != "" && json.Unmarshal([]byte(t.TemplateData), &data) != nil {
		msg := "Template data is not valid JSON."
		return t.TemplateName, &msg
	}
	for _, part := range []string{parts.Subject, parts.Html, parts.Text} {
		for _, m := range templateVar.FindAllStringSubmatch(part, -1) {
			if m[1] == "else" {
				continue
			}
			if _, ok := data[m[1]]; !ok {
				msg := fmt.Sprintf("Attribute '%s' is not present in the rendering data.", m[1])
				return t.TemplateName, &msg
			}
		}
	}
	return t.TemplateName, nil
}

func (g *Gate) fetchTemplate(ctx context.Context, name string) *struct{ Subject, Html, Text string } {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.upstream.JoinPath("/v2/email/templates", url.PathEscape(name)).String(), nil)
	if err != nil {
		return nil
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var out struct {
		TemplateContent *struct{ Subject, Html, Text string }
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out) != nil {
		return nil
	}
	return out.TemplateContent
}

// withDestination rewrites a SendEmail body to send to these recipients
// only, keeping each in its field; the body unchanged when it cannot.
func withDestination(body []byte, keep []string) []byte {
	var req map[string]json.RawMessage
	if json.Unmarshal(body, &req) != nil {
		return body
	}
	var d map[string][]string
	if json.Unmarshal(req["Destination"], &d) != nil {
		return body
	}
	set := map[string]bool{}
	for _, a := range keep {
		set[a] = true
	}
	for field, list := range d {
		var kept []string
		for _, a := range list {
			if set[bareAddress(a)] {
				kept = append(kept, a)
			}
		}
		if len(kept) == 0 {
			delete(d, field)
		} else {
			d[field] = kept
		}
	}
	b, err := json.Marshal(d)
	if err != nil {
		return body
	}
	req["Destination"] = b
	out, err := json.Marshal(req)
	if err != nil {
		return body
	}
	return out
}

// callerIdentity is the access key of the request's SigV4 signature, for
// the ses:caller-identity tag (SES gives the IAM identity's name).
func callerIdentity(r *http.Request) string {
	auth := r.Header.Get("Authorization")
	if _, rest, ok := strings.Cut(auth, "Credential="); ok {
		if key, _, ok := strings.Cut(rest, "/"); ok && key != "" {
			return key
		}
	}
	return "sesgate"
}
