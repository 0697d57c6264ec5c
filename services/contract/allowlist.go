package contract

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"herald/services/mailaddr"
)

// AllowList is the senders a notification may use as from: bare addresses,
// compared ignoring case, and "@domain" entries, which allow every address
// of exactly that domain (not its subdomains). Entries are kept in lower
// case. The zero AllowList allows nothing.
type AllowList struct {
	entries []string
}

// ParseAllowEntry turns one entry ("alerts@example.org", "@Example.org",
// "Alerts <alerts@example.org>") into its form in the list: the bare
// address or "@domain", in lower case.
func ParseAllowEntry(item string) (string, error) {
	item = strings.TrimSpace(item)
	if domain, ok := strings.CutPrefix(item, "@"); ok {
		if err := mailaddr.CheckDomain(domain); err != nil {
			return "", fmt.Errorf("%q is not @domain: %v", item, err)
		}
		return "@" + strings.ToLower(domain), nil
	}
	if err := mailaddr.Check(item); err != nil {
		return "", fmt.Errorf("%q: %v", item, err)
	}
	return strings.ToLower(mailaddr.Bare(item)), nil
}

// ParseAllowList reads a comma-separated list, skipping empty items.
func ParseAllowList(text string) (AllowList, error) {
	var a AllowList
	var errs []error
	for _, item := range strings.Split(text, ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		entry, err := ParseAllowEntry(item)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		a = a.with(entry)
	}
	return a, errors.Join(errs...)
}

func (a AllowList) with(entry string) AllowList {
	if slices.Contains(a.entries, entry) {
		return a
	}
	return AllowList{entries: append(slices.Clone(a.entries), entry)}
}

// With returns the list with one more entry (as ParseAllowEntry reads it),
// first: the API adds its default sender this way.
func (a AllowList) With(item string) (AllowList, error) {
	entry, err := ParseAllowEntry(item)
	if err != nil {
		return a, err
	}
	if slices.Contains(a.entries, entry) {
		return a, nil
	}
	return AllowList{entries: append([]string{entry}, a.entries...)}, nil
}

// Entries are the list's entries, in order.
func (a AllowList) Entries() []string { return slices.Clone(a.entries) }

// Empty reports whether the list allows nothing.
func (a AllowList) Empty() bool { return len(a.entries) == 0 }

// String is the list as the variable's value.
func (a AllowList) String() string { return strings.Join(a.entries, ",") }

// Allows reports whether a (possibly named) sender address is on the list.
func (a AllowList) Allows(from string) bool {
	bare := strings.ToLower(mailaddr.Bare(from))
	if bare == "" {
		return false
	}
	domain := bare[strings.LastIndexByte(bare, '@')+1:]
	for _, e := range a.entries {
		if e == bare || (strings.HasPrefix(e, "@") && e[1:] == domain) {
			return true
		}
	}
	return false
}

// Masked is the list as logs show it: domains as they are, addresses masked.
func (a AllowList) Masked() []string {
	out := make([]string, len(a.entries))
	for i, e := range a.entries {
		if strings.HasPrefix(e, "@") {
			out[i] = e
		} else {
			out[i] = mailaddr.Mask(e)
		}
	}
	return out
}

// AllowListSetting is a setting whose value is an AllowList.
type AllowListSetting struct {
	Variable
}

// Parse reads the list, naming the variable in an error.
func (s AllowListSetting) Parse(text string) (AllowList, error) {
	a, err := ParseAllowList(text)
	if err != nil {
		return a, s.errorf("%v", err)
	}
	return a, nil
}

// Read returns the list, empty when unset.
func (s AllowListSetting) Read(r *Reader) AllowList {
	v, _ := r.lookup(s.Name)
	a, err := s.Parse(v)
	r.fail(err)
	return a
}

// Format is the list as the variable's value, each entry checked.
func (s AllowListSetting) Format(items []string) (string, error) {
	a, err := s.Parse(strings.Join(items, ","))
	return a.String(), err
}

func (s AllowListSetting) DefaultText(svc Service) string {
	if svc == API {
		return "the default sender"
	}
	return "required"
}

func (s AllowListSetting) Values() string { return "addresses and `@domain`, comma-separated" }

func (s AllowListSetting) Validate(text string) error { _, err := s.Parse(text); return err }
