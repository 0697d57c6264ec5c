package herald

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

func TestNewAPIKey(t *testing.T) {
	key, hash, err := NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(key))
	if !strings.HasPrefix(key, APIKeyPrefix) || len(key) != len(APIKeyPrefix)+43 || hash != hex.EncodeToString(sum[:]) || HashAPIKey(key) != hash {
		t.Errorf("key %q hash %q", key, hash)
	}
	other, _, _ := NewAPIKey()
	if other == key {
		t.Error("two keys alike")
	}
}
