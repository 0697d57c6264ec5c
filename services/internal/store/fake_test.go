package store

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// fakeDB answers each operation with the function a test sets, records the
// calls, and checks every request's expressions as DynamoDB would (each
// placeholder defined, each name and value used).
type fakeDB struct {
	t      *testing.T
	put    func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error)
	update func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error)
	del    func(*dynamodb.DeleteItemInput) (*dynamodb.DeleteItemOutput, error)
	get    func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error)
	tx     func(*dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error)
	batch  func(*dynamodb.BatchWriteItemInput) (*dynamodb.BatchWriteItemOutput, error)
	// hang makes every call wait for its context, as a request to a table
	// that does not answer.
	hang bool

	mu    sync.Mutex
	calls []string
}

func (f *fakeDB) call(ctx context.Context, op string, exprs []string, names map[string]string, values map[string]types.AttributeValue) error {
	f.mu.Lock()
	f.calls = append(f.calls, op)
	f.mu.Unlock()
	checkExpressions(f.t, op, exprs, names, values)
	if f.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (f *fakeDB) ops() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, " ")
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// serve checks and records one call and answers it with fn.
func serve[I, O any](ctx context.Context, f *fakeDB, op string, in I, fn func(I) (O, error), exprs []string, names map[string]string, values map[string]types.AttributeValue) (O, error) {
	var zero O
	if err := f.call(ctx, op, exprs, names, values); err != nil {
		return zero, err
	}
	if fn == nil {
		f.t.Fatalf("unexpected %s", op)
	}
	return fn(in)
}

func (f *fakeDB) PutItem(ctx context.Context, in *dynamodb.PutItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	return serve(ctx, f, "PutItem", in, f.put, []string{deref(in.ConditionExpression)}, in.ExpressionAttributeNames, in.ExpressionAttributeValues)
}

func (f *fakeDB) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	exprs := []string{deref(in.UpdateExpression), deref(in.ConditionExpression)}
	return serve(ctx, f, "UpdateItem", in, f.update, exprs, in.ExpressionAttributeNames, in.ExpressionAttributeValues)
}

func (f *fakeDB) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	return serve(ctx, f, "DeleteItem", in, f.del, []string{deref(in.ConditionExpression)}, in.ExpressionAttributeNames, in.ExpressionAttributeValues)
}

func (f *fakeDB) GetItem(ctx context.Context, in *dynamodb.GetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	return serve(ctx, f, "GetItem", in, f.get, nil, in.ExpressionAttributeNames, nil)
}

func (f *fakeDB) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, _ ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	for _, it := range in.TransactItems {
		if p := it.Put; p != nil {
			checkExpressions(f.t, "TransactWriteItems", []string{deref(p.ConditionExpression)}, p.ExpressionAttributeNames, p.ExpressionAttributeValues)
		}
	}
	return serve(ctx, f, "TransactWriteItems", in, f.tx, nil, nil, nil)
}

func (f *fakeDB) BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	return serve(ctx, f, "BatchWriteItem", in, f.batch, nil, nil, nil)
}

var (
	namePlaceholder  = regexp.MustCompile(`#[A-Za-z0-9_]+`)
	valuePlaceholder = regexp.MustCompile(`:[A-Za-z0-9_]+`)
)

func checkExpressions(t *testing.T, op string, exprs []string, names map[string]string, values map[string]types.AttributeValue) {
	t.Helper()
	all := strings.Join(exprs, " ")
	usedNames, usedValues := map[string]bool{}, map[string]bool{}
	for _, p := range namePlaceholder.FindAllString(all, -1) {
		usedNames[p] = true
		if _, ok := names[p]; !ok {
			t.Errorf("%s: %s is not in ExpressionAttributeNames", op, p)
		}
	}
	for _, p := range valuePlaceholder.FindAllString(all, -1) {
		usedValues[p] = true
		if _, ok := values[p]; !ok {
			t.Errorf("%s: %s is not in ExpressionAttributeValues", op, p)
		}
	}
	for n := range names {
		if !usedNames[n] {
			t.Errorf("%s: ExpressionAttributeNames %s unused", op, n)
		}
	}
	for v := range values {
		if !usedValues[v] {
			t.Errorf("%s: ExpressionAttributeValues %s unused", op, v)
		}
	}
}

// ccf is DynamoDB's answer to a failed condition with ALL_OLD.
func ccf(it map[string]types.AttributeValue) error {
	return &types.ConditionalCheckFailedException{Message: new(string), Item: it}
}

// Errors as the SDK returns them after its retries.
var (
	errThrottled = &smithy.OperationError{ServiceID: "DynamoDB", OperationName: "UpdateItem",
		Err: &types.ProvisionedThroughputExceededException{Message: new(string)}}
	errServer = &smithy.OperationError{ServiceID: "DynamoDB", OperationName: "UpdateItem",
		Err: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 500}}, Err: &types.InternalServerError{}}}
	errDenied = &smithy.OperationError{ServiceID: "DynamoDB", OperationName: "UpdateItem",
		Err: &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "not authorized"}}
)

// testClock is a fixed time.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func fixedClock() time.Time { return testNow }

func newTestStore(t *testing.T, db *fakeDB) *Store {
	t.Helper()
	db.t = t
	ids, err := NewIDs([]byte(strings.Repeat("s", MinSecretBytes)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(db, Config{Table: "herald-test", IdempotencyTTL: 24 * time.Hour, StatusTTL: 18 * 24 * time.Hour, IDs: ids, Clock: fixedClock})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// attrs builds an item from pairs: string, int64, []byte values.
func attrs(kv ...any) map[string]types.AttributeValue {
	m := map[string]types.AttributeValue{}
	for i := 0; i < len(kv); i += 2 {
		switch v := kv[i+1].(type) {
		case string:
			m[kv[i].(string)] = str(v)
		case int64:
			m[kv[i].(string)] = num(v)
		case int:
			m[kv[i].(string)] = num(int64(v))
		case []byte:
			m[kv[i].(string)] = bin(v)
		default:
			panic("attrs: unknown value type")
		}
	}
	return m
}

func valueS(m map[string]types.AttributeValue, k string) string { return item(m).str(k) }
