package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"herald/services/internal/herald"
	"herald/services/mailaddr"
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
	// IdempotencyKey is a batch item's key (a single notification's comes
	// in the Idempotency-Key header).
	IdempotencyKey *string `json:"idempotencyKey"`
}

// batchRequest is the body of POST /api/notifications/batch. Items stay raw
// so that each is decoded, and fails, on its own; they are checked as JSON
// text (UTF-8, unique names) with the whole body.
type batchRequest struct {
	Notifications []jsontext.Value `json:"notifications"`
}

// Requests are decoded with the JSON v2 semantics of
// github.com/go-json-experiment/json rather than encoding/json: names match
// exactly (encoding/json lets "TO" and "Subject" stand for "to" and
// "subject"), a name may appear once per object (encoding/json keeps the
// last of two "to"), and text must be valid UTF-8 with no lone surrogate
// escape (encoding/json puts U+FFFD in their place). An upstream validator
// therefore reads the same recipients Herald does. The module is the mirror
// of Go's encoding/json/v2, which Go 1.26 offers only under
// GOEXPERIMENT=jsonv2 (a flag every build, test, vet and image would need);
// from Go 1.27 on the module aliases the standard library's, so moving to it
// is a change of import path.
var decodeOptions = json.RejectUnknownMembers(true)

// decodeError is why a body could not be decoded: its status (400, or 415
// for text that is not UTF-8), problem kind and the field it names ("" for
// the body as a whole).
type decodeError struct {
	status int
	kind   string
	field  herald.FieldError
}

func (e *decodeError) problem() problem {
	p := newProblem(e.status, e.kind, e.field.Detail)
	if e.field.Field != "" {
		p.Detail = e.field.Error()
	}
	if e.status == http.StatusBadRequest {
		p.Errors = herald.FieldErrors{e.field}
	}
	return p
}

// reason is the Rejected metric's reason for the error.
func (e *decodeError) reason() string {
	if e.status == http.StatusUnsupportedMediaType {
		return "media"
	}
	return "validation"
}

func malformed(field, format string, args ...any) *decodeError {
	return &decodeError{status: http.StatusBadRequest, kind: "malformed", field: herald.FieldError{Field: field, Detail: fmt.Sprintf(format, args...)}}
}

// notUTF8 answers a body whose bytes are not UTF-8, or nil when they are.
func notUTF8(body []byte) *decodeError {
	if utf8.Valid(body) {
		return nil
	}
	at := 0
	for at < len(body) {
		r, n := utf8.DecodeRune(body[at:])
		if r == utf8.RuneError && n <= 1 {
			break
		}
		at += n
	}
	return &decodeError{status: http.StatusUnsupportedMediaType, kind: "unsupported-media-type",
		field: herald.FieldError{Detail: fmt.Sprintf("the body is not valid UTF-8 (byte %d)", at)}}
}

// decodeStrict reads exactly one JSON value into v: exact names, each at most
// once per object, no unknown name, UTF-8 text.
func decodeStrict(data []byte, v any) *decodeError {
	if e := notUTF8(data); e != nil {
		return e
	}
	err := json.Unmarshal(data, v, decodeOptions)
	if err == nil {
		return nil
	}
	var (
		synErr *jsontext.SyntacticError
		semErr *json.SemanticError
	)
	switch {
	case errors.As(err, &synErr):
		field := fieldName(synErr.JSONPointer)
		switch {
		case len(bytes.TrimSpace(data)) == 0:
			return malformed("", "the body is empty; expected a JSON object")
		case errors.Is(err, jsontext.ErrDuplicateName):
			return malformed(field, "appears more than once; each name may appear once in an object")
		case jsontext.Value(data).IsValid(jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)) &&
			!jsontext.Value(data).IsValid(jsontext.AllowDuplicateNames(true)):
			// Valid bytes, but an escape of a lone surrogate (\ud800),
			// which stands for no character.
			return &decodeError{status: http.StatusUnsupportedMediaType, kind: "unsupported-media-type",
				field: herald.FieldError{Detail: fmt.Sprintf("the text is not UTF-8: %s escapes a lone surrogate, which is no character", cmp.Or(field, "the body"))}}
		case errors.Is(err, io.ErrUnexpectedEOF):
			return malformed("", "the JSON ends early")
		default:
			return malformed("", "not valid JSON at byte %d: %v", synErr.ByteOffset, synErr.Err)
		}
	case errors.As(err, &semErr):
		field := fieldName(semErr.JSONPointer)
		switch {
		case errors.Is(err, json.ErrUnknownName):
			detail := "unknown field"
			if known := knownName(v, semErr.JSONPointer.LastToken()); known != "" {
				detail += fmt.Sprintf("; names are case-sensitive: did you mean %q?", known)
			}
			return &decodeError{status: http.StatusBadRequest, kind: "validation", field: herald.FieldError{Field: field, Detail: detail}}
		case field == "":
			return malformed("", "expected a JSON object, not %s", kindName(semErr.JSONKind))
		default:
			return &decodeError{status: http.StatusBadRequest, kind: "validation",
				field: herald.FieldError{Field: field, Detail: fmt.Sprintf("%s where %s was expected", kindName(semErr.JSONKind), jsonType(semErr.GoType))}}
		}
	default:
		return malformed("", "not a valid request: %v", err)
	}
}

// fieldName turns a JSON pointer into the field names of problem documents:
// /to/0 is to[0], /metadata/k is metadata.k, /notifications/2/to is
// notifications[2].to.
func fieldName(p jsontext.Pointer) string {
	var b strings.Builder
	parent := ""
	for tok := range p.Tokens() {
		switch {
		case arrayFields[parent] && tok != "" && strings.Trim(tok, "0123456789") == "":
			b.WriteString("[" + tok + "]")
		case b.Len() > 0:
			b.WriteString("." + tok)
		default:
			b.WriteString(tok)
		}
		parent = tok
	}
	return b.String()
}

// arrayFields are the request's arrays: a number below one is an index.
var arrayFields = map[string]bool{"to": true, "cc": true, "bcc": true, "notifications": true}

// knownName is the field of v's type that name differs from only in case.
func knownName(v any, name string) string {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return ""
	}
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if tag != "" && tag != name && strings.EqualFold(tag, name) {
			return tag
		}
	}
	return ""
}

// kindName names a JSON kind as a problem detail says it.
func kindName(k jsontext.Kind) string {
	switch k {
	case '"':
		return "a string"
	case '0':
		return "a number"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case '{':
		return "an object"
	case '[':
		return "an array"
	default:
		return "a value"
	}
}

// jsonType names a Go type of the request in JSON terms.
func jsonType(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int64, reflect.Int, reflect.Int32:
		return "a whole number"
	case reflect.Map:
		return "an object of string values"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "an array of strings"
		}
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
	env    herald.Envelope // valid, for withID
}

// prepare validates one decoded request and encodes its envelope with
// notification id id.
func (s *server) prepare(req notificationRequest, keyID, id string, now time.Time) prepared {
	env := herald.Envelope{
		ID:        id,
		CreatedAt: now.UTC(),
		KeyID:     keyID,
		// The domain in lower case: SES compares the sending policy's
		// "*@domain" conditions case-sensitively.
		From:     mailaddr.LowerDomain(req.From),
		ReplyTo:  req.ReplyTo,
		To:       req.To,
		Cc:       req.Cc,
		Bcc:      req.Bcc,
		Subject:  req.Subject,
		Text:     req.Text,
		HTML:     req.HTML,
		Metadata: req.Metadata,
	}
	if env.From == "" {
		env.From = s.cfg.DefaultFrom
	}
	errs := env.Validate()
	if req.From != "" && mailaddr.Check(req.From) == nil && !s.cfg.AllowedFrom.Allows(req.From) {
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
	return s.encode(env, int32(delay))
}

// withID is a valid prepared notification with the id id instead (a keyed
// one's, once Begin derived it), not validated again: the id is not part of
// what is checked. The encoded envelope begins with its version and id, so
// an id of the same length and characters (hex and hyphens, as all ids are)
// is spliced into it, with the bytes Marshal would write; any other is
// encoded again.
func (s *server) withID(p prepared, id string) prepared {
	head := envelopeHead + p.id + `"`
	if len(id) != len(p.id) || !plainID(id) || !strings.HasPrefix(p.msg.body, head) {
		env := p.env
		env.ID = id
		return s.encode(env, p.msg.delay)
	}
	p.env.ID, p.id = id, id
	p.msg.body = envelopeHead + id + p.msg.body[len(envelopeHead)+len(id):]
	return p
}

// envelopeHead is how an encoded envelope begins, up to its id.
var envelopeHead = `{"v":` + strconv.Itoa(herald.EnvelopeVersion) + `,"id":"`

// plainID: only hex digits and hyphens, which JSON writes as they are.
func plainID(id string) bool {
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c == '-') {
			return false
		}
	}
	return true
}

// encode is a valid envelope as the queue's message.
func (s *server) encode(env herald.Envelope, delay int32) prepared {
	body, err := env.Marshal()
	if err != nil {
		return prepared{status: http.StatusBadRequest, detail: err.Error()}
	}
	body = sqsSafe(body)
	if len(body) > s.cfg.MaxMessageBytes {
		return prepared{status: http.StatusRequestEntityTooLarge,
			detail: fmt.Sprintf("the queued message would be %d bytes; at most %d", len(body), s.cfg.MaxMessageBytes)}
	}
	return prepared{id: env.ID, msg: message{body: string(body), delay: delay}, env: env}
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
