package contract

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestServicesReadTheContract: what ReadAPI and ReadSender look up is what
// the contract says each service reads, no more and no less.
func TestServicesReadTheContract(t *testing.T) {
	readers := map[Service]struct {
		vars map[string]string
		read func(func(string) string) error
	}{
		API: {apiVariables(), func(g func(string) string) error { _, err := ReadAPI(g); return err }},
		Sender: {with(senderVariables(), map[string]string{"HERALD_TRANSPORT": "smtp", "HERALD_SMTP_ADDR": "127.0.0.1:1025"}),
			func(g func(string) string) error { _, err := ReadSender(g); return err }},
	}
	for _, svc := range Services {
		r := readers[svc]
		var looked []string
		err := r.read(func(name string) string {
			if !slices.Contains(looked, name) {
				looked = append(looked, name)
			}
			return r.vars[name]
		})
		if err != nil {
			t.Fatalf("%s: %v", svc, err)
		}
		var want []string
		for _, s := range ReadBy(svc) {
			want = append(want, s.Var().Name)
		}
		slices.Sort(looked)
		slices.Sort(want)
		if !slices.Equal(looked, want) {
			t.Errorf("%s reads %v;\nthe contract says %v", svc, looked, want)
		}
	}
}

// TestSettingsAreWellFormed: every setting has a unique name, readers, a
// meaning, and a default its own parser accepts.
func TestSettingsAreWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Settings() {
		v := s.Var()
		if seen[v.Name] || !(strings.HasPrefix(v.Name, Prefix) || strings.HasPrefix(v.Name, "AWS_")) {
			t.Errorf("%q: a name twice, or neither HERALD_ nor AWS_", v.Name)
		}
		seen[v.Name] = true
		if len(v.ReadBy) == 0 || v.Meaning == "" {
			t.Errorf("%s: no reader or no meaning", v.Name)
		}
		if got, ok := Lookup(v.Name); !ok || got.Var().Name != v.Name {
			t.Errorf("Lookup(%s) = %v, %v", v.Name, got, ok)
		}
		var def string
		switch k := s.(type) {
		case Int:
			def = k.Format(k.Default)
		case Float:
			def = k.Format(k.Default)
		case Duration:
			def = k.Format(k.Default)
		case Enum:
			def = k.Default
		case Addr:
			for _, svc := range v.ReadBy {
				if err := k.Validate(k.Default[svc]); err != nil {
					t.Errorf("%s: default of %s: %v", v.Name, svc, err)
				}
			}
			continue
		case Text:
			if k.Required || k.Default == "" {
				continue
			}
			def = k.Default
		case AllowListSetting:
			continue
		default:
			t.Errorf("%s: unknown kind %T", v.Name, s)
			continue
		}
		if err := s.Validate(def); err != nil {
			t.Errorf("%s: its default %q: %v", v.Name, def, err)
		}
	}
	if len(seen) != len(Settings()) {
		t.Error("a setting listed twice")
	}
	if got := Tunables(API); !slices.Contains(got, "HERALD_MAX_CONNECTIONS") || slices.Contains(got, "HERALD_QUEUE_URL") {
		t.Errorf("API tunables %v", got)
	}
}

func TestNumbers(t *testing.T) {
	d := Duration{Variable: Variable{Name: "D"}, Default: time.Second, Min: 0, Max: time.Hour, WholeSeconds: true}
	for text, want := range map[string]time.Duration{"0": 0, "20s": 20 * time.Second, "1h": time.Hour} {
		if got, err := d.Parse(text); err != nil || got != want {
			t.Errorf("Parse(%q) = %s, %v", text, got, err)
		}
	}
	for text, want := range map[string]string{"1500ms": "D: 1.5s is not a whole number of seconds", "2h": "D: 2h is outside 0 to 1h", "soon": `D: "soon" is not a duration`} {
		if _, err := d.Parse(text); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q): %v, want %q", text, err, want)
		}
	}
	if got := d.Format(10 * time.Minute); got != "600s" {
		t.Errorf("Format = %q", got)
	}
	if got := d.Format(1500 * time.Millisecond); got != "1.5s" {
		t.Errorf("Format = %q", got)
	}
	f := Float{Variable: Variable{Name: "F"}, Min: 0, Max: 10}
	for _, bad := range []string{"NaN", "Inf", "-1", "11", "x"} {
		if _, err := f.Parse(bad); err == nil {
			t.Errorf("Float accepted %q", bad)
		}
	}
	i := Int{Variable: Variable{Name: "I"}, Default: 3, Min: 1, Max: 10}
	r := NewReader(getenvOf(map[string]string{"I": " 7 "}))
	if got := i.Read(r); got != 7 || r.Err() != nil {
		t.Errorf("Read = %d, %v", got, r.Err())
	}
	r = NewReader(getenvOf(nil))
	if got := i.Read(r); got != 3 || !slices.Equal(r.LookedUp(), []string{"I"}) {
		t.Errorf("Read unset = %d, looked up %v", got, r.LookedUp())
	}
}
