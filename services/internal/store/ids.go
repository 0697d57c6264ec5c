package store

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"sync"
	"time"

	"herald/services/internal/herald"
)

// Notification ids are RFC 9562 UUIDs whose last 24 bits are a tag: an
// HMAC-SHA256, under a server-side secret, of the API key id and the other
// 104 bits. So the API can tell from an id alone that it issued it to this
// API key, without a request to the table: GET answers `queued` for its own
// id that the sender has not recorded yet, and 404 for another key's id or
// a made-up one (a guess passes with probability 2^-24, and then finds the
// record of another key, if any, refused by its owner).
//
//   - IDs.New: a version 7 UUID (herald.NewID's: 48-bit millisecond time,
//     then 50 random bits and the tag), for a notification without an Idempotency-Key.
//     Ids sort by acceptance, as herald.NewID's do; 50 random bits keep a
//     collision within one key and millisecond at p ~ n^2/2^51.
//   - IDs.Derive: a version 8 UUID from an HMAC of (API key id,
//     Idempotency-Key, body hash), so a retry of the same request carries
//     the same id and the sender deduplicates it. The body hash is in it so
//     that a key reused with another body after its record expired
//     (IdempotencyTTL) is a new notification, not one the sender would skip
//     as already sent.
const (
	tagBytes = 3
	// MinSecretBytes is the shortest secret NewIDs takes.
	MinSecretBytes = 32
)

// IDs mints and checks notification ids with the server's id secrets.
type IDs struct {
	secrets [][]byte
	macs    []sync.Pool // of *idMAC, one pool per secret
}

// idMAC is a keyed HMAC-SHA256 and a buffer for its input, reused: a new
// HMAC and the formatting of its input cost two dozen allocations per id.
type idMAC struct {
	h   hash.Hash
	buf []byte
}

// mac gives a reset HMAC keyed with secret i; hand it back with
// x.macs[i].Put.
func (x *IDs) mac(i int) *idMAC {
	if m, ok := x.macs[i].Get().(*idMAC); ok {
		m.h.Reset()
		return m
	}
	return &idMAC{h: hmac.New(sha256.New, x.secrets[i]), buf: make([]byte, 0, 128)}
}

// sum is the HMAC of m.buf.
func (m *idMAC) sum() []byte {
	m.h.Write(m.buf)
	m.buf = m.h.Sum(m.buf[:0])
	return m.buf
}

// NewIDs takes the id secrets, each at least MinSecretBytes long: the first
// mints, all verify, so a rotation adds the new secret in front and drops
// the old one after StatusTTL.
func NewIDs(secrets ...[]byte) (*IDs, error) {
	if len(secrets) == 0 {
		return nil, errors.New("store: at least one id secret is required")
	}
	ids := &IDs{}
	for i, s := range secrets {
		if len(s) < MinSecretBytes {
			return nil, fmt.Errorf("store: id secret %d is %d bytes, fewer than %d", i, len(s), MinSecretBytes)
		}
		ids.secrets = append(ids.secrets, append([]byte(nil), s...))
	}
	ids.macs = make([]sync.Pool, len(ids.secrets))
	return ids, nil
}

// New mints the id of a notification without an Idempotency-Key, issued to
// the API key scope now: herald.NewID's UUIDv7, its last bits the tag.
func (x *IDs) New(scope string) (string, error) {
	if err := herald.CheckKeyID(scope); err != nil {
		return "", fmt.Errorf("store: API key id: %w", err)
	}
	b, ok := parse(herald.NewID())
	if !ok {
		return "", errors.New("store: herald.NewID made an id that is not a UUIDv7")
	}
	x.sign(&b, scope)
	return format(b), nil
}

// Derive is the id of the notification of a keyed request: the same for the
// same API key, Idempotency-Key and body.
func (x *IDs) Derive(scope, idempotencyKey string, bodyHash [32]byte) (string, error) {
	if err := herald.CheckKeyID(scope); err != nil {
		return "", fmt.Errorf("store: API key id: %w", err)
	}
	if idempotencyKey == "" {
		return "", errors.New("store: the idempotency key is empty")
	}
	if bodyHash == ([32]byte{}) {
		return "", errors.New("store: the body hash is zero")
	}
	m := x.mac(0)
	m.buf = append(append(append(m.buf[:0], "herald/notification-id/v1\x00"...), scope...), 0)
	m.buf = append(strconv.AppendInt(m.buf, int64(len(idempotencyKey)), 10), ':')
	m.buf = append(append(append(m.buf, idempotencyKey...), 0), bodyHash[:]...)
	var b [16]byte
	copy(b[:], m.sum())
	x.macs[0].Put(m)
	b[6] = 0x80 | b[6]&0x0f
	b[8] = 0x80 | b[8]&0x3f
	x.sign(&b, scope)
	return format(b), nil
}

// Owns reports whether id is one these secrets issued to the API key scope.
func (x *IDs) Owns(scope, id string) bool {
	b, ok := parse(id)
	if !ok {
		return false
	}
	for i := range x.secrets {
		if t := x.tag(b, i, scope); hmac.Equal(b[16-tagBytes:], t[:]) {
			return true
		}
	}
	return false
}

// IssuedAt is when a version 7 id was minted; false for a derived (keyed)
// id, which carries no time, or one that does not parse.
func IssuedAt(id string) (time.Time, bool) {
	b, ok := parse(id)
	if !ok || b[6]>>4 != 7 {
		return time.Time{}, false
	}
	ms := int64(b[0])<<40 | int64(b[1])<<32 | int64(b[2])<<24 | int64(b[3])<<16 | int64(b[4])<<8 | int64(b[5])
	return time.UnixMilli(ms).UTC(), true
}

// sign sets the tag of b under the minting secret.
func (x *IDs) sign(b *[16]byte, scope string) {
	t := x.tag(*b, 0, scope)
	copy(b[16-tagBytes:], t[:])
}

// tag is the HMAC, under secret i, of the API key id and the id's first 13
// bytes.
func (x *IDs) tag(b [16]byte, i int, scope string) [tagBytes]byte {
	m := x.mac(i)
	defer x.macs[i].Put(m)
	m.buf = append(append(append(m.buf[:0], "herald/notification-tag/v1\x00"...), scope...), 0)
	m.buf = append(m.buf, b[:16-tagBytes]...)
	return [tagBytes]byte(m.sum())
}

// format writes b as a lowercase hyphenated UUID.
func format(b [16]byte) string {
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	hex.Encode(s[9:13], b[4:6])
	hex.Encode(s[14:18], b[6:8])
	hex.Encode(s[19:23], b[8:10])
	hex.Encode(s[24:36], b[10:16])
	s[8], s[13], s[18], s[23] = '-', '-', '-', '-'
	return string(s[:])
}

// parse reads an id as this package writes it: lowercase, hyphenated,
// version 7 or 8, RFC 9562 variant.
func parse(id string) ([16]byte, bool) {
	var b [16]byte
	if len(id) != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-' {
		return b, false
	}
	h := id[0:8] + id[9:13] + id[14:18] + id[19:23] + id[24:36]
	for _, c := range h {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return b, false
		}
	}
	if _, err := hex.Decode(b[:], []byte(h)); err != nil {
		return b, false
	}
	if v := b[6] >> 4; (v != 7 && v != 8) || b[8]>>6 != 0b10 {
		return b, false
	}
	return b, true
}

// ValidID reports whether id has the form of a notification id (a lowercase
// UUIDv7 or v8), as Claim requires; it does not check the tag, which only
// the API's secrets can.
func ValidID(id string) bool {
	_, ok := parse(id)
	return ok
}
