package main

import (
	"io"
	"strings"
	"testing"
)

// A bad image override fails the synth with the field named, before any
// stack is built.
func TestRunRefusesBadImageOverride(t *testing.T) {
	vars := map[string]string{"HERALD_PROD_SENDER_IMAGE": "registry.example.com/sender"}
	err := run(func(k string) string { return vars[k] }, io.Discard)
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"stacks/environments.go", `environment "prod": Sender.Image`, "no tag or digest"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
