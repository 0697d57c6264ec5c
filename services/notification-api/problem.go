package main

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"time"

	"herald/services/internal/herald"
)

// problemTypeBase prefixes the RFC 9457 problem types. They are identifiers,
// not links: clients compare them, they do not fetch them.
const problemTypeBase = "urn:herald:problem:"

// problem is an RFC 9457 problem document. Errors names each bad field of a
// validation failure.
type problem struct {
	Type   string             `json:"type"`
	Title  string             `json:"title"`
	Status int                `json:"status"`
	Detail string             `json:"detail,omitempty"`
	Errors herald.FieldErrors `json:"errors,omitempty"`
}

// Problem types, with the status each is sent with.
var problemTitles = map[string]string{
	"validation":             "The notification is not valid",
	"malformed":              "The request body is not valid JSON for this endpoint",
	"unauthorized":           "A valid API key is required",
	"not-found":              "No such endpoint",
	"method-not-allowed":     "Method not allowed",
	"too-large":              "The request or message is too large",
	"unsupported-media-type": "The body must be JSON in UTF-8",
	"rate-limited":           "Too many notifications for this API key",
	"unavailable":            "The queue is unavailable",
	"queue-error":            "The queue refused the message",
	"internal":               "Internal error",
	// Idempotency-Key and status (the state store).
	"idempotency-key-reused":    "The Idempotency-Key was used with another request",
	"idempotency-key-in-flight": "A request with this Idempotency-Key is in progress",
	"store-unavailable":         "The state store is unavailable",
	"no-store":                  "This API runs without a state store",
	"notification-not-found":    "No such notification",
}

func newProblem(status int, kind, detail string) problem {
	return problem{Type: problemTypeBase + kind, Title: problemTitles[kind], Status: status, Detail: detail}
}

func writeProblem(w http.ResponseWriter, p problem) {
	writeJSON(w, "application/problem+json", p.Status, p)
}

func writeJSON(w http.ResponseWriter, contentType string, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only the reply structs of this package are encoded: cannot happen.
		http.Error(w, `{"status":500}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// writeRaw writes a JSON body that is already encoded.
func writeRaw(w http.ResponseWriter, contentType string, status int, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// setRetryAfter writes Retry-After in whole seconds, at least one.
func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	secs := int(math.Ceil(d.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(max(1, secs)))
}
