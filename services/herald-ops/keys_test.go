package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"herald/services/internal/herald"
)

var (
	hashA = herald.HashAPIKey("hk_a")
	hashB = herald.HashAPIKey("hk_b")
)

func keyEnv(apiURL string) map[string]string {
	return map[string]string{"HERALD_API_KEYS_SECRET_ID": testSecret, "HERALD_API_URL": apiURL}
}

// printedKey is the key herald-ops printed (once).
var printedKey = regexp.MustCompile(`(?m)^    (hk_[A-Za-z0-9_-]{43})$`)

// The three key commands change exactly one entry of the secret's map, as
// a new version; a new key is printed once and its hash stored, never the
// key; each waits until /readyz shows the new version enough times in a row.
func TestKeyCommands(t *testing.T) {
	cases := []struct {
		name    string
		secret  string // "" for a secret without a value
		args    []string
		want    map[string]string // the secret afterwards; "new" marks the printed key's hash
		wantErr string
	}{
		{name: "add", secret: `{"a":"` + hashA + `"}`, args: []string{"keys", "add", "team-b"}, want: map[string]string{"a": hashA, "team-b": "new"}},
		{name: "add to a secret without a value", args: []string{"keys", "add", "first"}, want: map[string]string{"first": "new"}},
		{name: "rotate", secret: `{"a":"` + hashA + `","b":"` + hashB + `"}`, args: []string{"keys", "rotate", "a"}, want: map[string]string{"a": "new", "b": hashB}},
		{name: "revoke", secret: `{"a":"` + hashA + `","b":"` + hashB + `"}`, args: []string{"keys", "revoke", "a"}, want: map[string]string{"b": hashB}},
		{name: "add an existing id", secret: `{"a":"` + hashA + `"}`, args: []string{"keys", "add", "a"}, wantErr: "keys rotate replaces"},
		{name: "rotate a missing id", secret: `{"a":"` + hashA + `"}`, args: []string{"keys", "rotate", "zz"}, wantErr: "not in the secret (have a)"},
		{name: "revoke a missing id", secret: `{}`, args: []string{"keys", "revoke", "zz"}, wantErr: "have none"},
		{name: "bad key id", secret: `{}`, args: []string{"keys", "add", "has space"}, wantErr: "may hold only"},
		{name: "secret not JSON", secret: `hk_oops`, args: []string{"keys", "add", "x"}, wantErr: "a value the API refuses (the secret is not JSON {\"<key id>\": \"<sha256 hex>\"}"},
		{name: "secret with a bad hash", secret: `{"a":"123"}`, args: []string{"keys", "add", "x"}, wantErr: "a value the API refuses (key \"a\": hash must be 64 hex digits"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			secrets := newFakeSecrets(tc.secret)
			// The API answers the old version twice, then the new one.
			_, url := startAPI(t, "v1", "v1", "v2")
			if tc.secret == "" {
				_, url = startAPI(t, "", "v1")
			}
			out, err := runWith(t, &fakeClients{secretsFake: secrets}, keyEnv(url), append(tc.args, "-every", "1ms", "-confirm", "3")...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				if secrets.puts != 0 {
					t.Errorf("%d writes after a refused change", secrets.puts)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			version, value := secrets.current()
			var got map[string]string
			if secrets.puts != 1 || json.Unmarshal([]byte(value), &got) != nil {
				t.Fatalf("%d writes, secret now %q", secrets.puts, value)
			}
			keys := printedKey.FindAllStringSubmatch(out, -1)
			for id, w := range tc.want {
				if w == "new" {
					if len(keys) != 1 || got[id] != herald.HashAPIKey(keys[0][1]) {
						t.Errorf("%s: stored %q, printed keys %v", id, got[id], keys)
					}
					if strings.Count(out, keys[0][1]) != 1 || strings.Contains(value, keys[0][1]) {
						t.Error("the key is printed more than once, or stored")
					}
					continue
				}
				if got[id] != w {
					t.Errorf("%s: %q, want %q", id, got[id], w)
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("secret %v, want the ids of %v", got, tc.want)
			}
			if !strings.Contains(out, "the API uses version "+version+" (3 answers in a row") {
				t.Errorf("no confirmation of version %s:\n%s", version, out)
			}
		})
	}
}

// A write never overwrites a change made since the read, and a wait that
// never sees the new version fails naming what the API still answers.
func TestKeysRefusesLostUpdatesAndTimesOut(t *testing.T) {
	secrets := newFakeSecrets(`{"a":"` + hashA + `"}`)
	secrets.onDescribe = func(f *fakeSecrets) {
		f.add(`{"a":"` + hashA + `","other":"` + hashB + `"}`)
		f.onDescribe = nil
	}
	_, url := startAPI(t, "v1")
	_, err := runWith(t, &fakeClients{secretsFake: secrets}, keyEnv(url), "keys", "add", "b", "-every", "1ms")
	if err == nil || !strings.Contains(err.Error(), "changed while this ran") || secrets.puts != 0 {
		t.Fatalf("concurrent change: %v, %d writes", err, secrets.puts)
	}

	secrets = newFakeSecrets(`{"a":"` + hashA + `"}`)
	_, url = startAPI(t, "v1")
	out, err := runWith(t, &fakeClients{secretsFake: secrets}, keyEnv(url), "keys", "revoke", "a", "-every", "1ms", "-timeout", "50ms")
	if err == nil || !strings.Contains(err.Error(), "still answers version v1") || !strings.Contains(err.Error(), "API key refresh failed") {
		t.Fatalf("timeout: %v\n%s", err, out)
	}
	if secrets.puts != 1 {
		t.Errorf("%d writes, want the change stored before waiting", secrets.puts)
	}

	// -no-wait needs no API URL and does not wait.
	secrets = newFakeSecrets(`{}`)
	out, err = runWith(t, &fakeClients{secretsFake: secrets}, map[string]string{"HERALD_API_KEYS_SECRET_ID": testSecret}, "keys", "add", "c", "-no-wait")
	if err != nil || secrets.puts != 1 || !strings.Contains(out, "not waiting") {
		t.Fatalf("-no-wait: %v\n%s", err, out)
	}
	// Without -no-wait the API URL is required, before anything is written.
	secrets = newFakeSecrets(`{}`)
	_, err = runWith(t, &fakeClients{secretsFake: secrets}, map[string]string{"HERALD_API_KEYS_SECRET_ID": testSecret}, "keys", "add", "c")
	if err == nil || !strings.Contains(err.Error(), "-api-url (or HERALD_API_URL, or output api_url") || secrets.puts != 0 {
		t.Fatalf("no API URL: %v, %d writes", err, secrets.puts)
	}
	// An unknown secret is an error, not an empty one.
	secrets = newFakeSecrets(`{}`)
	secrets.exists = false
	if _, err := runWith(t, &fakeClients{secretsFake: secrets}, keyEnv(url), "keys", "add", "c"); err == nil || !strings.Contains(err.Error(), "read the secret") {
		t.Fatalf("unknown secret: %v", err)
	}
}
