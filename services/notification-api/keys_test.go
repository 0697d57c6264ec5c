package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"herald/services/contract"
	"herald/services/internal/herald/heraldtest"
)

func secretJSON(entries ...keyEntry) string {
	parts := make([]string, len(entries))
	for i, e := range entries {
		parts[i] = fmt.Sprintf("%q:%q", e.ID, hex.EncodeToString(e.Hash[:]))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// fakeSecrets serves one secret string and its VersionId, or an error.
type fakeSecrets struct {
	mu      sync.Mutex
	value   string
	version string
	err     error
	calls   int
}

func (f *fakeSecrets) set(value string, err error) {
	f.mu.Lock()
	f.value, f.err = value, err
	f.mu.Unlock()
}

func (f *fakeSecrets) GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if aws.ToString(in.SecretId) != "herald/api-keys" {
		return nil, fmt.Errorf("no secret %q", aws.ToString(in.SecretId))
	}
	if f.err != nil {
		return nil, f.err
	}
	return &secretsmanager.GetSecretValueOutput{SecretString: aws.String(f.value), VersionId: aws.String(f.version)}, nil
}

func TestAuthenticate(t *testing.T) {
	keys := []keyEntry{hashEntry("a", "hk_alpha"), hashEntry("b", "hk_beta"), hashEntry("c", "hk_gamma")}
	ks := newKeyStore(keys, "", nil, slog.New(slog.DiscardHandler))
	for _, c := range []struct {
		key, id string
		ok      bool
	}{
		{"hk_alpha", "a", true}, {"hk_beta", "b", true}, {"hk_gamma", "c", true},
		{"hk_delta", "", false}, {"", "", false}, {"hk_alph", "", false}, {"hk_alpha ", "", false},
		{hex.EncodeToString(keys[0].Hash[:]), "", false}, // the hash itself is no key
	} {
		t.Run(c.key, func(t *testing.T) {
			id, ok := ks.authenticate(c.key)
			if id != c.id || ok != c.ok {
				t.Errorf("authenticate(%q) = %q, %v; want %q, %v", c.key, id, ok, c.id, c.ok)
			}
		})
	}
}

func TestKeyRefresh(t *testing.T) {
	secrets := &fakeSecrets{value: secretJSON(hashEntry("s1", "hk_s1"))}
	logs := &heraldtest.Buffer{}
	ks := newKeyStore([]keyEntry{hashEntry("env", "hk_env")}, "herald/api-keys", secrets, slog.New(slog.NewJSONHandler(logs, nil)))
	ctx := context.Background()
	valid := func(key string) bool { _, ok := ks.authenticate(key); return ok }

	// At start the secret's keys join the environment's.
	if err := ks.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if !valid("hk_env") || !valid("hk_s1") {
		t.Fatal("keys from environment and secret not both valid")
	}
	// A rotated secret replaces its keys; the environment's stay.
	secrets.set(secretJSON(hashEntry("s2", "hk_s2")), nil)
	if err := ks.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if valid("hk_s1") || !valid("hk_s2") || !valid("hk_env") {
		t.Fatal("rotation not applied")
	}
	// Failures keep the last good set.
	for name, set := range map[string]func(){
		"unreachable":  func() { secrets.set("", errors.New("dial tcp: connection refused")) },
		"not json":     func() { secrets.set("hk_s3", nil) },
		"bad hash":     func() { secrets.set(`{"s3":"xyz"}`, nil) },
		"id collision": func() { secrets.set(secretJSON(hashEntry("env", "hk_other")), nil) },
	} {
		set()
		if err := ks.refresh(ctx); err == nil {
			t.Errorf("%s: refresh succeeded", name)
		}
		if !valid("hk_s2") || !valid("hk_env") || valid("hk_other") {
			t.Errorf("%s: last good keys not kept", name)
		}
	}

	// The periodic loop applies a rotation, and logs a failed refresh.
	loopCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); ks.run(loopCtx, time.Millisecond) }()
	t.Cleanup(func() { cancel(); <-done })
	secrets.set(secretJSON(hashEntry("s4", "hk_s4")), nil)
	pollUntil(t, "rotation applied by the loop", func() bool { return valid("hk_s4") && !valid("hk_s2") })
	secrets.set("", errors.New("throttled"))
	pollUntil(t, "failed refresh logged", func() bool {
		return strings.Contains(logs.String(), "keeping the last good keys")
	})
	if !valid("hk_s4") {
		t.Error("key lost after failed refreshes")
	}
}

func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestKeygen checks that the printed key passes authentication with either
// printed entry, and that the key itself appears only once.
func TestKeygen(t *testing.T) {
	for _, args := range [][]string{{"keygen", "ci-1"}, {"keygen"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out bytes.Buffer
			if err := run(context.Background(), args, func(string) string { return "" }, &out); err != nil {
				t.Fatal(err)
			}
			var key, entry, secret string
			for _, line := range strings.Split(out.String(), "\n") {
				switch {
				case strings.HasPrefix(line, keyPrefix):
					key = line
				case strings.HasPrefix(line, "{"):
					secret = line
				case strings.Count(line, ":") == 1 && !strings.Contains(line, " "):
					entry = line
				}
			}
			if len(key) != len(keyPrefix)+43 || strings.Count(out.String(), key) != 1 {
				t.Fatalf("key %q in output:\n%s", key, out.String())
			}
			fromEnv, err := contract.ParseKeyHashes(entry)
			if err != nil {
				t.Fatalf("entry %q: %v", entry, err)
			}
			fromSecret, err := contract.ParseKeySet(secret)
			if err != nil {
				t.Fatalf("secret %q: %v", secret, err)
			}
			for name, keys := range map[string][]keyEntry{"HERALD_API_KEY_HASHES": fromEnv, "secret": fromSecret} {
				id, ok := newKeyStore(keys, "", nil, slog.New(slog.DiscardHandler)).authenticate(key)
				if !ok || (len(args) == 2 && id != args[1]) || id == "" {
					t.Errorf("%s entry: authenticate = %q, %v", name, id, ok)
				}
			}
		})
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"keygen", "has space"}, nil, &out); err == nil {
		t.Error("bad key id accepted")
	}
	a, _ := newKey()
	b, _ := newKey()
	if a == b {
		t.Error("two keys alike")
	}
}

// TestKeysFromSecretThroughHandler: a key rotated into the secret works at
// the HTTP level after a refresh, and the old one gets 401.
func TestKeysFromSecretThroughHandler(t *testing.T) {
	secrets := &fakeSecrets{value: secretJSON(hashEntry("old", "hk_old"))}
	cfg := testConfig()
	cfg.KeyHashes, cfg.KeysSecretID = nil, "herald/api-keys"
	h := newHarness(t, cfg, nil, deps{secrets: secrets})
	post := func(key string) int {
		return h.do(http.MethodPost, "/api/notifications", map[string]string{"Authorization": "Bearer " + key}, valid(nil)).Code
	}
	if got := post("hk_old"); got != 401 {
		t.Fatalf("before the first load: %d", got)
	}
	if err := h.srv.keys.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := post("hk_old"); got != 202 {
		t.Fatalf("old key: %d", got)
	}
	secrets.set(secretJSON(hashEntry("new", "hk_new")), nil)
	if err := h.srv.keys.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, got2 := post("hk_old"), post("hk_new"); got != 401 || got2 != 202 {
		t.Errorf("after rotation: old %d, new %d", got, got2)
	}
}
