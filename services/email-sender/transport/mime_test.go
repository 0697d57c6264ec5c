package transport

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
	"time"

	"herald/services/internal/herald"
)

var testNow = time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC)

func parse(t *testing.T, raw []byte) *mail.Message {
	t.Helper()
	for i, line := range bytes.SplitAfter(raw, []byte("\n")) {
		if len(line) > 0 && !bytes.HasSuffix(line, []byte("\r\n")) && i < bytes.Count(raw, []byte("\n")) {
			t.Fatalf("line %d ends in a bare LF: %q", i+1, line)
		}
		if len(line) > 1000 {
			t.Fatalf("line %d is %d octets, over RFC 5322's 998", i+1, len(line)-2)
		}
		for _, c := range line {
			if c >= 0x80 {
				t.Fatalf("line %d has a non-ASCII byte: %q", i+1, line)
			}
		}
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("net/mail cannot read the message: %v\n%s", err, raw)
	}
	return m
}

func decodeHeader(t *testing.T, v string) string {
	t.Helper()
	s, err := new(mime.WordDecoder).DecodeHeader(v)
	if err != nil {
		t.Fatalf("decode %q: %v", v, err)
	}
	return s
}

func addresses(t *testing.T, h mail.Header, name string) []string {
	t.Helper()
	list, err := h.AddressList(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var out []string
	for _, a := range list {
		out = append(out, a.String())
	}
	return out
}

func TestBuildMessageAlternative(t *testing.T) {
	e := &herald.Envelope{
		ID:      "0190f0f0-0000-7000-8000-000000000001",
		From:    "Zoë Sender <sender@example.com>",
		ReplyTo: "replies@example.com",
		To:      []string{"alice@example.com", "Bob <bob@example.org>"},
		Cc:      []string{"carol@example.net"},
		Bcc:     []string{"secret@example.com"},
		Subject: "Grüße — your order №42 has shipped, and this subject is long enough to need folding",
		Text:    "Hello Alice,\n.\n..starts with dots\n" + strings.Repeat("a long line without breaks ", 20) + "\nvoilà =",
		HTML:    "<p>Hello <b>Alice</b> — voilà</p>\n.\n",
	}
	raw, err := BuildMessage(e, testNow)
	if err != nil {
		t.Fatal(err)
	}
	m := parse(t, raw)

	if got := addresses(t, m.Header, "From"); len(got) != 1 || !strings.Contains(got[0], "sender@example.com") {
		t.Errorf("From = %v", got)
	}
	if a, _ := m.Header.AddressList("From"); a[0].Name != "Zoë Sender" {
		t.Errorf("From name = %q, want Zoë Sender", a[0].Name)
	}
	if got := addresses(t, m.Header, "To"); len(got) != 2 || !strings.Contains(got[0], "alice@example.com") || !strings.Contains(got[1], "bob@example.org") {
		t.Errorf("To = %v", got)
	}
	if got := addresses(t, m.Header, "Cc"); len(got) != 1 || !strings.Contains(got[0], "carol@example.net") {
		t.Errorf("Cc = %v", got)
	}
	if got := addresses(t, m.Header, "Reply-To"); len(got) != 1 || !strings.Contains(got[0], "replies@example.com") {
		t.Errorf("Reply-To = %v", got)
	}
	if _, ok := m.Header["Bcc"]; ok || bytes.Contains(raw, []byte("secret@example.com")) {
		t.Error("the Bcc recipient appears in the message")
	}
	if got := decodeHeader(t, m.Header.Get("Subject")); got != e.Subject {
		t.Errorf("Subject decodes to %q, want %q", got, e.Subject)
	}
	if d, err := m.Header.Date(); err != nil || !d.Equal(testNow) {
		t.Errorf("Date = %v, %v; want %v", d, err, testNow)
	}
	if got := m.Header.Get("Message-Id"); got != "<"+e.ID+"@example.com>" {
		t.Errorf("Message-ID = %q", got)
	}
	if m.Header.Get("Mime-Version") != "1.0" {
		t.Error("no MIME-Version: 1.0")
	}
	mediaType, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/alternative" {
		t.Fatalf("Content-Type %q (%v), want multipart/alternative", m.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for _, want := range []struct{ typ, body string }{{"text/plain", e.Text}, {"text/html", e.HTML}} {
		p, err := mr.NextRawPart()
		if err != nil {
			t.Fatalf("part %s: %v", want.typ, err)
		}
		if ct := p.Header.Get("Content-Type"); ct != want.typ+"; charset=utf-8" {
			t.Errorf("part Content-Type %q, want %s; charset=utf-8", ct, want.typ)
		}
		if cte := p.Header.Get("Content-Transfer-Encoding"); cte != "quoted-printable" {
			t.Errorf("part %s Content-Transfer-Encoding %q", want.typ, cte)
		}
		body, err := io.ReadAll(quotedprintable.NewReader(p))
		if err != nil {
			t.Fatalf("part %s: %v", want.typ, err)
		}
		if got := strings.ReplaceAll(string(body), "\r\n", "\n"); got != want.body {
			t.Errorf("part %s body\n%q\nwant\n%q", want.typ, got, want.body)
		}
	}
	if _, err := mr.NextRawPart(); err != io.EOF {
		t.Errorf("a third part or a broken end: %v", err)
	}
}

func TestBuildMessageSingleBody(t *testing.T) {
	for _, tc := range []struct {
		name, text, html, typ string
	}{
		{"text only", "just text", "", "text/plain"},
		{"html only", "", "<p>just html</p>", "text/html"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &herald.Envelope{ID: "id-1", From: "a@example.com", Bcc: []string{"hidden@example.com"}, Subject: "Hi", Text: tc.text, HTML: tc.html}
			raw, err := BuildMessage(e, testNow)
			if err != nil {
				t.Fatal(err)
			}
			m := parse(t, raw)
			if ct := m.Header.Get("Content-Type"); ct != tc.typ+"; charset=utf-8" {
				t.Errorf("Content-Type %q, want %s", ct, tc.typ)
			}
			if got := m.Header.Get("To"); got != "undisclosed-recipients:;" {
				t.Errorf("To = %q for a Bcc-only message", got)
			}
			if got := m.Header.Get("Subject"); got != "Hi" {
				t.Errorf("a short ASCII subject was encoded: %q", got)
			}
			body, _ := io.ReadAll(quotedprintable.NewReader(m.Body))
			if string(body) != tc.text+tc.html+"\r\n" {
				t.Errorf("body %q", body)
			}
		})
	}
}

func TestBuildMessageManyRecipientsAndLongSubject(t *testing.T) {
	e := &herald.Envelope{ID: "id-2", From: "a@example.com", Subject: strings.Repeat("x", herald.MaxSubjectBytes), Text: "t"}
	for i := range herald.MaxRecipients {
		e.To = append(e.To, fmt.Sprintf("recipient-number-%02d@a-rather-long-domain-name.example.com", i))
	}
	raw, err := BuildMessage(e, testNow)
	if err != nil {
		t.Fatal(err)
	}
	m := parse(t, raw) // checks every line is within 998 octets
	if got := addresses(t, m.Header, "To"); len(got) != herald.MaxRecipients {
		t.Errorf("%d To addresses, want %d", len(got), herald.MaxRecipients)
	}
	if got := decodeHeader(t, m.Header.Get("Subject")); got != e.Subject {
		t.Errorf("long subject did not survive: %d bytes back", len(got))
	}
	if got := encodeHeaderText(9, "=?utf-8?q?not-an-encoded-word?="); !strings.HasPrefix(got, "=?utf-8?b?") {
		t.Errorf("a subject that looks encoded was left plain: %q", got)
	}
}
