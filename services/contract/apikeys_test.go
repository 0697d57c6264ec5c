package contract

import (
	"encoding/hex"
	"strings"
	"testing"
)

func TestParseKeys(t *testing.T) {
	h := hex.EncodeToString(make([]byte, 32))
	for _, c := range []struct {
		name, raw string
		ids       []string
		err       string
	}{
		{name: "two", raw: "a:" + h + ", b.2:" + strings.ToUpper(h), ids: []string{"a", "b.2"}},
		{name: "no colon", raw: "a" + h, err: "keyid:sha256hex"},
		{name: "short hash", raw: "a:abcd", err: "64 hex digits"},
		{name: "not hex", raw: "a:" + strings.Repeat("z", 64), err: "64 hex digits"},
		{name: "empty id", raw: ":" + h, err: "1 to 64"},
		{name: "id with space", raw: "a b:" + h, err: "may hold only"},
		{name: "same id twice", raw: "a:" + h + ",a:" + h, err: "twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			keys, err := ParseKeyHashes(c.raw)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, k := range keys {
				ids = append(ids, k.ID)
			}
			if strings.Join(ids, ",") != strings.Join(c.ids, ",") {
				t.Errorf("ids %v, want %v", ids, c.ids)
			}
		})
	}
	if _, err := ParseKeySet(`["a"]`); err == nil {
		t.Error("secret that is not an object accepted")
	}
	if _, err := ParseKeySet(`{"a":"00"}`); err == nil {
		t.Error("secret with a short hash accepted")
	}
}

func TestCheckKeyID(t *testing.T) {
	for id, ok := range map[string]bool{
		"team-a": true, "a.b_c-1": true, strings.Repeat("x", 64): true,
		"": false, strings.Repeat("x", 65): false, "has space": false, "quote\"": false, "é": false,
	} {
		if err := CheckKeyID(id); (err == nil) != ok {
			t.Errorf("CheckKeyID(%q) = %v, want ok %v", id, err, ok)
		}
	}
}
