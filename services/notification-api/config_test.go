package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"
)

func baseEnv() map[string]string {
	return map[string]string{
		"AWS_REGION":            "eu-west-1",
		"HERALD_QUEUE_URL":      "https://sqs.eu-west-1.amazonaws.com/123456789012/herald",
		"HERALD_DEFAULT_FROM":   "Herald <noreply@herald.test>",
		"HERALD_API_KEY_HASHES": "dev:" + hex.EncodeToString(make([]byte, 32)),
	}
}

func getenvOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestReadConfigDefaults(t *testing.T) {
	cfg, err := readConfig(getenvOf(baseEnv()))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != ":8080" || cfg.MaxMessageBytes != 262144 || cfg.RateLimit != 100 || cfg.RateBurst != 200 ||
		cfg.BatchLinger != 2*time.Millisecond || cfg.ReadyCache != 5*time.Second || cfg.KeysRefresh != 5*time.Minute ||
		cfg.ShutdownTimeout != 25*time.Second || cfg.Env != "local" {
		t.Errorf("defaults: %+v", cfg)
	}
	if !slices.Equal(cfg.AllowedFrom, []string{"noreply@herald.test"}) {
		t.Errorf("allowed senders %v, want the default sender only", cfg.AllowedFrom)
	}
}

func TestReadConfigErrorsNameTheVariable(t *testing.T) {
	for _, c := range []struct {
		name string
		set  map[string]string // "" deletes
		want []string
	}{
		{"region", map[string]string{"AWS_REGION": ""}, []string{"AWS_REGION"}},
		{"queue", map[string]string{"HERALD_QUEUE_URL": ""}, []string{"HERALD_QUEUE_URL"}},
		{"default sender missing", map[string]string{"HERALD_DEFAULT_FROM": ""}, []string{"HERALD_DEFAULT_FROM"}},
		{"default sender bad", map[string]string{"HERALD_DEFAULT_FROM": "nobody"}, []string{"HERALD_DEFAULT_FROM"}},
		{"allowed sender bad", map[string]string{"HERALD_ALLOWED_FROM": "a@b.c,@"}, []string{"HERALD_ALLOWED_FROM"}},
		{"no keys", map[string]string{"HERALD_API_KEY_HASHES": ""}, []string{"HERALD_API_KEY_HASHES", "HERALD_API_KEYS_SECRET_ID"}},
		{"bad keys", map[string]string{"HERALD_API_KEY_HASHES": "dev:00"}, []string{"HERALD_API_KEY_HASHES"}},
		{"refresh", map[string]string{"HERALD_API_KEYS_REFRESH": "1s"}, []string{"HERALD_API_KEYS_REFRESH"}},
		{"max bytes", map[string]string{"HERALD_MAX_MESSAGE_BYTES": "big"}, []string{"HERALD_MAX_MESSAGE_BYTES"}},
		{"rate", map[string]string{"HERALD_RATE_LIMIT": "-1"}, []string{"HERALD_RATE_LIMIT"}},
		{"burst", map[string]string{"HERALD_RATE_BURST": "0"}, []string{"HERALD_RATE_BURST"}},
		{"linger", map[string]string{"HERALD_BATCH_LINGER": "2"}, []string{"HERALD_BATCH_LINGER"}},
		{"linger too long", map[string]string{"HERALD_BATCH_LINGER": "1s"}, []string{"HERALD_BATCH_LINGER"}},
		{"ready cache", map[string]string{"HERALD_READY_CACHE": "soon"}, []string{"HERALD_READY_CACHE"}},
		{"addr", map[string]string{"HERALD_HTTP_ADDR": "8080"}, []string{"HERALD_HTTP_ADDR"}},
		{"several at once", map[string]string{"AWS_REGION": "", "HERALD_RATE_BURST": "x"}, []string{"AWS_REGION", "HERALD_RATE_BURST"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := baseEnv()
			for k, v := range c.set {
				if v == "" {
					delete(env, k)
				} else {
					env[k] = v
				}
			}
			_, err := readConfig(getenvOf(env))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
}

func TestSecretAloneIsAKeySource(t *testing.T) {
	env := baseEnv()
	delete(env, "HERALD_API_KEY_HASHES")
	env["HERALD_API_KEYS_SECRET_ID"] = "herald/api-keys"
	cfg, err := readConfig(getenvOf(env))
	if err != nil || cfg.KeysSecretID != "herald/api-keys" {
		t.Fatalf("%v %+v", err, cfg)
	}
}

func TestFromAllowed(t *testing.T) {
	env := baseEnv()
	env["HERALD_ALLOWED_FROM"] = "Alerts@Example.org, @Mail.Herald.Test"
	cfg, err := readConfig(getenvOf(env))
	if err != nil {
		t.Fatal(err)
	}
	for from, want := range map[string]bool{
		"noreply@herald.test":             true, // the default sender, always
		"Herald <NOREPLY@herald.TEST>":    true,
		"alerts@example.org":              true,
		"x@mail.herald.test":              true,
		"Shop <shop@MAIL.herald.test>":    true,
		"x@sub.mail.herald.test":          false,
		"x@herald.test":                   false,
		"alerts@example.org.evil.example": false,
		"not an address":                  false,
	} {
		if got := cfg.fromAllowed(from); got != want {
			t.Errorf("fromAllowed(%q) = %v, want %v", from, got, want)
		}
	}
}

func TestRunConfigErrorsAndLogValue(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), nil, getenvOf(map[string]string{}), &out)
	if err == nil || !strings.Contains(err.Error(), "AWS_REGION") || !strings.Contains(err.Error(), "HERALD_DEFAULT_FROM") {
		t.Errorf("run with no configuration: %v", err)
	}
	if err := run(context.Background(), []string{"serve"}, getenvOf(baseEnv()), &out); err == nil {
		t.Error("unknown subcommand accepted")
	}
	cfg, _ := readConfig(getenvOf(baseEnv()))
	logged := cfg.logValue().String()
	if strings.Contains(logged, "noreply@herald.test") || strings.Contains(logged, hex.EncodeToString(make([]byte, 32))) ||
		!strings.Contains(logged, "dev") {
		t.Errorf("logged configuration shows an address or a hash, or misses the key id: %s", logged)
	}
}
