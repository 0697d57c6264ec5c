package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

const (
	testQueueURL = "https://sqs.eu-west-1.amazonaws.com/111111111111/herald-dev-notifications"
	testDLQURL   = "https://sqs.eu-west-1.amazonaws.com/111111111111/herald-dev-notifications-dlq"
	testQueueARN = "arn:aws:sqs:eu-west-1:111111111111:herald-dev-notifications"
	testDLQARN   = "arn:aws:sqs:eu-west-1:111111111111:herald-dev-notifications-dlq"
	testSecret   = "herald-dev/api-key-hashes"
)

// fakeMessage is one message in fakeSQS's dead-letter queue.
type fakeMessage struct {
	types.Message
	hidden  bool
	handles int
}

// fakeSQS is a dead-letter queue and its move tasks. It has no delete: the
// sqsAPI interface herald-ops uses has none.
type fakeSQS struct {
	mu       sync.Mutex
	dlq      []*fakeMessage
	receives int
	released []string // receipt handles made visible again

	// before is what ListMessageMoveTasks answers until a task is started,
	// tasks what it answers after, one step per call (the last repeats);
	// starts records StartMessageMoveTask inputs.
	before  []types.ListMessageMoveTasksResultEntry
	tasks   [][]types.ListMessageMoveTasksResultEntry
	listed  int
	starts  []*sqs.StartMessageMoveTaskInput
	cancels []string
	fail    map[string]error // by operation
}

func (f *fakeSQS) err(op string) error {
	if f.fail != nil {
		return f.fail[op]
	}
	return nil
}

func (f *fakeSQS) GetQueueAttributes(_ context.Context, in *sqs.GetQueueAttributesInput, _ ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err("GetQueueAttributes"); err != nil {
		return nil, err
	}
	arn := map[string]string{testQueueURL: testQueueARN, testDLQURL: testDLQARN}[aws.ToString(in.QueueUrl)]
	if arn == "" {
		return nil, &types.QueueDoesNotExist{Message: aws.String("no queue " + aws.ToString(in.QueueUrl))}
	}
	visible, hidden := 0, 0
	if arn == testDLQARN {
		for _, m := range f.dlq {
			if m.hidden {
				hidden++
			} else {
				visible++
			}
		}
	}
	return &sqs.GetQueueAttributesOutput{Attributes: map[string]string{
		"QueueArn": arn, "ApproximateNumberOfMessages": strconv.Itoa(visible), "ApproximateNumberOfMessagesNotVisible": strconv.Itoa(hidden),
	}}, nil
}

func (f *fakeSQS) ReceiveMessage(_ context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.receives++
	if err := f.err("ReceiveMessage"); err != nil {
		return nil, err
	}
	if aws.ToString(in.QueueUrl) != testDLQURL || in.VisibilityTimeout < 1 {
		return nil, fmt.Errorf("receive from %s with visibility %d", aws.ToString(in.QueueUrl), in.VisibilityTimeout)
	}
	out := &sqs.ReceiveMessageOutput{}
	for _, m := range f.dlq {
		if len(out.Messages) == int(in.MaxNumberOfMessages) {
			break
		}
		if m.hidden {
			continue
		}
		m.hidden = true
		m.handles++
		got := m.Message
		got.ReceiptHandle = aws.String(fmt.Sprintf("%s#%d", aws.ToString(m.MessageId), m.handles))
		out.Messages = append(out.Messages, got)
	}
	return out, nil
}

func (f *fakeSQS) ChangeMessageVisibility(_ context.Context, in *sqs.ChangeMessageVisibilityInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if in.VisibilityTimeout != 0 {
		return nil, fmt.Errorf("visibility %d: herald-ops only releases", in.VisibilityTimeout)
	}
	h := aws.ToString(in.ReceiptHandle)
	f.released = append(f.released, h)
	for _, m := range f.dlq {
		if fmt.Sprintf("%s#%d", aws.ToString(m.MessageId), m.handles) == h {
			m.hidden = false
		}
	}
	return &sqs.ChangeMessageVisibilityOutput{}, nil
}

func (f *fakeSQS) StartMessageMoveTask(_ context.Context, in *sqs.StartMessageMoveTaskInput, _ ...func(*sqs.Options)) (*sqs.StartMessageMoveTaskOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err("StartMessageMoveTask"); err != nil {
		return nil, err
	}
	f.starts = append(f.starts, in)
	return &sqs.StartMessageMoveTaskOutput{TaskHandle: aws.String("handle-1")}, nil
}

func (f *fakeSQS) ListMessageMoveTasks(_ context.Context, in *sqs.ListMessageMoveTasksInput, _ ...func(*sqs.Options)) (*sqs.ListMessageMoveTasksOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if aws.ToString(in.SourceArn) != testDLQARN {
		return nil, fmt.Errorf("tasks of %s", aws.ToString(in.SourceArn))
	}
	step := f.before
	if len(f.starts) > 0 && len(f.tasks) > 0 {
		step = f.tasks[min(f.listed, len(f.tasks)-1)]
		f.listed++
	}
	return &sqs.ListMessageMoveTasksOutput{Results: step[:min(len(step), int(aws.ToInt32(in.MaxResults)))]}, nil
}

func (f *fakeSQS) CancelMessageMoveTask(_ context.Context, in *sqs.CancelMessageMoveTaskInput, _ ...func(*sqs.Options)) (*sqs.CancelMessageMoveTaskOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancels = append(f.cancels, aws.ToString(in.TaskHandle))
	return &sqs.CancelMessageMoveTaskOutput{ApproximateNumberOfMessagesMoved: 4}, nil
}

// task is a ListMessageMoveTasks entry; a running one has the handle.
func task(status string, moved, toMove int64) types.ListMessageMoveTasksResultEntry {
	t := types.ListMessageMoveTasksResultEntry{
		Status: aws.String(status), SourceArn: aws.String(testDLQARN), ApproximateNumberOfMessagesMoved: moved,
		ApproximateNumberOfMessagesToMove: aws.Int64(toMove), StartedTimestamp: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixMilli(),
	}
	if status == "RUNNING" {
		t.TaskHandle = aws.String("handle-1")
	}
	return t
}

// fakeSecrets is one secret with versions, as Secrets Manager keeps it.
type fakeSecrets struct {
	mu       sync.Mutex
	exists   bool
	versions []string // oldest first; the last is AWSCURRENT
	values   map[string]string
	puts     int
	// onDescribe runs before DescribeSecret answers (another operator's write).
	onDescribe func(f *fakeSecrets)
}

func newFakeSecrets(value string) *fakeSecrets {
	f := &fakeSecrets{exists: true, values: map[string]string{}}
	if value != "" {
		f.add(value)
	}
	return f
}

// add stores a value as the new current version. Callers hold f.mu or own f.
func (f *fakeSecrets) add(value string) string {
	v := fmt.Sprintf("v%d", len(f.versions)+1)
	f.versions = append(f.versions, v)
	f.values[v] = value
	return v
}

func (f *fakeSecrets) current() (version, value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.versions) == 0 {
		return "", ""
	}
	v := f.versions[len(f.versions)-1]
	return v, f.values[v]
}

func (f *fakeSecrets) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if aws.ToString(in.SecretId) != testSecret || !f.exists {
		return nil, &smtypes.ResourceNotFoundException{Message: aws.String("Secrets Manager can't find the specified secret.")}
	}
	if len(f.versions) == 0 {
		return nil, &smtypes.ResourceNotFoundException{Message: aws.String("Secrets Manager can't find the specified secret value for staging label: AWSCURRENT")}
	}
	v := f.versions[len(f.versions)-1]
	return &secretsmanager.GetSecretValueOutput{SecretString: aws.String(f.values[v]), VersionId: aws.String(v)}, nil
}

func (f *fakeSecrets) PutSecretValue(_ context.Context, in *secretsmanager.PutSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if aws.ToString(in.SecretId) != testSecret || aws.ToString(in.ClientRequestToken) == "" {
		return nil, errors.New("put without the secret id or a ClientRequestToken")
	}
	f.puts++
	v := f.add(aws.ToString(in.SecretString))
	return &secretsmanager.PutSecretValueOutput{ARN: aws.String("arn:aws:secretsmanager:eu-west-1:111111111111:secret:" + testSecret + "-AbCdEf"), VersionId: aws.String(v)}, nil
}

func (f *fakeSecrets) DescribeSecret(_ context.Context, in *secretsmanager.DescribeSecretInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.DescribeSecretOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.onDescribe != nil {
		f.onDescribe(f)
	}
	if aws.ToString(in.SecretId) != testSecret || !f.exists {
		return nil, &smtypes.ResourceNotFoundException{Message: aws.String("Secrets Manager can't find the specified secret.")}
	}
	stages := map[string][]string{}
	for i, v := range f.versions {
		stages[v] = nil
		if i == len(f.versions)-1 {
			stages[v] = []string{"AWSCURRENT"}
		}
	}
	return &secretsmanager.DescribeSecretOutput{VersionIdsToStages: stages}, nil
}

// fakeAPI is a notification API's /readyz whose apiKeysVersion follows a
// script: answers[i] for the i-th call (the last repeats), "" for a 503.
type fakeAPI struct {
	mu      sync.Mutex
	answers []string
	calls   int
}

func (a *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	v := a.answers[min(a.calls, len(a.answers)-1)]
	a.calls++
	a.mu.Unlock()
	if r.URL.Path != "/readyz" {
		http.NotFound(w, r)
		return
	}
	if v == "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	json.NewEncoder(w).Encode(map[string]string{"status": "ready", "apiKeysVersion": v})
}

// fakeClients hands the fakes to the commands.
type fakeClients struct {
	sqsFake     sqsAPI
	secretsFake *fakeSecrets
	made        []string // which clients were made
}

func (c *fakeClients) sqs(context.Context, *target) (sqsAPI, error) {
	c.made = append(c.made, "sqs")
	return c.sqsFake, nil
}

func (c *fakeClients) secrets(context.Context, *target) (secretsAPI, error) {
	c.made = append(c.made, "secrets")
	return c.secretsFake, nil
}

func (c *fakeClients) http() *http.Client { return &http.Client{Timeout: 5 * time.Second} }

// runWith runs herald-ops with the fakes and an environment; it returns
// what it printed.
func runWith(t *testing.T, cl *fakeClients, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := execute(context.Background(), args, func(k string) string { return env[k] }, &out, cl)
	return out.String(), err
}

// startAPI serves a fakeAPI for one test.
func startAPI(t *testing.T, answers ...string) (*fakeAPI, string) {
	t.Helper()
	a := &fakeAPI{answers: answers}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return a, srv.URL
}
