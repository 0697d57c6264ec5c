package transport

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"time"
	"unicode/utf8"

	"herald/services/internal/herald"
	"herald/services/mailaddr"
)

// BuildMessage renders an envelope as an RFC 5322 message for SMTP: encoded
// headers folded within line limits, quoted-printable UTF-8 bodies,
// multipart/alternative when there are both a text and an HTML body. Bcc
// recipients get no header: they are only RCPT TO recipients. Lines end in
// CRLF; dot-stuffing is the SMTP client's job.
func BuildMessage(e *herald.Envelope, now time.Time) ([]byte, error) {
	var b bytes.Buffer
	header := func(name, value string) {
		b.WriteString(name)
		b.WriteString(": ")
		b.WriteString(value)
		b.WriteString("\r\n")
	}
	from, err := formatAddresses([]string{e.From})
	if err != nil {
		return nil, fmt.Errorf("from: %w", err)
	}
	header("Date", now.Format(time.RFC1123Z))
	header("From", from)
	if e.ReplyTo != "" {
		replyTo, err := formatAddresses([]string{e.ReplyTo})
		if err != nil {
			return nil, fmt.Errorf("replyTo: %w", err)
		}
		header("Reply-To", replyTo)
	}
	to, err := formatAddresses(e.To)
	if err != nil {
		return nil, fmt.Errorf("to: %w", err)
	}
	cc, err := formatAddresses(e.Cc)
	if err != nil {
		return nil, fmt.Errorf("cc: %w", err)
	}
	switch {
	case to != "":
		header("To", to)
	case cc == "":
		// Only Bcc recipients: RFC 5322 section 3.6.3 suggests an empty group.
		header("To", "undisclosed-recipients:;")
	}
	if cc != "" {
		header("Cc", cc)
	}
	header("Subject", encodeHeaderText(len("Subject: "), e.Subject))
	header("Message-ID", MessageID(e))
	header("MIME-Version", "1.0")

	if e.Text != "" && e.HTML != "" {
		mw := multipart.NewWriter(&b)
		header("Content-Type", `multipart/alternative; boundary="`+mw.Boundary()+`"`)
		b.WriteString("\r\n")
		for _, part := range []struct{ typ, body string }{{"text/plain", e.Text}, {"text/html", e.HTML}} {
			w, err := mw.CreatePart(textproto.MIMEHeader{
				"Content-Type":              {part.typ + "; charset=utf-8"},
				"Content-Transfer-Encoding": {"quoted-printable"},
			})
			if err != nil {
				return nil, err
			}
			if err := writeQP(w, part.body); err != nil {
				return nil, err
			}
		}
		if err := mw.Close(); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	typ, body := "text/plain", e.Text
	if e.Text == "" {
		typ, body = "text/html", e.HTML
	}
	header("Content-Type", typ+"; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	if err := writeQP(&b, body); err != nil {
		return nil, err
	}
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n") // the last line ends like every other
	}
	return b.Bytes(), nil
}

// MessageID is stable across retries of one envelope, so a receiving system
// can recognise a duplicate delivery.
func MessageID(e *herald.Envelope) string {
	domain := "herald.invalid"
	if bare := mailaddr.Bare(e.From); bare != "" {
		domain = bare[strings.LastIndexByte(bare, '@')+1:]
	}
	return "<" + e.ID + "@" + domain + ">"
}

func writeQP(w interface{ Write([]byte) (int, error) }, body string) error {
	qp := quotedprintable.NewWriter(w)
	if _, err := qp.Write([]byte(body)); err != nil {
		return err
	}
	return qp.Close()
}

// formatAddresses renders an address list, one address per folded line so no
// line passes the 998-octet limit however many recipients there are. Display
// names are RFC 2047 encoded by net/mail when they need it.
func formatAddresses(list []string) (string, error) {
	out := make([]string, 0, len(list))
	for _, s := range list {
		a, err := mail.ParseAddress(s)
		if err != nil {
			return "", fmt.Errorf("address %d: %w", len(out), err)
		}
		out = append(out, a.String())
	}
	return strings.Join(out, ",\r\n "), nil
}

// encodeHeaderText returns an unstructured header value (the subject) that
// fits RFC 5322: plain when it is short printable ASCII, otherwise RFC 2047
// base64 encoded-words of at most 75 characters, one per folded line.
// prefix is the length of "Name: " on the first line.
func encodeHeaderText(prefix int, s string) string {
	// "=?" in plain text would read as the start of an encoded-word.
	if prefix+len(s) <= 78 && isPrintableASCII(s) && !strings.Contains(s, "=?") {
		return s
	}
	const (
		open  = "=?utf-8?b?"
		close = "?="
		// 75 characters per encoded-word: 12 of markup leave 63 for base64,
		// which carries 45 bytes (15 groups of 3).
		maxChunk = 45
	)
	var words []string
	for len(s) > 0 {
		n := 0
		for n < len(s) {
			_, size := utf8.DecodeRuneInString(s[n:])
			if n+size > maxChunk {
				break
			}
			n += size
		}
		words = append(words, open+base64.StdEncoding.EncodeToString([]byte(s[:n]))+close)
		s = s[n:]
	}
	return strings.Join(words, "\r\n ")
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
