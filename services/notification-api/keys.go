package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"herald/services/contract"
	"herald/services/internal/herald"
)

// keyPrefix marks Herald API keys, so a leaked one is recognisable in a scan.
const keyPrefix = herald.APIKeyPrefix

// keyEntry is one API key as the service holds it: its id and the SHA-256
// of the key (the key itself is never stored), as the contract reads it
// from HERALD_API_KEY_HASHES and from the secret.
type keyEntry = contract.KeyHash

// secretsAPI is the one Secrets Manager call the API makes.
type secretsAPI interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// keyStore authenticates API keys against the hashes from the environment
// (fixed) and from a Secrets Manager secret (read again periodically).
type keyStore struct {
	static   []keyEntry
	secretID string
	secrets  secretsAPI
	log      *slog.Logger
	current  atomic.Pointer[[]keyEntry]
	// version is the secret's VersionId whose keys are in force ("" before
	// the first load): /readyz shows it, so an operator who changed the
	// secret can tell when every task has picked the change up.
	version atomic.Pointer[string]
}

func newKeyStore(static []keyEntry, secretID string, secrets secretsAPI, log *slog.Logger) *keyStore {
	k := &keyStore{static: static, secretID: secretID, secrets: secrets, log: log}
	set := append([]keyEntry(nil), static...)
	k.current.Store(&set)
	return k
}

// authenticate returns the id of the key whose hash matches. It compares the
// hash with every entry in constant time and never stops early, so the time
// taken says nothing about which entry, if any, matched.
func (k *keyStore) authenticate(key string) (string, bool) {
	sum := sha256.Sum256([]byte(key))
	entries := *k.current.Load()
	match := -1
	for i := range entries {
		eq := subtle.ConstantTimeCompare(sum[:], entries[i].Hash[:])
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 {
		return "", false
	}
	return entries[match].ID, true
}

// ids lists the key ids in force, for logs.
func (k *keyStore) ids() []string {
	entries := *k.current.Load()
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.ID
	}
	return out
}

// refresh reads the secret and, when it is valid, replaces the secret's keys.
// On any error the last good set stays in force.
func (k *keyStore) refresh(ctx context.Context) error {
	if k.secretID == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := k.secrets.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(k.secretID)})
	if err != nil {
		return fmt.Errorf("read API keys secret %s: %w", k.secretID, err)
	}
	if out.SecretString == nil {
		return fmt.Errorf("API keys secret %s has no string value", k.secretID)
	}
	fromSecret, err := contract.ParseKeySet(*out.SecretString)
	if err != nil {
		return fmt.Errorf("API keys secret %s: %w", k.secretID, err)
	}
	set := append([]keyEntry(nil), k.static...)
	for _, e := range fromSecret {
		for _, s := range k.static {
			if s.ID == e.ID {
				return fmt.Errorf("API keys secret %s: key id %q is also in %s", k.secretID, e.ID, contract.APIKeyHashes.Name)
			}
		}
		set = append(set, e)
	}
	k.current.Store(&set)
	version := aws.ToString(out.VersionId)
	k.version.Store(&version)
	return nil
}

// secretVersion is the VersionId of the secret value in force, "" when no
// secret was loaded.
func (k *keyStore) secretVersion() string {
	if v := k.version.Load(); v != nil {
		return *v
	}
	return ""
}

// run refreshes every interval until ctx ends; a failed refresh is logged and
// keeps the keys already loaded.
func (k *keyStore) run(ctx context.Context, every time.Duration) {
	if k.secretID == "" {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ids, version := strings.Join(k.ids(), ","), k.secretVersion()
			if err := k.refresh(ctx); err != nil {
				k.log.Warn("API key refresh failed; keeping the last good keys", "err", err)
				continue
			}
			if now := k.ids(); strings.Join(now, ",") != ids || k.secretVersion() != version {
				k.log.Info("API keys changed", "keyIds", now, "secretVersion", k.secretVersion())
			}
		}
	}
}

// newKey mints a 256-bit random API key.
func newKey() (string, error) {
	key, _, err := herald.NewAPIKey()
	return key, err
}

// keygen is the `keygen [key-id]` subcommand: it prints a new key once and
// the entries to store, which hold only its hash.
func keygen(args []string, stdout io.Writer) error {
	if len(args) > 1 {
		return errors.New("usage: notification-api keygen [key-id]")
	}
	var id string
	if len(args) == 1 {
		id = args[0]
	} else {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("random key id: %w", err)
		}
		id = "key-" + hex.EncodeToString(b[:])
	}
	if err := contract.CheckKeyID(id); err != nil {
		return err
	}
	key, err := newKey()
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(key))
	hash := hex.EncodeToString(sum[:])
	secret, _ := json.Marshal(map[string]string{id: hash})
	_, err = fmt.Fprintf(stdout, `API key %s (shown once; give it to the client, Herald keeps only its hash):
%s

Entry for %s (comma-separated list):
%s:%s

Entry for the Secrets Manager secret named by %s (merge into its JSON object):
%s
`, id, key, contract.APIKeyHashes.Name, id, hash, contract.APIKeysSecretID.Name, secret)
	return err
}
