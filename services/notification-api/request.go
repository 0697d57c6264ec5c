package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"herald/services/internal/herald"
)

// notificationRequest is the body of POST /api/notifications and one item of
// a batch.
type notificationRequest struct {
	To           []string          `json:"to"`
	Cc           []string          `json:"cc"`
	Bcc          []string          `json:"bcc"`
	From         string            `json:"from"`
	ReplyTo      string            `json:"replyTo"`
	Subject      string            `json:"subject"`
	Text         string            `json:"text"`
	HTML         string            `json:"html"`
	DelaySeconds *int64            `json:"delaySeconds"`
	Metadata     map[string]string `json:"metadata"`
}

// batchRequest is the body of POST /api/notifications/batch. Items stay raw
// so that each is decoded, and fails, on its own.
type batchRequest struct {
	Notifications []json.RawMessage `json:"notifications"`
}

// decodeStrict reads exactly one JSON value into v, refusing unknown fields.
// A failure is one FieldError naming the field when there is one ("" for the
// body as a whole).
func decodeStrict(data []byte, v any) *herald.FieldError {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			return &herald.FieldError{Detail: "unexpected data after the JSON object"}
		}
		return nil
	}
	var (
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case errors.Is(err, io.EOF):
		return &herald.FieldError{Detail: "the body is empty; expected a JSON object"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &herald.FieldError{Detail: "the JSON ends early"}
	case errors.As(err, &syntaxErr):
		return &herald.FieldError{Detail: fmt.Sprintf("not valid JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)}
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return &herald.FieldError{Detail: "expected a JSON object"}
		}
		return &herald.FieldError{Field: typeErr.Field, Detail: fmt.Sprintf("%s where %s was expected", typeErr.Value, jsonType(typeErr.Type.String()))}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &herald.FieldError{Field: name, Detail: "unknown field"}
	default:
		return &herald.FieldError{Detail: "not a valid request: " + err.Error()}
	}
}

// jsonType names a Go type of the request in JSON terms.
func jsonType(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case goType == "[]string":
		return "an array of strings"
	case goType == "map[string]string":
		return "an object of string values"
	case goType == "int64":
		return "a whole number"
	case strings.HasPrefix(goType, "[]json.RawMessage"):
		return "an array"
	default:
		return "an object"
	}
}

// prepared is a request turned into a queue message, or the reason it cannot be.
type prepared struct {
	id     string
	msg    message
	status int // 0 when valid, else 400 or 413
	detail string
	errs   herald.FieldErrors
}

// prepare validates one decoded request and encodes its envelope.
func (s *server) prepare(req notificationRequest, keyID string, now time.Time) prepared {
	env := herald.Envelope{
		ID:        herald.NewID(),
		CreatedAt: now.UTC(),
		KeyID:     keyID,
		From:      req.From,
		ReplyTo:   req.ReplyTo,
		To:        req.To,
		Cc:        req.Cc,
		Bcc:       req.Bcc,
		Subject:   req.Subject,
		Text:      req.Text,
		HTML:      req.HTML,
		Metadata:  req.Metadata,
	}
	if env.From == "" {
		env.From = s.cfg.DefaultFrom
	}
	errs := env.Validate()
	if req.From != "" && herald.CheckAddress(req.From) == nil && !s.cfg.fromAllowed(req.From) {
		errs = append(errs, herald.FieldError{Field: "from", Detail: "not an allowed sender address"})
	}
	var delay int64
	if req.DelaySeconds != nil {
		delay = *req.DelaySeconds
		if delay < 0 || delay > int64(herald.MaxDelay/time.Second) {
			errs = append(errs, herald.FieldError{Field: "delaySeconds", Detail: fmt.Sprintf("%d is outside 0..%d", delay, int64(herald.MaxDelay/time.Second))})
		}
	}
	if len(errs) > 0 {
		return prepared{status: http.StatusBadRequest, detail: "the notification is not valid", errs: errs}
	}
	body, err := env.Marshal()
	if err != nil {
		return prepared{status: http.StatusBadRequest, detail: err.Error()}
	}
	body = sqsSafe(body)
	if len(body) > s.cfg.MaxMessageBytes {
		return prepared{status: http.StatusRequestEntityTooLarge,
			detail: fmt.Sprintf("the queued message would be %d bytes; at most %d", len(body), s.cfg.MaxMessageBytes)}
	}
	return prepared{id: env.ID, msg: message{body: string(body), delay: int32(delay)}}
}

// sqsSafe escapes U+FFFE and U+FFFF, the only characters encoding/json writes
// raw that SQS refuses in a message body. They can occur only inside JSON
// strings, where \ufffe and \uffff decode to the same characters.
func sqsSafe(body []byte) []byte {
	if !bytes.Contains(body, []byte("\uFFFE")) && !bytes.Contains(body, []byte("\uFFFF")) {
		return body
	}
	body = bytes.ReplaceAll(body, []byte("\uFFFE"), []byte(`\ufffe`))
	return bytes.ReplaceAll(body, []byte("\uFFFF"), []byte(`\uffff`))
}
