package store

import (
	"bytes"
	"crypto/sha256"
	"testing"
)

// TestIDsAreStable pins ids to values computed once: a derived id must
// stay the same across releases (a client's retry after a deploy carries
// the same id, and the sender sends it once), and a tag must verify the ids
// issued before.
func TestIDsAreStable(t *testing.T) {
	ids, err := NewIDs(bytes.Repeat([]byte("i"), MinSecretBytes), bytes.Repeat([]byte("o"), MinSecretBytes))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ scope, key, want string }{
		{"svc", "key", "65ee8a82-1286-86b6-9fa2-28705d33b3b7"},
		{"billing-7", "0190b3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b", "a76d2413-2b00-86e3-98e3-61964e431579"},
		{"a", `x"\ y`, "0fc55b69-086d-8602-aff8-0e3de00eaa9d"},
	} {
		got, err := ids.Derive(tc.scope, tc.key, sha256.Sum256([]byte("body of "+tc.key)))
		if err != nil || got != tc.want {
			t.Errorf("Derive(%q, %q) = %q, %v; want %q", tc.scope, tc.key, got, err, tc.want)
		}
		if !ids.Owns(tc.scope, tc.want) || ids.Owns(tc.scope+"x", tc.want) {
			t.Errorf("Owns(%q, %q) does not tell its owner", tc.scope, tc.want)
		}
	}
	// An id the second (verifying) secret tagged.
	var b [16]byte
	for i := range b {
		b[i] = byte(i * 17)
	}
	b[6], b[8] = 0x70|b[6]&0x0f, 0x80|b[8]&0x3f
	if id := format(b); id != "00112233-4455-7677-8899-aabbccddeeff" {
		t.Fatalf("format = %s", id)
	}
	tagged := "00112233-4455-7677-8899-aabbcc94d25d" // tag 94d25d under "o"*32 for "svc"
	if !ids.Owns("svc", tagged) || ids.Owns("svx", tagged) {
		t.Errorf("Owns(svc, %s) = false with the second secret", tagged)
	}
}
