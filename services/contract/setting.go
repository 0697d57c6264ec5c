package contract

import (
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Service is one of Herald's two services, by the name it runs under (its
// binary, container, ECS service and metric dimension Service).
type Service string

const (
	API    Service = "notification-api"
	Sender Service = "email-sender"
)

// Services are both, the API first.
var Services = []Service{API, Sender}

// Source is how a task of a deployed stack gets a setting's value.
type Source int

const (
	// Unset: the stacks never set it; its default holds (or it is for
	// local runs and alternatives the stacks do not use).
	Unset Source = iota
	// Set: the stacks set it as a plain variable of the task definition.
	Set
	// SetSecret: the stacks set it through ECS secrets, from an SSM
	// parameter or a Secrets Manager secret.
	SetSecret
	// Tunable: its default holds unless an environment sets it
	// (ServiceConfig.Tuning in stacks/config.go).
	Tunable
)

// Variable is what every setting declares about its environment variable.
type Variable struct {
	// Name of the environment variable.
	Name string
	// ReadBy are the services that read it.
	ReadBy []Service
	// Source is how a deployed task gets it; When, if not empty, says when
	// the stacks set it (e.g. "with SMTP").
	Source Source
	When   string
	// Meaning is the sentence services/README.md shows for it.
	Meaning string
}

// Var returns the variable's declaration (every setting kind embeds it).
func (v Variable) Var() Variable { return v }

// ReadBy reports whether svc reads the variable.
func (v Variable) Reads(svc Service) bool { return slices.Contains(v.ReadBy, svc) }

func (v Variable) errorf(format string, args ...any) error {
	return fmt.Errorf("%s: %s", v.Name, fmt.Sprintf(format, args...))
}

// Setting is any setting, whatever its kind: what the documentation and the
// stacks' checks need of it.
type Setting interface {
	Var() Variable
	// DefaultText is the default as services/README.md shows it for svc
	// ("required" or "unset" when there is none).
	DefaultText(svc Service) string
	// Values says what values it takes (bounds, choices), "" for any text.
	Values() string
	// Validate parses text as the service would, with the same bounds.
	Validate(text string) error
}

// Reader reads settings from environment variables once, collecting every
// problem so a misconfigured service reports all of them at start, each
// naming its variable. It records the names it looked up.
type Reader struct {
	getenv func(string) string
	errs   []error
	looked []string
}

// NewReader reads through getenv (os.Getenv in main, a map in tests).
func NewReader(getenv func(string) string) *Reader { return &Reader{getenv: getenv} }

// Err is nil when every value read so far was valid.
func (r *Reader) Err() error { return errors.Join(r.errs...) }

// Failf records a problem with a variable that the caller checked itself.
func (r *Reader) Failf(name, format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

func (r *Reader) fail(err error) {
	if err != nil {
		r.errs = append(r.errs, err)
	}
}

// LookedUp are the variable names read so far, each once, in order.
func (r *Reader) LookedUp() []string { return slices.Clone(r.looked) }

// lookup returns the variable's value, trimmed, and whether it is set.
func (r *Reader) lookup(name string) (string, bool) {
	if !slices.Contains(r.looked, name) {
		r.looked = append(r.looked, name)
	}
	v := strings.TrimSpace(r.getenv(name))
	return v, v != ""
}

// Text is a setting whose value is text: a URL, a name, an address.
type Text struct {
	Variable
	Default string
	// Required settings have no default: unset is an error.
	Required bool
	// Secret values are masked in logs.
	Secret bool
	// Check, when set, refuses a value the service cannot use.
	Check func(string) error
}

// Parse checks text with Check.
func (s Text) Parse(text string) (string, error) {
	if s.Check != nil {
		if err := s.Check(text); err != nil {
			return text, s.errorf("%v", err)
		}
	}
	return text, nil
}

// Read returns the value, the default when unset (an error when Required).
func (s Text) Read(r *Reader) string {
	v, ok := r.lookup(s.Name)
	if !ok {
		if s.Required {
			r.Failf(s.Name, "required but not set")
		}
		return s.Default
	}
	v, err := s.Parse(v)
	r.fail(err)
	return v
}

func (s Text) DefaultText(Service) string { return textDefault(s.Default, s.Required) }

func (s Text) Values() string { return "" }

func (s Text) Validate(text string) error {
	if text == "" && s.Required {
		return s.errorf("required but not set")
	}
	_, err := s.Parse(text)
	return err
}

func textDefault(def string, required bool) string {
	switch {
	case required:
		return "required"
	case def == "":
		return "unset"
	default:
		return "`" + def + "`"
	}
}

// Enum is a setting with a few allowed values, compared ignoring case.
type Enum struct {
	Variable
	Default string
	Choices []string
}

// Parse returns the value in lower case, or an error unless it is a choice.
func (s Enum) Parse(text string) (string, error) {
	v := strings.ToLower(text)
	if !slices.Contains(s.Choices, v) {
		return s.Default, s.errorf("%q is not one of %s", text, strings.Join(s.Choices, ", "))
	}
	return v, nil
}

// Check refuses a value that is not one of the choices.
func (s Enum) Check(v string) error { _, err := s.Parse(v); return err }

// Read returns the value, the default when unset.
func (s Enum) Read(r *Reader) string {
	v, ok := r.lookup(s.Name)
	if !ok {
		return s.Default
	}
	v, err := s.Parse(v)
	r.fail(err)
	return v
}

func (s Enum) DefaultText(Service) string { return "`" + s.Default + "`" }

func (s Enum) Values() string {
	quoted := make([]string, len(s.Choices))
	for i, c := range s.Choices {
		quoted[i] = "`" + c + "`"
	}
	return strings.Join(quoted, ", ")
}

func (s Enum) Validate(text string) error { _, err := s.Parse(text); return err }

// Number is a setting that is a whole number, a number or a duration,
// between Min and Max.
type Number[T int | float64 | time.Duration] struct {
	Variable
	Default, Min, Max T
	// WholeSeconds refuses a fraction of a second (SQS counts in seconds);
	// durations only.
	WholeSeconds bool
	// Unit names what an Int or Float counts, for the README ("per second").
	Unit string
}

// Int, Float and Duration are the kinds of Number.
type (
	Int      = Number[int]
	Float    = Number[float64]
	Duration = Number[time.Duration]
)

// Parse reads text as the kind's Go syntax ("20s", "1.5", "32"; a bare "0"
// is a duration too) and checks it.
func (s Number[T]) Parse(text string) (T, error) {
	var v T
	var err error
	switch p := any(&v).(type) {
	case *int:
		*p, err = strconv.Atoi(text)
	case *float64:
		*p, err = strconv.ParseFloat(text, 64)
	case *time.Duration:
		if text == "0" {
			*p = 0
		} else {
			*p, err = time.ParseDuration(text)
		}
	}
	if err != nil {
		return s.Default, s.errorf("%q is not %s", text, kindText[T]())
	}
	if err := s.Check(v); err != nil {
		return s.Default, err
	}
	return v, nil
}

// Check refuses a value outside Min..Max (and a fraction of a second when
// WholeSeconds), naming the variable.
func (s Number[T]) Check(v T) error {
	if f, ok := any(v).(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
		return s.errorf("%s is not a number", s.text(v))
	}
	if v < s.Min || v > s.Max {
		return s.errorf("%s is outside %s", s.text(v), s.Values())
	}
	if d, ok := any(v).(time.Duration); ok && s.WholeSeconds && d%time.Second != 0 {
		return s.errorf("%s is not a whole number of seconds (SQS counts in seconds)", d)
	}
	return nil
}

// Read returns the value, the default when unset.
func (s Number[T]) Read(r *Reader) T {
	v, ok := r.lookup(s.Name)
	if !ok {
		return s.Default
	}
	n, err := s.Parse(v)
	r.fail(err)
	return n
}

// Format is v as a variable's value: durations of whole seconds as seconds
// ("600s", which SQS settings read at a glance), others in Go syntax.
func (s Number[T]) Format(v T) string {
	switch x := any(v).(type) {
	case int:
		return strconv.Itoa(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case time.Duration:
		if x%time.Second == 0 && x != 0 {
			return strconv.FormatInt(int64(x/time.Second), 10) + "s"
		}
		return x.String()
	}
	return fmt.Sprint(v)
}

func (s Number[T]) DefaultText(Service) string { return "`" + s.text(s.Default) + "`" }

func (s Number[T]) Values() string {
	out := s.text(s.Min) + " to " + s.text(s.Max)
	if s.Unit != "" {
		out += " " + s.Unit
	}
	if s.WholeSeconds {
		out += ", whole seconds"
	}
	return out
}

func (s Number[T]) Validate(text string) error { _, err := s.Parse(text); return err }

// text is v as a reader writes it: durations in Go syntax without zero
// units ("12h", "1h30m", "2ms"), numbers as Format writes them.
func (s Number[T]) text(v T) string {
	d, ok := any(v).(time.Duration)
	if !ok {
		return s.Format(v)
	}
	if d == 0 {
		return "0"
	}
	out := d.String()
	if strings.HasSuffix(out, "m0s") {
		out = strings.TrimSuffix(out, "0s")
	}
	if strings.HasSuffix(out, "h0m") {
		out = strings.TrimSuffix(out, "0m")
	}
	return out
}

func kindText[T int | float64 | time.Duration]() string {
	var zero T
	switch any(zero).(type) {
	case int:
		return "a whole number"
	case float64:
		return "a number"
	default:
		return "a duration such as 500ms, 20s or 5m"
	}
}

// Addr is a host:port listen address, whose default differs by service.
type Addr struct {
	Variable
	Default map[Service]string
}

// Parse checks host:port with a port of 0 to 65535.
func (s Addr) Parse(text string) (string, error) {
	_, port, err := net.SplitHostPort(text)
	if err != nil {
		return text, s.errorf("%q is not host:port: %v", text, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return text, s.errorf("%q has no valid port", text)
	}
	return text, nil
}

// Read returns the value, svc's default when unset.
func (s Addr) Read(r *Reader, svc Service) string {
	v, ok := r.lookup(s.Name)
	if !ok {
		return s.Default[svc]
	}
	v, err := s.Parse(v)
	r.fail(err)
	return v
}

func (s Addr) DefaultText(svc Service) string { return "`" + s.Default[svc] + "`" }

func (s Addr) Values() string { return "host:port" }

func (s Addr) Validate(text string) error { _, err := s.Parse(text); return err }
