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

// A bad HERALD_SYNTH_COPY fails the synth with the variable named.
func TestRunRefusesBadCopy(t *testing.T) {
	vars := map[string]string{"HERALD_SYNTH_COPY": "staging:e2eabc"}
	err := run(func(k string) string { return vars[k] }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `HERALD_SYNTH_COPY="staging:e2eabc": no environment "staging"`) {
		t.Fatalf("error %v, want one naming the variable and the missing environment", err)
	}
}
