package devstack

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// The stack runs the Secrets Manager emulator with the API-key secret,
// empty, and hands herald-ops everything it needs to work on the stack;
// Close stops the emulator.
func TestKeySecretAndOpsVariables(t *testing.T) {
	s := emulators(t, Config{KeysSecret: "test/keys"})
	ctx := context.Background()
	c := secretsmanager.New(secretsmanager.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(s.SecretsURL()),
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", ""), RetryMaxAttempts: 1,
	})
	out, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(s.KeysSecretID())})
	if err != nil || aws.ToString(out.SecretString) != "{}" || s.KeysSecretID() != "test/keys" {
		t.Fatalf("key secret %s: %v %+v", s.KeysSecretID(), err, out)
	}
	env := s.OpsVariables()
	for _, want := range []string{
		"AWS_ENDPOINT_URL_SECRETSMANAGER=" + s.SecretsURL(), "AWS_ENDPOINT_URL_SQS=" + s.SQSEndpoint(),
		"HERALD_DLQ_URL=" + s.DLQURL(), "HERALD_QUEUE_URL=" + s.QueueURL(), "HERALD_API_KEYS_SECRET_ID=test/keys",
		"AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=local",
	} {
		if !slices.Contains(env, want) {
			t.Errorf("OpsVariables lacks %s: %v", want, env)
		}
	}
	for _, v := range env {
		if name, value, _ := strings.Cut(v, "="); value == "" && name != "HERALD_API_URL" && name != "AWS_PROFILE" && name != "AWS_SESSION_TOKEN" {
			t.Errorf("OpsVariables has an empty %s", v)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("test/keys")}); err == nil {
		t.Error("the Secrets Manager emulator still answers after Close")
	}
}
