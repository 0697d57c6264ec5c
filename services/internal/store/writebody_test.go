package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"herald/services/devstack/dynamolocal/dynamotest"
	"herald/services/internal/store"
)

// sent is one request as the SDK put it on the wire, signed.
type sent struct {
	target, contentType, auth string
	body                      []byte
}

// wire keeps each request a client sends (dynamotest's canned client,
// which answers success).
type wire struct {
	mu   sync.Mutex
	reqs []sent
}

func (c *wire) keep(stack *middleware.Stack) error {
	return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("keep", func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
		req := in.Request.(*smithyhttp.Request)
		b, _ := io.ReadAll(req.GetStream())
		if err := req.RewindStream(); err != nil {
			return middleware.FinalizeOutput{}, middleware.Metadata{}, err
		}
		c.mu.Lock()
		c.reqs = append(c.reqs, sent{req.Header.Get("X-Amz-Target"), req.Header.Get("Content-Type"), req.Header.Get("Authorization"), b})
		c.mu.Unlock()
		return next.HandleFinalize(ctx, in)
	}), middleware.After)
}

func (c *wire) last(t *testing.T) sent {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.reqs) == 0 {
		t.Fatal("no request was sent")
	}
	return c.reqs[len(c.reqs)-1]
}

// keptInputs is a Client that keeps the inputs of the two write calls.
type keptInputs struct {
	*dynamodb.Client
	mu    sync.Mutex
	tx    []*dynamodb.TransactWriteItemsInput
	batch []*dynamodb.BatchWriteItemInput
}

func (k *keptInputs) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, opts ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	k.mu.Lock()
	k.tx = append(k.tx, in)
	k.mu.Unlock()
	return k.Client.TransactWriteItems(ctx, in, opts...)
}

func (k *keptInputs) BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	k.mu.Lock()
	k.batch = append(k.batch, in)
	k.mu.Unlock()
	return k.Client.BatchWriteItem(ctx, in, opts...)
}

func wireClient(w *wire) *dynamodb.Client {
	return dynamodb.New(dynamotest.CannedClient().Options(), func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, w.keep)
	})
}

func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, b)
	}
	return v
}

// sameRequest checks that a body written here is the SDK's request: the
// same target and content type, and JSON that decodes to the same value.
func sameRequest(t *testing.T, ours, sdks sent) {
	t.Helper()
	if ours.target != sdks.target || ours.contentType != sdks.contentType {
		t.Errorf("headers: ours %q %q, the SDK's %q %q", ours.target, ours.contentType, sdks.target, sdks.contentType)
	}
	if !strings.HasPrefix(ours.auth, "AWS4-HMAC-SHA256 ") {
		t.Errorf("our request is not signed: %q", ours.auth)
	}
	if o, s := decodeJSON(t, ours.body), decodeJSON(t, sdks.body); !reflect.DeepEqual(o, s) {
		t.Errorf("bodies differ:\nours    %s\nthe SDK %s", ours.body, sdks.body)
	}
}

// TestWriteBodiesAreTheSDKs: BeginMany's and CompleteMany's calls, with the
// bodies written here, send what the SDK's serializer sends for the same
// inputs.
func TestWriteBodiesAreTheSDKs(t *testing.T) {
	w := &wire{}
	db := &keptInputs{Client: wireClient(w)}
	ids, err := store.NewIDs(bytes.Repeat([]byte("i"), store.MinSecretBytes))
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.New(db, store.Config{Table: "herald-test", IdempotencyTTL: 24 * time.Hour, StatusTTL: 30 * 24 * time.Hour, IDs: ids, Clock: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var reqs []store.BeginRequest
	for _, k := range []string{"k1", "a key with spaces", `quotes " and \ backslashes`, "0190b3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b"} {
		reqs = append(reqs, store.BeginRequest{Scope: "svc", Key: k, BodyHash: [32]byte{1, byte(len(k))}})
	}
	var cs []store.Completion
	for i, r := range s.BeginMany(ctx, 30*time.Second, reqs) {
		if r.Err != nil || r.Outcome != store.Started {
			t.Fatalf("begin %d: %v %v", i, r.Outcome, r.Err)
		}
		cs = append(cs, store.Completion{Lease: r.Lease, Answer: store.Answer{Status: []int{202, 202, 500, 202}[i], Body: [][]byte{[]byte(`{"id":"x","status":"queued"}`), nil, {0, 0xff, '"'}, []byte("ok")}[i]}})
	}
	ours := w.last(t)
	if len(db.tx) != 1 {
		t.Fatalf("%d transactions, want 1", len(db.tx))
	}
	// The SDK writes ClientRequestToken first: the option is in effect.
	if !bytes.HasPrefix(ours.body, []byte(`{"TransactItems":[{"Put":{"TableName":`)) {
		t.Fatalf("the transaction's body is not the one written here: %s", ours.body)
	}
	if _, err := db.Client.TransactWriteItems(ctx, db.tx[0]); err != nil {
		t.Fatal(err)
	}
	sameRequest(t, ours, w.last(t))

	if err := errors.Join(s.CompleteMany(ctx, cs)...); err != nil {
		t.Fatal(err)
	}
	ours = w.last(t)
	if len(db.batch) != 1 {
		t.Fatalf("%d batch writes, want 1", len(db.batch))
	}
	if _, ok := store.WriteBody(db.batch[0]); !ok {
		t.Fatal("writeBody did not take the batch")
	}
	if _, err := db.Client.BatchWriteItem(ctx, db.batch[0]); err != nil {
		t.Fatal(err)
	}
	sameRequest(t, ours, w.last(t))
}

// TestWriteBodiesLeaveTheRestToTheSDK: an input with anything these bodies
// do not write is the SDK's to serialize, and is sent as the SDK sends it.
func TestWriteBodiesLeaveTheRestToTheSDK(t *testing.T) {
	str := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	key := func(pk string) map[string]types.AttributeValue { return map[string]types.AttributeValue{"pk": str(pk)} }
	put := func(mod func(*types.Put)) *dynamodb.TransactWriteItemsInput {
		p := &types.Put{TableName: aws.String("t"), Item: map[string]types.AttributeValue{
			"pk": str("a"), "n": &types.AttributeValueMemberN{Value: "1"}, "b": &types.AttributeValueMemberB{Value: []byte{1}}}}
		if mod != nil {
			mod(p)
		}
		return &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{{Put: p}}, ClientRequestToken: aws.String("tok")}
	}
	for name, in := range map[string]any{
		"update action": &dynamodb.TransactWriteItemsInput{ClientRequestToken: aws.String("tok"), TransactItems: []types.TransactWriteItem{
			{Update: &types.Update{TableName: aws.String("t"), Key: key("a"), UpdateExpression: aws.String("SET #a = :a")}}}},
		"consumed capacity": func() any {
			in := put(nil)
			in.ReturnConsumedCapacity = types.ReturnConsumedCapacityTotal
			return in
		}(),
		"list value": put(func(p *types.Put) {
			p.Item["l"] = &types.AttributeValueMemberL{Value: []types.AttributeValue{str("x")}}
		}),
		"bool value":       put(func(p *types.Put) { p.Item["f"] = &types.AttributeValueMemberBOOL{Value: true} }),
		"nil binary":       put(func(p *types.Put) { p.Item["b"] = &types.AttributeValueMemberB{} }),
		"quote in a value": put(func(p *types.Put) { p.Item["pk"] = str(`a"b`) }),
		"non-ASCII name":   put(func(p *types.Put) { p.Item["é"] = str("x") }),
		"newline in cond":  put(func(p *types.Put) { p.ConditionExpression = aws.String("a\nb") }),
		"delete request": &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{
			"t": {{DeleteRequest: &types.DeleteRequest{Key: key("a")}}}}},
		"no requests": &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{"t": nil}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, ok := store.WriteBody(in); ok {
				t.Fatal("writeBody took it")
			}
			w := &wire{}
			c := wireClient(w)
			ctx := context.Background()
			send := func(opts ...func(*dynamodb.Options)) sent {
				switch in := in.(type) {
				case *dynamodb.TransactWriteItemsInput:
					c.TransactWriteItems(ctx, in, opts...)
				case *dynamodb.BatchWriteItemInput:
					c.BatchWriteItem(ctx, in, opts...)
				}
				return w.last(t)
			}
			sameRequest(t, send(store.WriteBodies), send())
		})
	}
}

// TestWriteBodyShapes fails when the SDK's input shapes gain or lose a
// member: writeBody would then not see it (a member it drops, or one it
// no longer has to check). Review writebody.go against the new shapes and
// update the lists.
func TestWriteBodyShapes(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want []string
	}{
		{dynamodb.TransactWriteItemsInput{}, []string{"ClientRequestToken", "ReturnConsumedCapacity", "ReturnItemCollectionMetrics", "TransactItems"}},
		{types.TransactWriteItem{}, []string{"ConditionCheck", "Delete", "Put", "Update"}},
		{types.Put{}, []string{"ConditionExpression", "ExpressionAttributeNames", "ExpressionAttributeValues", "Item", "ReturnValuesOnConditionCheckFailure", "TableName"}},
		{dynamodb.BatchWriteItemInput{}, []string{"RequestItems", "ReturnConsumedCapacity", "ReturnItemCollectionMetrics"}},
		{types.WriteRequest{}, []string{"DeleteRequest", "PutRequest"}},
		{types.PutRequest{}, []string{"Item"}},
	} {
		var got []string
		rt := reflect.TypeOf(tc.v)
		for i := range rt.NumField() {
			if f := rt.Field(i); f.IsExported() {
				got = append(got, f.Name)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s has members %v, writebody.go knows %v", rt, got, tc.want)
		}
	}
}
