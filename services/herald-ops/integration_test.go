package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"herald/services/devstack/secretslocal"
	"herald/services/devstack/sqslocal"
	"herald/services/internal/herald"
)

// localAWS keeps the SDK's default chain on dummy credentials and away
// from any real AWS configuration, as the devstack does for its children.
func localAWS(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "local")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "local")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// guarded is the HTTP client of the test's own SDK clients, guarded as
// herald-ops' are (herald.GuardRequestBodies): unguarded, a lost answer
// makes the SDK retry a ReceiveMessage, and what the lost answer handed out
// stays hidden.
func guarded() aws.HTTPClient {
	return herald.GuardRequestBodies(&http.Client{Timeout: 30 * time.Second})
}

// opsRun runs herald-ops as its main does, with env as its environment.
func opsRun(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, &out)
	return out.String(), err
}

// Against the SQS emulator: dlq list peeks and leaves the DLQ as it was;
// dlq redrive moves every dead letter back to the queue once, with its
// attributes, through the emulator's StartMessageMoveTask.
func TestIntegrationDLQAgainstSQSEmulator(t *testing.T) {
	localAWS(t)
	s, err := sqslocal.Start(sqslocal.Config{Queues: []sqslocal.Queue{
		{Name: "notifications", DeadLetter: "notifications-dlq", MaxReceiveCount: 5},
		{Name: "notifications-dlq"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	env := map[string]string{
		"AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_SQS": s.Endpoint,
		"HERALD_QUEUE_URL": s.QueueURL("notifications"), "HERALD_DLQ_URL": s.QueueURL("notifications-dlq"),
	}
	ctx := context.Background()
	c := sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(s.Endpoint), Credentials: credentials.NewStaticCredentialsProvider("local", "local", ""), HTTPClient: guarded()})
	const n = 12
	for i := range n {
		_, err := c.SendMessage(ctx, &sqs.SendMessageInput{
			QueueUrl:    aws.String(env["HERALD_DLQ_URL"]),
			MessageBody: aws.String(envelope(fmt.Sprintf("n-%02d", i), "alerts@example.net", fmt.Sprintf("user%d@example.org", i))),
			MessageAttributes: map[string]types.MessageAttributeValue{
				herald.AttrFailureClass:        stringAttr("permanent"),
				herald.AttrFailureReason:       stringAttr("MessageRejected: Email address is not verified"),
				herald.AttrFailureAttempts:     {DataType: aws.String("Number"), StringValue: aws.String("1")},
				herald.AttrFailureFirstAttempt: stringAttr("2026-03-01T09:00:00.000Z"),
			},
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	out, err := opsRun(t, env, "dlq", "list", "-json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var l dlqListing
	if err := json.Unmarshal([]byte(out), &l); err != nil || len(l.Messages) != n {
		t.Fatalf("dlq list: %v, %d messages\n%s", err, len(l.Messages), out)
	}
	for _, d := range l.Messages {
		if d.Class != "permanent" || d.Attempts != 1 || d.From != "a***@example.net" || len(d.To) != 1 || !strings.HasSuffix(d.To[0], "***@example.org") {
			t.Errorf("listed %+v", d)
		}
	}
	if strings.Contains(out, "alerts@") || strings.Contains(out, "user1@") {
		t.Errorf("an address in the listing:\n%s", out)
	}
	// The peek released everything: all visible again.
	if v, hidden, err := depth(ctx, c, env["HERALD_DLQ_URL"]); err != nil || v != n || hidden != 0 {
		t.Fatalf("after dlq list: %d visible, %d hidden, %v", v, hidden, err)
	}

	out, err = opsRun(t, env, "dlq", "redrive", "-dry-run")
	if err != nil || !strings.Contains(out, fmt.Sprintf("would move the %d visible messages", n)) {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	out, err = opsRun(t, env, "dlq", "redrive", "-rate", "20", "-every", "50ms")
	if err != nil || !strings.Contains(out, fmt.Sprintf("COMPLETED: %d of %d moved (100%%)", n, n)) {
		t.Fatalf("redrive: %v\n%s", err, out)
	}
	if v, hidden, _ := depth(ctx, c, env["HERALD_DLQ_URL"]); v+hidden != 0 {
		t.Errorf("DLQ after the redrive: %d visible, %d hidden", v, hidden)
	}
	seen := map[string]int{}
	for range 20 {
		res, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(env["HERALD_QUEUE_URL"]), MaxNumberOfMessages: 10, MessageAttributeNames: []string{"All"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Messages) == 0 {
			break
		}
		for _, m := range res.Messages {
			var e herald.Envelope
			json.Unmarshal([]byte(aws.ToString(m.Body)), &e)
			seen[e.ID]++
			if aws.ToString(m.MessageAttributes[herald.AttrFailureClass].StringValue) != "permanent" {
				t.Errorf("%s lost its attributes in the move", e.ID)
			}
			c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(env["HERALD_QUEUE_URL"]), ReceiptHandle: m.ReceiptHandle})
		}
	}
	if len(seen) != n {
		t.Errorf("%d notifications back on the queue, want %d: %v", len(seen), n, seen)
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("%s on the queue %d times", id, k)
		}
	}
	out, err = opsRun(t, env, "dlq", "status")
	if err != nil || !strings.Contains(out, "0 visible, 0 in flight; 1 recent move tasks") || !strings.Contains(out, "at most 20/s") {
		t.Errorf("status: %v\n%s", err, out)
	}
	if _, err := opsRun(t, env, "dlq", "cancel"); err == nil || !strings.Contains(err.Error(), "no running move task") {
		t.Errorf("cancel with nothing running: %v", err)
	}
}

// Against the Secrets Manager emulator, with an API stand-in whose /readyz
// reads the secret as the API does: add, rotate and revoke leave exactly
// the expected hashes, each as a new version the API is seen to use.
func TestIntegrationKeysAgainstSecretsEmulator(t *testing.T) {
	localAWS(t)
	const name = "herald-local/api-key-hashes"
	sm, err := secretslocal.Start("127.0.0.1:0", secretslocal.Config{Secrets: map[string]string{name: `{}`}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sm.Close() })
	c := secretsmanager.New(secretsmanager.Options{Region: "us-east-1", BaseEndpoint: aws.String(sm.URL), Credentials: credentials.NewStaticCredentialsProvider("local", "local", ""), HTTPClient: guarded()})
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out, err := c.GetSecretValue(r.Context(), &secretsmanager.GetSecretValueInput{SecretId: aws.String(name)})
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"status": "ready", "apiKeysVersion": aws.ToString(out.VersionId)})
	}))
	t.Cleanup(api.Close)
	env := map[string]string{
		"AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_SECRETSMANAGER": sm.URL,
		"HERALD_API_KEYS_SECRET_ID": sm.ARN(name), "HERALD_API_URL": api.URL,
	}
	secret := func() map[string]string {
		out, err := c.GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]string
		if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}

	out, err := opsRun(t, env, "keys", "add", "team-a", "-every", "10ms")
	keys := printedKey.FindStringSubmatch(out)
	if err != nil || keys == nil {
		t.Fatalf("add: %v\n%s", err, out)
	}
	first := keys[1]
	if got := secret(); len(got) != 1 || got["team-a"] != herald.HashAPIKey(first) {
		t.Fatalf("after add: %v", got)
	}
	out, err = opsRun(t, env, "keys", "rotate", "team-a", "-every", "10ms")
	keys = printedKey.FindStringSubmatch(out)
	if err != nil || keys == nil || keys[1] == first {
		t.Fatalf("rotate: %v\n%s", err, out)
	}
	if got := secret(); got["team-a"] != herald.HashAPIKey(keys[1]) {
		t.Fatalf("after rotate: %v", got)
	}
	if out, err = opsRun(t, env, "keys", "revoke", "team-a", "-every", "10ms"); err != nil || !strings.Contains(out, "the change is in force") {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	if got := secret(); len(got) != 0 {
		t.Fatalf("after revoke: %v", got)
	}
	d, err := c.DescribeSecret(context.Background(), &secretsmanager.DescribeSecretInput{SecretId: aws.String(name)})
	if err != nil || len(d.VersionIdsToStages) != 4 {
		t.Errorf("versions: %v %v, want the first and one per change", err, d.VersionIdsToStages)
	}
}
