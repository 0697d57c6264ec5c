package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"herald/services/internal/herald/heraldtest"
)

// setVersion serves value as the given version of the secret.
func (f *fakeSecrets) setVersion(value, version string, err error) {
	f.mu.Lock()
	f.value, f.version, f.err = value, version, err
	f.mu.Unlock()
}

// /readyz names the secret version whose keys are in force: the new one
// after a refresh, the last good one while refreshes fail or the new value
// is invalid, none without a secret.
func TestReadyzShowsTheKeySecretVersion(t *testing.T) {
	secrets := &fakeSecrets{}
	secrets.setVersion(secretJSON(hashEntry("a", "hk_a")), "v1", nil)
	cfg := testConfig()
	cfg.KeysSecretID = "herald/api-keys"
	h := newHarness(t, cfg, nil, deps{secrets: secrets})
	ready := func() map[string]string {
		t.Helper()
		rec := h.do(http.MethodGet, "/readyz", nil, "")
		var body map[string]string
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &body) != nil {
			t.Fatalf("/readyz: %d %s", rec.Code, rec.Body)
		}
		return body
	}
	refresh := func() error { return h.srv.keys.refresh(context.Background()) }

	if v, ok := ready()["apiKeysVersion"]; ok {
		t.Errorf("before the first load: apiKeysVersion %q, want none", v)
	}
	steps := []struct {
		name, value, version string
		err                  error
		wantVersion          string
	}{
		{"first load", secretJSON(hashEntry("a", "hk_a")), "v1", nil, "v1"},
		{"changed secret", secretJSON(hashEntry("a", "hk_a"), hashEntry("b", "hk_b")), "v2", nil, "v2"},
		{"invalid value keeps the last good version", `{"b":"not hex"}`, "v3", nil, "v2"},
		{"unreachable keeps it too", "", "", errors.New("connection refused"), "v2"},
		{"a valid one again", secretJSON(hashEntry("b", "hk_b")), "v4", nil, "v4"},
	}
	for _, s := range steps {
		secrets.setVersion(s.value, s.version, s.err)
		err := refresh()
		if (err == nil) != (s.wantVersion == s.version) {
			t.Errorf("%s: refresh error %v", s.name, err)
		}
		if got := ready(); got["apiKeysVersion"] != s.wantVersion || got["status"] != "ready" {
			t.Errorf("%s: /readyz %v, want apiKeysVersion %s", s.name, got, s.wantVersion)
		}
	}

	// Without a secret there is no version to show.
	plain := newHarness(t, testConfig(), nil, deps{})
	rec := plain.do(http.MethodGet, "/readyz", nil, "")
	if strings.Contains(rec.Body.String(), "apiKeysVersion") {
		t.Errorf("no secret configured: /readyz %s", rec.Body)
	}
}

// The refresh loop logs a new version even when the key ids stay the same
// (a rotated key), naming the version and never a hash.
func TestKeyRefreshLogsNewVersion(t *testing.T) {
	secrets := &fakeSecrets{}
	secrets.setVersion(secretJSON(hashEntry("a", "hk_a")), "v1", nil)
	logs := &heraldtest.Buffer{}
	ks := newKeyStore(nil, "herald/api-keys", secrets, slog.New(slog.NewJSONHandler(logs, nil)))
	if err := ks.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ks.run(ctx, time.Millisecond) }()
	t.Cleanup(func() { cancel(); <-done })
	rotated := hashEntry("a", "hk_a2")
	secrets.setVersion(secretJSON(rotated), "v2", nil)
	pollUntil(t, "rotation logged", func() bool { return strings.Contains(logs.String(), `"secretVersion":"v2"`) })
	if _, ok := ks.authenticate("hk_a2"); !ok {
		t.Error("rotated key not in force")
	}
	if strings.Contains(logs.String(), secretJSON(rotated)[6:20]) {
		t.Error("a hash was logged")
	}
}
