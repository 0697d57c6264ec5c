// Package mailaddr holds Herald's rules for email addresses, as SES accepts
// them: what the API checks, what the allow-list compares, how logs mask an
// address. It imports nothing of Herald, so the stacks can use the same
// rules through services/contract.
package mailaddr

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"unicode"
)

// Address limits: RFC 5321's, which SES enforces.
const (
	// MaxLocalPart is the longest local part (before the @), in octets.
	MaxLocalPart = 64
	// MaxDomain is the longest domain, in octets (255 on the wire, 253 as text).
	MaxDomain = 253
	// MaxAddress is the longest addr-spec: a 256-octet path less its < and >.
	MaxAddress = 254
	// maxLabel is the longest label of a domain.
	maxLabel = 63
)

// Check accepts one address as SES accepts it: `local@domain` or
// `Display Name <local@domain>`, where
//
//   - the local part is 1 to 64 ASCII characters of a dot-atom: letters,
//     digits and !#$%&'*+-/=?^_`{|}~, dots only between them (no quoted local
//     part, no comment, no space);
//   - the domain is a host name of at least two labels of letters, digits
//     and hyphens (1 to 63 each, no hyphen at either end), at most 253
//     octets, the last label not all digits: no IP address or [IP literal],
//     a non-ASCII domain only in Punycode (xn--...);
//   - the whole local@domain is at most 254 octets;
//   - the display name, quoted or not, may use RFC 2047 encoded words and
//     holds no comment (parentheses outside quotes) and, once decoded, no
//     control character (CheckText).
//
// SES takes addresses as 7-bit ASCII without SMTPUTF8, and Herald refuses
// what it could not send rather than dead-letter it later.
func Check(addr string) error {
	_, err := parseAddress(addr)
	return err
}

// CheckSender is Check for from and replyTo, whose display name a
// reader takes for the sender: it must not hold an address or an @ (nor the
// full-width ＠ or small ﹫), which would pose as another sender next to an
// address the allow-list permits.
func CheckSender(addr string) error {
	a, err := parseAddress(addr)
	if err != nil {
		return err
	}
	if strings.ContainsAny(a.Name, "@\uFF20\uFE6B") {
		return errors.New("the display name must not contain an address or an @: it would pose as another sender")
	}
	return nil
}

// CheckText accepts a header value or metadata string: no control character
// (U+0000 to U+001F, U+007F to U+009F, tab included) and no line or
// paragraph separator (U+2028, U+2029). CR and LF, which would inject
// headers, are named as such.
func CheckText(s string) error {
	for _, r := range s {
		switch {
		case r == '\r' || r == '\n':
			return errors.New("must not contain CR or LF")
		case unicode.Is(unicode.Cc, r) || r == '\u2028' || r == '\u2029':
			return fmt.Errorf("must not contain the control character %U", r)
		}
	}
	return nil
}

// parseAddress applies Check's rules and returns the parsed address.
func parseAddress(addr string) (*mail.Address, error) {
	if err := CheckText(addr); err != nil {
		return nil, err
	}
	s := strings.TrimSpace(addr)
	if s == "" {
		return nil, errors.New("empty address")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, fmt.Errorf("not a valid address: %w", err)
	}
	// net/mail is more lenient than SES: it takes comments, quoted local
	// parts and IP literals. The address must have one of the two plain
	// shapes, and its addr-spec must be what net/mail read.
	spec := s
	if strings.HasSuffix(s, ">") {
		open := strings.LastIndexByte(s, '<')
		if open < 0 {
			return nil, errors.New("not a valid address: no < before >")
		}
		if hasComment(s[:open]) {
			return nil, errors.New("the display name must not hold a comment (parentheses outside quotes); quote it")
		}
		spec = strings.TrimSpace(s[open+1 : len(s)-1])
	}
	if err := checkAddrSpec(spec); err != nil {
		return nil, err
	}
	if a.Address != spec {
		return nil, fmt.Errorf("not a plain address: %q reads as %q", spec, a.Address)
	}
	if err := CheckText(a.Name); err != nil {
		return nil, fmt.Errorf("display name: %w", err)
	}
	return a, nil
}

// hasComment reports a parenthesis outside a quoted string.
func hasComment(phrase string) bool {
	quoted := false
	for i := 0; i < len(phrase); i++ {
		switch c := phrase[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case (c == '(' || c == ')') && !quoted:
			return true
		}
	}
	return false
}

// checkAddrSpec checks local@domain against the rules of Check.
func checkAddrSpec(spec string) error {
	if strings.ContainsAny(spec, "()") {
		return errors.New("a comment (in parentheses) is not accepted; give a name as Name <local@domain>")
	}
	if len(spec) > MaxAddress {
		return fmt.Errorf("the address is %d octets; at most %d", len(spec), MaxAddress)
	}
	at := strings.LastIndexByte(spec, '@')
	if at < 0 {
		return errors.New("not a valid address: no @")
	}
	local, domain := spec[:at], spec[at+1:]
	switch {
	case local == "":
		return errors.New("the local part (before the @) is empty")
	case len(local) > MaxLocalPart:
		return fmt.Errorf("the local part (before the @) is %d octets; at most %d", len(local), MaxLocalPart)
	}
	// net/mail has checked the dots of a dot-atom; quoted local parts it
	// accepts end here.
	for _, r := range local {
		if !isAtext(r) && r != '.' {
			return fmt.Errorf("the local part (before the @) must not contain %q: plain ASCII letters, digits and !#$%%&'*+-/=?^_`{|}~ only (no quotes, spaces or comments)", r)
		}
	}
	return CheckDomain(domain)
}

func isAtext(r rune) bool {
	return r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r))
}

// CheckDomain accepts a host name as Check accepts an address's domain.
func CheckDomain(domain string) error {
	switch {
	case domain == "":
		return errors.New("the domain (after the @) is empty")
	case strings.HasPrefix(domain, "["):
		return errors.New("an IP-literal domain ([...]) is not accepted; use a host name")
	case len(domain) > MaxDomain:
		return fmt.Errorf("the domain is %d octets; at most %d", len(domain), MaxDomain)
	}
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return fmt.Errorf("the domain %q needs at least two labels (a name and a top-level domain)", domain)
	}
	for _, l := range labels {
		if l == "" || len(l) > maxLabel {
			return fmt.Errorf("the domain %q has a label of %d octets; each must be 1 to %d", domain, len(l), maxLabel)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("the domain %q has a label starting or ending with a hyphen", domain)
		}
		for _, r := range l {
			switch {
			case r >= 0x80:
				return fmt.Errorf("the domain %q is not ASCII: give it in Punycode (xn--...)", domain)
			case !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-'):
				return fmt.Errorf("the domain %q must hold only letters, digits, hyphens and dots, not %q", domain, r)
			}
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return fmt.Errorf("the domain %q is an IP address; use a host name", domain)
	}
	return nil
}

// Bare returns the addr-spec of a (possibly named) address, lower-cased in
// its domain, or "" when it does not parse.
func Bare(addr string) string {
	a, err := mail.ParseAddress(addr)
	if err != nil {
		return ""
	}
	at := strings.LastIndexByte(a.Address, '@')
	if at < 0 {
		return a.Address
	}
	return a.Address[:at] + "@" + strings.ToLower(a.Address[at+1:])
}

// LowerDomain returns addr, as written (display name, local part), with its
// domain in lower case; addr as given when it does not parse. Domains
// compare case-insensitively, but SES compares an IAM condition such as
// ses:FromAddress "*@example.com" case-sensitively: a sender queued as
// alice@Example.COM would be refused by a policy that allows example.com.
func LowerDomain(addr string) string {
	s := strings.TrimSpace(addr)
	spec, lo := s, 0
	if strings.HasSuffix(s, ">") {
		open := strings.LastIndexByte(s, '<')
		if open < 0 {
			return addr
		}
		spec, lo = s[open+1:len(s)-1], open+1
	}
	at := strings.LastIndexByte(spec, '@')
	if at < 0 {
		return addr
	}
	start := lo + at + 1
	end := lo + len(spec)
	return s[:start] + strings.ToLower(s[start:end]) + s[end:]
}

// Mask keeps what helps an operator (the first character of the local part
// and the domain) and hides the rest: "alice@example.com" -> "a***@example.com".
func Mask(addr string) string {
	bare := Bare(addr)
	if bare == "" {
		return "***"
	}
	at := strings.LastIndexByte(bare, '@')
	if at <= 0 {
		return "***"
	}
	return bare[:1] + "***" + bare[at:]
}
