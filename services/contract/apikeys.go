package contract

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// The API key secret (HERALD_API_KEYS_SECRET_ID) holds a JSON object of key
// id to the key's SHA-256 in hex: {"<key id>": "<sha256 hex>"}. The stacks
// create it holding EmptyKeySet, the API reads it, herald-ops writes it.
const (
	// EmptyKeySet is the secret's first value: no key at all, so the API
	// starts (and answers 401) before the operator stores keys.
	EmptyKeySet = "{}"
	// KeySetShape describes the secret's value, for descriptions and errors.
	KeySetShape = `JSON {"<key id>": "<sha256 hex>"}`
)

// KeyHash is one API key as the API holds it: its id and the SHA-256 of the
// key. The key itself is never stored.
type KeyHash struct {
	ID   string
	Hash [sha256.Size]byte
}

// CheckKeyID keeps API key ids safe to put in logs, metrics and the
// envelope: 1 to 64 letters, digits, '-', '_' and '.'.
func CheckKeyID(id string) error {
	if id == "" || len(id) > 64 {
		return errors.New("key id must be 1 to 64 characters")
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("key id %q may hold only letters, digits, '-', '_' and '.'", id)
		}
	}
	return nil
}

// ParseKeyHash reads one key id and its SHA-256 in hex.
func ParseKeyHash(id, sha256Hex string) (KeyHash, error) {
	if err := CheckKeyID(id); err != nil {
		return KeyHash{}, err
	}
	b, err := hex.DecodeString(strings.TrimSpace(sha256Hex))
	if err != nil || len(b) != sha256.Size {
		return KeyHash{}, fmt.Errorf("key %q: hash must be %d hex digits (SHA-256)", id, 2*sha256.Size)
	}
	k := KeyHash{ID: id}
	copy(k.Hash[:], b)
	return k, nil
}

// ParseKeyHashes reads HERALD_API_KEY_HASHES: "keyid:sha256hex,...".
func ParseKeyHashes(text string) ([]KeyHash, error) {
	var out []KeyHash
	seen := map[string]bool{}
	for _, item := range strings.Split(text, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, hash, ok := strings.Cut(item, ":")
		if !ok {
			return nil, errors.New("each entry must be keyid:sha256hex")
		}
		k, err := ParseKeyHash(strings.TrimSpace(id), hash)
		if err != nil {
			return nil, err
		}
		if seen[k.ID] {
			return nil, fmt.Errorf("key id %q twice", k.ID)
		}
		seen[k.ID] = true
		out = append(out, k)
	}
	return out, nil
}

// ParseKeySet reads the secret's value, sorted by key id. Whoever writes the
// secret checks with it that the API will take the value.
func ParseKeySet(secret string) ([]KeyHash, error) {
	var m map[string]string
	if err := json.Unmarshal([]byte(secret), &m); err != nil {
		return nil, fmt.Errorf("the secret is not %s: %w", KeySetShape, err)
	}
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]KeyHash, 0, len(m))
	for _, id := range ids {
		k, err := ParseKeyHash(id, m[id])
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}
