package main

import (
	"strings"
	"testing"
)

// The configuration's rules are the contract's (services/contract); these
// check that run reads it.

func baseEnv() map[string]string {
	return map[string]string{
		"AWS_REGION":          "eu-west-1",
		"HERALD_QUEUE_URL":    "http://127.0.0.1:9324/000000000000/herald",
		"HERALD_DLQ_URL":      "http://127.0.0.1:9324/000000000000/herald-dlq",
		"HERALD_ALLOWED_FROM": "@example.com",
	}
}

func getenvFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestReadConfig(t *testing.T) {
	c, err := readConfig(getenvFrom(baseEnv()))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != ":8081" || !c.AllowedFrom.Allows("a@example.com") || c.WaitTime.Seconds() != 20 {
		t.Errorf("config %+v", c)
	}
	env := baseEnv()
	env["HERALD_WAIT_TIME"] = "0"
	if _, err := readConfig(getenvFrom(env)); err == nil || !strings.Contains(err.Error(), "HERALD_WAIT_TIME") {
		t.Errorf("HERALD_WAIT_TIME=0: %v", err)
	}
}
