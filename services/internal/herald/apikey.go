package herald

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"

	"herald/services/contract"
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

// CheckKeyID keeps API key ids safe to put in logs, metrics, the envelope
// and the store: the contract's rule (contract.CheckKeyID), here for the
// packages that already call it through herald.
func CheckKeyID(id string) error { return contract.CheckKeyID(id) }
