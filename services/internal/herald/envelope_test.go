package herald

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

func validEnvelope() Envelope {
	return Envelope{
		ID:        NewID(),
		CreatedAt: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC),
		From:      "Herald <noreply@herald.test>",
		To:        []string{"alice@example.com"},
		Subject:   "Hello",
		Text:      "Hi <b>there</b> & welcome",
	}
}

func fields(errs FieldErrors) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Field)
	}
	return out
}

func TestValidate(t *testing.T) {
	many := make([]string, MaxRecipients+1)
	for i := range many {
		many[i] = "r@example.com"
	}
	cases := []struct {
		name   string
		mutate func(*Envelope)
		want   []string // fields named, in order; nil means valid
	}{
		{"valid", func(*Envelope) {}, nil},
		{"html only", func(e *Envelope) { e.Text, e.HTML = "", "<p>x</p>" }, nil},
		{"cc only", func(e *Envelope) { e.To, e.Cc = nil, []string{"a@example.com"} }, nil},
		{"exactly the limit", func(e *Envelope) { e.To = many[:MaxRecipients] }, nil},
		{"no recipients", func(e *Envelope) { e.To = nil }, []string{"to"}},
		{"over the limit", func(e *Envelope) { e.To = many[:30]; e.Bcc = many[:21] }, []string{"to"}},
		{"bad address", func(e *Envelope) { e.Cc = []string{"ok@example.com", "not an address"} }, []string{"cc[1]"}},
		{"CR in a display name", func(e *Envelope) { e.To = []string{"\"Eve\r\nBcc: x@evil.test\" <eve@example.com>"} }, []string{"to[0]"}},
		{"no from", func(e *Envelope) { e.From = "" }, []string{"from"}},
		{"bad replyTo", func(e *Envelope) { e.ReplyTo = "x@example.com\nBcc: y@evil.test" }, []string{"replyTo"}},
		{"empty subject", func(e *Envelope) { e.Subject = "  " }, []string{"subject"}},
		{"header injection in subject", func(e *Envelope) { e.Subject = "Hi\r\nBcc: x@evil.test" }, []string{"subject"}},
		{"long subject", func(e *Envelope) { e.Subject = strings.Repeat("s", MaxSubjectBytes+1) }, []string{"subject"}},
		{"no body", func(e *Envelope) { e.Text = "" }, []string{"text"}},
		{"metadata value too long", func(e *Envelope) { e.Metadata = map[string]string{"k": strings.Repeat("v", MaxMetadataValueLen+1)} }, []string{"metadata.k"}},
		{"metadata newline", func(e *Envelope) { e.Metadata = map[string]string{"k": "a\nb"} }, []string{"metadata.k"}},
		{"control character in subject", func(e *Envelope) { e.Subject = "a\x00b" }, []string{"subject"}},
		{"line separator in metadata", func(e *Envelope) { e.Metadata = map[string]string{"k": "a\u2028b"} }, []string{"metadata.k"}},
		{"escape in a metadata key", func(e *Envelope) { e.Metadata = map[string]string{"k\x1b": "v"} }, []string{"metadata.k\x1b"}},
		{"bodies may hold control characters", func(e *Envelope) { e.Text, e.HTML = "a\tb\fc\x00", "<p>\u2028</p>" }, nil},
		{"address in the from name", func(e *Envelope) { e.From = `"security@bank.test" <noreply@herald.test>` }, []string{"from"}},
		{"address in the replyTo name", func(e *Envelope) { e.ReplyTo = `support@bank.test <help@herald.test>` }, []string{"replyTo"}},
		{"a recipient name may hold an @", func(e *Envelope) { e.To = []string{`"alice@home" <alice@example.com>`} }, nil},
		{"several problems", func(e *Envelope) { e.To = nil; e.Subject = ""; e.Text = "" }, []string{"to", "subject", "text"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := validEnvelope()
			tc.mutate(&e)
			got := fields(e.Validate())
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("fields %v, want %v (%v)", got, tc.want, e.Validate())
			}
		})
	}
}

func TestMarshalDecodeRoundTrip(t *testing.T) {
	e := validEnvelope()
	e.HTML = "<p>a & b</p>"
	e.Metadata = map[string]string{"campaign": "welcome"}
	data, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// HTML stays readable on the queue (no \u003c escapes) and the version is set.
	if !strings.Contains(string(data), `"v":1`) || !strings.Contains(string(data), "<p>a & b</p>") {
		t.Fatalf("unexpected encoding: %s", data)
	}
	got, err := DecodeEnvelope(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != e.ID || got.Subject != e.Subject || got.HTML != e.HTML || got.Metadata["campaign"] != "welcome" || !got.CreatedAt.Equal(e.CreatedAt) {
		t.Fatalf("round trip changed the envelope: %+v", got)
	}
}

func TestDecodeRejects(t *testing.T) {
	ok := validEnvelope()
	good, _ := ok.Marshal()
	cases := map[string]string{
		"not json":        `{"v":1,`,
		"no version":      `{"id":"x"}`,
		"future version":  strings.Replace(string(good), `"v":1`, `"v":2`, 1),
		"unknown field":   strings.Replace(string(good), `"v":1`, `"v":1,"priority":"high"`, 1),
		"no id":           strings.Replace(string(good), `"id":"`+ok.ID+`"`, `"id":""`, 1),
		"invalid content": strings.Replace(string(good), `"subject":"Hello"`, `"subject":""`, 1),
		"trailing data":   string(good) + ` {}`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := DecodeEnvelope([]byte(body)); !errors.Is(err, ErrUnreadable) {
				t.Fatalf("err %v, want ErrUnreadable", err)
			}
		})
	}
}

func TestNewID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	prev := ""
	for range 1000 {
		id := NewID()
		if !re.MatchString(id) {
			t.Fatalf("%q is not a UUIDv7", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
		// Time-ordered at millisecond precision.
		if prev != "" && id[:13] < prev[:13] {
			t.Fatalf("id %q sorts before earlier %q", id, prev)
		}
		prev = id
	}
}
