package sesgate

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// The account-level suppression list, as SES v2 keeps it and as its API
// reads and changes it (PutSuppressedDestination, GetSuppressedDestination,
// DeleteSuppressedDestination, ListSuppressedDestinations,
// PutAccountSuppressionAttributes, and GetAccount's SuppressionAttributes).
// Addresses compare in lower case.

// Suppressed is one address on the list.
type Suppressed struct {
	EmailAddress string    `json:"emailAddress"`
	Reason       string    `json:"reason"`
	At           time.Time `json:"at"`
	// MessageID and FeedbackID are those of the event that put it there;
	// empty when it was added by PutSuppressedDestination.
	MessageID  string `json:"messageId,omitempty"`
	FeedbackID string `json:"feedbackId,omitempty"`
}

func validReasons(reasons []string) error {
	for _, r := range reasons {
		if r != ReasonBounce && r != ReasonComplaint {
			return fmt.Errorf("sesgate: suppression reason %q is not BOUNCE or COMPLAINT", r)
		}
	}
	return nil
}

func reasonSet(reasons []string) map[string]bool {
	m := map[string]bool{}
	for _, r := range reasons {
		m[r] = true
	}
	return m
}

// Suppress puts an address on the account's list (PutSuppressedDestination).
func (g *Gate) Suppress(address, reason string) error {
	if err := validReasons([]string{reason}); err != nil {
		return err
	}
	if bareAddress(address) == "" {
		return fmt.Errorf("sesgate: %q is not an email address", address)
	}
	g.mu.Lock()
	g.suppressed[strings.ToLower(bareAddress(address))] = Suppressed{EmailAddress: bareAddress(address), Reason: reason, At: time.Now()}
	g.mu.Unlock()
	return nil
}

// SuppressedList is the account's list, by address.
func (g *Gate) SuppressedList() []Suppressed {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Suppressed, 0, len(g.suppressed))
	for _, s := range g.suppressed {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		return strings.ToLower(out[i].EmailAddress) < strings.ToLower(out[j].EmailAddress)
	})
	return out
}

// serveSuppression answers the SES v2 suppression calls; false when the
// request is none of them.
func (g *Gate) serveSuppression(w http.ResponseWriter, r *http.Request) bool {
	const prefix = "/v2/email/suppression/addresses"
	p := r.URL.EscapedPath()
	switch {
	case r.Method == http.MethodPut && p == "/v2/email/account/suppression":
		var in struct{ SuppressedReasons []string }
		if !readJSON(w, r, &in) {
			return true
		}
		if err := validReasons(in.SuppressedReasons); err != nil {
			writeError(w, http.StatusBadRequest, "BadRequestException", err.Error())
			return true
		}
		g.mu.Lock()
		g.accountReasons = append([]string{}, in.SuppressedReasons...)
		g.mu.Unlock()
		writeJSON(w, http.StatusOK, struct{}{})
	case r.Method == http.MethodPut && p == prefix:
		var in struct{ EmailAddress, Reason string }
		if !readJSON(w, r, &in) {
			return true
		}
		if err := g.Suppress(in.EmailAddress, in.Reason); err != nil {
			writeError(w, http.StatusBadRequest, "BadRequestException", err.Error())
			return true
		}
		writeJSON(w, http.StatusOK, struct{}{})
	case r.Method == http.MethodGet && p == prefix:
		filter := reasonSet(r.URL.Query()["Reason"])
		var list []map[string]any
		for _, s := range g.SuppressedList() {
			if len(filter) == 0 || filter[s.Reason] {
				list = append(list, map[string]any{"EmailAddress": s.EmailAddress, "Reason": s.Reason, "LastUpdateTime": epoch(s.At)})
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"SuppressedDestinationSummaries": nonNil(list)})
	case strings.HasPrefix(p, prefix+"/") && (r.Method == http.MethodGet || r.Method == http.MethodDelete):
		addr, err := url.PathUnescape(strings.TrimPrefix(p, prefix+"/"))
		if err != nil {
			writeError(w, http.StatusBadRequest, "BadRequestException", "bad address in the path")
			return true
		}
		key := strings.ToLower(addr)
		g.mu.Lock()
		s, ok := g.suppressed[key]
		if ok && r.Method == http.MethodDelete {
			delete(g.suppressed, key)
		}
		g.mu.Unlock()
		switch {
		case !ok:
			writeError(w, http.StatusNotFound, "NotFoundException", fmt.Sprintf("Email address %s does not exist on your suppression list.", addr))
		case r.Method == http.MethodDelete:
			writeJSON(w, http.StatusOK, struct{}{})
		default:
			attrs := map[string]string{}
			if s.MessageID != "" {
				attrs["MessageId"], attrs["FeedbackId"] = s.MessageID, s.FeedbackID
			}
			writeJSON(w, http.StatusOK, map[string]any{"SuppressedDestination": map[string]any{
				"EmailAddress": s.EmailAddress, "Reason": s.Reason, "LastUpdateTime": epoch(s.At), "Attributes": attrs,
			}})
		}
	default:
		return false
	}
	return true
}

// epoch is a timestamp as restJson1 writes it: seconds, with a fraction.
func epoch(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// readJSON decodes a small request body, answering 400 when it cannot.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "BadRequestException", "The request body is not valid JSON.")
		return false
	}
	return true
}
