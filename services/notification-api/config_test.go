package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"strings"
	"testing"
)

// The configuration's rules are the contract's (services/contract); these
// check that run reads it.

func baseEnv() map[string]string {
	return map[string]string{
		"AWS_REGION":            "eu-west-1",
		"HERALD_QUEUE_URL":      "https://sqs.eu-west-1.amazonaws.com/123456789012/herald",
		"HERALD_DEFAULT_FROM":   "Herald <noreply@herald.test>",
		"HERALD_API_KEY_HASHES": "dev:" + hex.EncodeToString(make([]byte, 32)),
	}
}

func getenvOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestReadConfig(t *testing.T) {
	cfg, err := readConfig(getenvOf(baseEnv()))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.EnqueueTimeout != enqueueTimeout || cfg.HTTPAddr != ":8080" || !cfg.AllowedFrom.Allows("noreply@herald.test") {
		t.Errorf("config %+v", cfg)
	}
}

func TestRunConfigErrors(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), nil, getenvOf(map[string]string{}), &out)
	if err == nil || !strings.Contains(err.Error(), "AWS_REGION") || !strings.Contains(err.Error(), "HERALD_DEFAULT_FROM") {
		t.Errorf("run with no configuration: %v", err)
	}
	if err := run(context.Background(), []string{"serve"}, getenvOf(baseEnv()), &out); err == nil {
		t.Error("unknown subcommand accepted")
	}
}
