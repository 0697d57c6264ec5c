package herald

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
)

// APIKeyPrefix marks Herald API keys, so a leaked one is recognisable in a
// scan.
const APIKeyPrefix = "hk_"

// NewAPIKey mints an API key (APIKeyPrefix and 256 random bits) and its
// SHA-256 in hex, the form the API stores and compares.
func NewAPIKey() (key, sha256Hex string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("random key: %w", err)
	}
	key = APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return key, HashAPIKey(key), nil
}

// HashAPIKey is the SHA-256 of a key in hex.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
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
