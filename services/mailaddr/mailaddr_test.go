package mailaddr

import (
	"strings"
	"testing"
)

func TestMask(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.com":         "a***@example.com",
		"Alice <alice@Example.COM>": "a***@example.com",
		"not an address":            "***",
		"":                          "***",
	} {
		if got := Mask(in); got != want {
			t.Errorf("Mask(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestAddressRules is the table of Check, CheckSender and CheckText:
// what SES accepts passes, the rest is refused with a reason.
func TestAddressRules(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	label := long(63)
	cases := []struct {
		addr   string
		sender bool   // check with CheckSender
		want   string // part of the error; "" when accepted
	}{
		{addr: "alice@example.com"},
		{addr: "Alice <alice@example.com>"},
		{addr: `"Alice, Ops" <alice@example.com>`},
		{addr: "<alice@example.com>"},
		{addr: "=?utf-8?q?J=C3=B6rg?= <joerg@example.com>"},
		{addr: "Jörg <joerg@example.com>"},
		{addr: "first.last+tag@mail.example.co.uk"},
		{addr: "o'brien!#$%&*/=?^_`{|}~-@example.com"},
		{addr: "a@xn--bcher-kva.example"},
		{addr: long(64) + "@example.com"},
		{addr: long(64) + "@" + label + "." + label + "." + label + "." + long(57) + ".com", want: "254"},
		{addr: long(65) + "@example.com", want: "local part (before the @) is 65 octets"},
		{addr: long(1000) + "@example.com", want: "1012 octets"},
		{addr: "alice@example.com (Alice)", want: "comment"},
		{addr: "Alice (CEO) <alice@example.com>", want: "comment"},
		{addr: `"Alice (CEO)" <alice@example.com>`},
		{addr: `"john doe"@example.com`, want: "local part"},
		{addr: "alice@[192.0.2.1]", want: "IP-literal"},
		{addr: "alice@192.0.2.1", want: "IP address"},
		{addr: "alice@localhost", want: "two labels"},
		{addr: "alice@bücher.example", want: "Punycode"},
		{addr: "jörg@example.com", want: "local part"},
		{addr: "alice@-example.com", want: "hyphen"},
		{addr: "alice@example..com", want: "not a valid address"},
		{addr: "alice@" + long(64) + ".com", want: "label of 64 octets"},
		{addr: ".alice@example.com", want: "not a valid address"},
		{addr: "<al..ice@example.com>", want: "not a valid address"},
		{addr: "alice@ex_ample.com", want: "not '_'"},
		{addr: "not an address", want: "not a valid address"},
		{addr: "", want: "empty"},
		{addr: "alice@example.com\r\nBcc: x@evil.test", want: "CR or LF"},
		{addr: "\"Eve\x00\" <eve@example.com>", want: "U+0000"},
		{addr: "=?utf-8?q?Eve=0D=0AX?= <eve@example.com>", want: "CR or LF"},
		{addr: "Eve\u2028 <eve@example.com>", want: "U+2028"},
		{addr: "\"Eve\u0085\" <eve@example.com>", want: "U+0085"},
		// Senders: no address or @ in the display name, however written.
		{addr: "Herald <noreply@example.com>", sender: true},
		{addr: `"security@bank.test" <noreply@example.com>`, sender: true, want: "display name must not contain an address"},
		{addr: "=?utf-8?q?security=40bank.test?= <noreply@example.com>", sender: true, want: "display name must not contain"},
		{addr: "security\uFF20bank.test <noreply@example.com>", sender: true, want: "display name must not contain"},
		{addr: `"security@bank.test" <noreply@example.com>`, sender: false},
	}
	for _, c := range cases {
		t.Run(truncate(c.addr, 40), func(t *testing.T) {
			check := Check
			if c.sender {
				check = CheckSender
			}
			err := check(c.addr)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case c.want != "" && err == nil:
				t.Errorf("accepted, want an error with %q", c.want)
			case c.want != "" && !strings.Contains(err.Error(), c.want):
				t.Errorf("error %q, want it to say %q", err, c.want)
			}
		})
	}
}

func TestCheckText(t *testing.T) {
	for _, s := range []string{"Hello", "Grüße 👋🏽", "zero\u200dwidth joiner", "a\uFFFEb"} {
		if err := CheckText(s); err != nil {
			t.Errorf("%q refused: %v", s, err)
		}
	}
	for _, s := range []string{"a\x00b", "esc\x1b[31m", "del\x7f", "vt\v", "ff\f", "tab\t", "nel\u0085", "ls\u2028", "ps\u2029", "cr\r", "lf\n"} {
		if err := CheckText(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestLowerDomain(t *testing.T) {
	for in, want := range map[string]string{
		"Alice@Example.COM":                 "Alice@example.com",
		"Alice <Alice@Example.COM>":         "Alice <Alice@example.com>",
		`"Ops @ HQ" <Ops@Mail.Example.Com>`: `"Ops @ HQ" <Ops@mail.example.com>`,
		"  bob@EXAMPLE.net ":                "bob@example.net",
		"no address":                        "no address",
	} {
		if got := LowerDomain(in); got != want {
			t.Errorf("LowerDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
