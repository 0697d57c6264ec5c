package loopback

import (
	"io"
	"net/http"
	"testing"
)

func TestServeAndClose(t *testing.T) {
	s, err := Serve("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" {
		t.Fatalf("answer %q", body)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(s.URL); err == nil {
		t.Error("still serving after Close")
	}
	for _, addr := range []string{"0.0.0.0:0", "192.0.2.1:0", "no-port"} {
		if s, err := Serve(addr, http.NotFoundHandler()); err == nil {
			s.Close()
			t.Errorf("Serve(%q) accepted an address that is not loopback", addr)
		}
	}
}
