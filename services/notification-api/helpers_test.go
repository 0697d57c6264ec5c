package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"herald/services/contract"
	"herald/services/internal/herald"
	"herald/services/internal/herald/heraldtest"
	"herald/services/notification-api/apitest"
)

const (
	testKey      = "hk_test-key-one"
	testKeyID    = "test"
	otherKey     = "hk_test-key-two"
	otherKeyID   = "other"
	testQueueURL = "http://127.0.0.1:1/000000000000/herald"
)

func hashEntry(id, key string) keyEntry {
	return keyEntry{ID: id, Hash: sha256.Sum256([]byte(key))}
}

// testConfig is a valid configuration as readConfig would return it.
func testConfig() config {
	allowed, err := contract.ParseAllowList("noreply@herald.test,alerts@example.org,@mail.herald.test")
	if err != nil {
		panic(err)
	}
	return config{
		APIConfig: contract.APIConfig{
			Common: contract.Common{
				Environment: "test", Region: "us-east-1", QueueURL: testQueueURL, HTTPAddr: "127.0.0.1:0",
				LogLevel: "debug", ShutdownTimeout: 5 * time.Second,
			},
			DefaultFrom:     "Herald <noreply@herald.test>",
			AllowedFrom:     allowed,
			KeyHashes:       []keyEntry{hashEntry(testKeyID, testKey), hashEntry(otherKeyID, otherKey)},
			KeysRefresh:     time.Minute,
			MaxMessageBytes: 262144,
			RateLimit:       0,
			RateBurst:       200,
			BatchLinger:     2 * time.Millisecond,
			ReadyCache:      5 * time.Second,
			MaxConnections:  1024,
		},
		EnqueueTimeout: 2 * time.Second,
	}
}

// fakeSQS records what it is asked and answers as its hooks say: by default
// every send succeeds.
type fakeSQS struct {
	mu      sync.Mutex
	bodies  []string // every body SQS accepted, in order
	delays  []int32
	singles int
	batches [][]string // entry ids of each SendMessageBatch call
	payload []int      // body bytes of each SendMessageBatch call
	attrs   int
	tries   map[string]int // batch entries seen, by body

	// fail, when set, makes a whole call fail with the error it returns.
	fail func(op string) error
	// failEntry, when set, may fail one entry of a SendMessageBatch; seen
	// is how many times the same body came in earlier calls.
	failEntry func(id, body string, seen int) *types.BatchResultErrorEntry
	// silent makes SendMessageBatch report no entry at all, neither
	// successful nor failed (as goaws did before sqslocal's fix).
	silent bool
	// block makes calls wait for ctx to end (a hung queue).
	block bool
	// gate, when set, holds every call until it is closed; started gets a
	// value as each call begins.
	gate    chan struct{}
	started chan struct{}
}

func (f *fakeSQS) callErr(ctx context.Context, op string) error {
	if f.gate != nil {
		f.started <- struct{}{}
		select {
		case <-f.gate:
		case <-ctx.Done():
			return &smithy.OperationError{ServiceID: "SQS", OperationName: op, Err: ctx.Err()}
		}
	}
	if f.block {
		<-ctx.Done()
		return &smithy.OperationError{ServiceID: "SQS", OperationName: op, Err: ctx.Err()}
	}
	if f.fail != nil {
		return f.fail(op)
	}
	return nil
}

func (f *fakeSQS) SendMessage(ctx context.Context, in *sqs.SendMessageInput, _ ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	f.mu.Lock()
	f.singles++
	f.mu.Unlock()
	if err := f.callErr(ctx, "SendMessage"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bodies = append(f.bodies, aws.ToString(in.MessageBody))
	f.delays = append(f.delays, in.DelaySeconds)
	return &sqs.SendMessageOutput{MessageId: aws.String(fmt.Sprintf("mid-%d", len(f.bodies)))}, nil
}

func (f *fakeSQS) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	f.mu.Lock()
	ids := make([]string, len(in.Entries))
	size := 0
	for i, e := range in.Entries {
		ids[i] = aws.ToString(e.Id)
		size += len(aws.ToString(e.MessageBody))
	}
	f.batches = append(f.batches, ids)
	f.payload = append(f.payload, size)
	f.mu.Unlock()
	if len(in.Entries) == 0 || len(in.Entries) > 10 {
		return nil, fmt.Errorf("fake SQS: %d entries", len(in.Entries))
	}
	if err := f.callErr(ctx, "SendMessageBatch"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &sqs.SendMessageBatchOutput{}
	if f.silent {
		return out, nil
	}
	if f.tries == nil {
		f.tries = map[string]int{}
	}
	for _, e := range in.Entries {
		body := aws.ToString(e.MessageBody)
		seen := f.tries[body]
		f.tries[body]++
		if f.failEntry != nil {
			if fe := f.failEntry(aws.ToString(e.Id), body, seen); fe != nil {
				fe.Id = e.Id
				out.Failed = append(out.Failed, *fe)
				continue
			}
		}
		f.bodies = append(f.bodies, aws.ToString(e.MessageBody))
		f.delays = append(f.delays, e.DelaySeconds)
		out.Successful = append(out.Successful, types.SendMessageBatchResultEntry{
			Id: e.Id, MessageId: aws.String("mid-" + aws.ToString(e.MessageBody)),
		})
	}
	return out, nil
}

func (f *fakeSQS) GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, _ ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	f.mu.Lock()
	f.attrs++
	f.mu.Unlock()
	if err := f.callErr(ctx, "GetQueueAttributes"); err != nil {
		return nil, err
	}
	return &sqs.GetQueueAttributesOutput{Attributes: map[string]string{"QueueArn": "arn:aws:sqs:us-east-1:000000000000:herald"}}, nil
}

func (f *fakeSQS) queued() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.bodies...)
}

func (f *fakeSQS) batchCalls() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]string(nil), f.batches...)
}

// SDK-shaped errors, as the SQS client returns them after its retries.

// errRefused is what the SDK returns when nothing listens: a response error
// of status 0 around the send error.
func errRefused(op string) error {
	return &smithy.OperationError{ServiceID: "SQS", OperationName: op, Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{}},
			Err: &smithyhttp.RequestSendError{
				Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED},
			},
		},
	}}
}

// errTimeout is a deadline that ended before any response.
func errTimeout(op string) error {
	return &smithy.OperationError{ServiceID: "SQS", OperationName: op, Err: &smithyhttp.RequestSendError{Err: context.DeadlineExceeded}}
}

func errResponse(op string, status int, code string) error {
	return &smithy.OperationError{ServiceID: "SQS", OperationName: op, Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
			Err:      &smithy.GenericAPIError{Code: code, Message: "test"},
		},
	}}
}

type harness struct {
	t       testing.TB
	srv     *server
	h       http.Handler
	sqs     *fakeSQS
	log     *heraldtest.Buffer
	metrics *herald.Metrics
}

var (
	openAPIOnce sync.Once
	openAPI     *apitest.Contract
	openAPIErr  error
)

// apiContract is openapi.json, loaded and validated once.
func apiContract(t testing.TB) *apitest.Contract {
	t.Helper()
	openAPIOnce.Do(func() { openAPI, openAPIErr = apitest.Load(context.Background(), openAPIDocument) })
	if openAPIErr != nil {
		t.Fatal(openAPIErr)
	}
	return openAPI
}

// checkContract fails t when an answer is not one the OpenAPI document
// has (an undocumented status, field or header), or when the API queued
// everything of a request the document calls invalid.
func checkContract(t testing.TB, req *http.Request, body []byte, rec *httptest.ResponseRecorder) {
	t.Helper()
	c := apiContract(t)
	if err := c.CheckAnswer(context.Background(), req, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
		t.Errorf("answer not in the OpenAPI document: %v", err)
	}
	if rec.Code == http.StatusAccepted {
		if err := c.CheckRequest(context.Background(), req, body); err != nil {
			t.Errorf("accepted a request the OpenAPI document calls invalid: %v", err)
		}
	}
}

func newHarness(t testing.TB, cfg config, f *fakeSQS, d deps) *harness {
	t.Helper()
	if f == nil {
		f = &fakeSQS{}
	}
	d.sqs = f
	lg := &heraldtest.Buffer{}
	m := herald.NewMetrics(io.Discard, cfg.Environment, contract.API)
	s, err := newServer(cfg, d, slog.New(slog.NewJSONHandler(lg, &slog.HandlerOptions{Level: slog.LevelDebug})), m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return &harness{t: t, srv: s, h: s.handler(), sqs: f, log: lg, metrics: m}
}

// do sends one request through the handler. Headers "Authorization" and
// "Content-Type" default to the test key and JSON; set them to "-" to omit.
func (h *harness) do(method, path string, hdr map[string]string, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	headers := map[string]string{"Authorization": "Bearer " + testKey, "Content-Type": "application/json"}
	for k, v := range hdr {
		headers[k] = v
	}
	for k, v := range headers {
		if v != "-" {
			req.Header.Set(k, v)
		}
	}
	rec := httptest.NewRecorder()
	h.h.ServeHTTP(rec, req)
	checkContract(h.t, req, []byte(body), rec)
	return rec
}

// problemOf decodes a problem document, failing the test when the reply is
// not one.
func problemOf(t *testing.T, rec *httptest.ResponseRecorder) problem {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json; body %s", ct, rec.Body)
	}
	var p problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("problem body: %v: %s", err, rec.Body)
	}
	if p.Status != rec.Code || !strings.HasPrefix(p.Type, problemTypeBase) || p.Title == "" {
		t.Fatalf("problem %+v does not match status %d", p, rec.Code)
	}
	return p
}

func fields(errs herald.FieldErrors) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Field
	}
	return out
}

// jsonBody marshals v for a request body.
func jsonBody(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fakeClock is a settable time source.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
