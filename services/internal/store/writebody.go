package store

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// The JSON bodies of the API's two calls per keyed notification under load
// (BeginMany's TransactWriteItems, CompleteMany's BatchWriteItem), written
// straight into one buffer. The SDK's generic serializer walks the shapes'
// schemas and grows its buffer by doubling, then copies it: for these calls
// that was 9% of the API's CPU per keyed notification and a quarter of the
// bytes it allocated (so of its GC). Only the serializing step is replaced:
// validation, the idempotency token, signing, retries and the parsing of the
// answer are the SDK's, and so is the serializing of any input that has a
// member or value these bodies do not write (it is then the SDK's body,
// unchanged). writebody_test.go checks that each body decodes to the JSON the
// SDK sends for the same input, and fails when the SDK's shapes gain a
// member, so that an upgrade is reviewed here.

// writeBodies is a per-call option of TransactWriteItems and BatchWriteItem:
// their bodies written here when the client speaks awsJson 1.0.
func writeBodies(o *dynamodb.Options) {
	if o.Protocol != nil && o.Protocol.ID() == awsJSON10 {
		o.Protocol = writeBodyProtocol{o.Protocol}
	}
}

var awsJSON10 = smithy.ShapeID{Namespace: "aws.protocols", Name: "awsJson1_0"}

// dynamoTarget is the X-Amz-Target prefix of DynamoDB's operations.
const dynamoTarget = "DynamoDB_20120810."

// writeBodyProtocol is the client's protocol with SerializeRequest of the
// two write calls done here.
type writeBodyProtocol struct{ smithyhttp.ClientProtocol }

// SerializeRequest sets what awsjson.Protocol's sets (method, path, target,
// content type, body) for the inputs writeBody takes, and leaves every other
// input to the SDK's protocol.
func (p writeBodyProtocol) SerializeRequest(ctx context.Context, op *smithy.OperationSchema, in smithy.Serializable, req *smithyhttp.Request) error {
	body, ok := writeBody(in)
	if !ok {
		return p.ClientProtocol.SerializeRequest(ctx, op, in, req)
	}
	req.Method = http.MethodPost
	if len(req.URL.Path) == 0 {
		req.URL.Path = "/"
	}
	req.Header.Set("X-Amz-Target", dynamoTarget+op.ID().Name)
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	sreq, err := req.SetStream(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("set stream: %w", err)
	}
	*req = *sreq
	return nil
}

// writeBody is the JSON body of a TransactWriteItems of Puts or a
// BatchWriteItem of PutRequests whose values are S, N and B, without the
// optional members the store does not use; false for any other input.
func writeBody(in any) ([]byte, bool) {
	switch in := in.(type) {
	case *dynamodb.TransactWriteItemsInput:
		return transactBody(in)
	case *dynamodb.BatchWriteItemInput:
		return batchBody(in)
	}
	return nil, false
}

func transactBody(in *dynamodb.TransactWriteItemsInput) ([]byte, bool) {
	if len(in.TransactItems) == 0 || in.ClientRequestToken == nil || in.ReturnConsumedCapacity != "" || in.ReturnItemCollectionMetrics != "" {
		return nil, false
	}
	// Begin's Put is about 1000 bytes of JSON: one buffer, grown rarely.
	w := jsonWriter{buf: make([]byte, 0, 128+1088*len(in.TransactItems)), ok: true}
	w.raw(`{"TransactItems":[`)
	for i, ti := range in.TransactItems {
		p := ti.Put
		if p == nil || ti.Update != nil || ti.Delete != nil || ti.ConditionCheck != nil || p.TableName == nil || p.Item == nil {
			return nil, false
		}
		if i > 0 {
			w.raw(",")
		}
		w.raw(`{"Put":{"TableName":`)
		w.str(*p.TableName)
		w.raw(`,"Item":`)
		w.values(p.Item)
		if p.ConditionExpression != nil {
			w.raw(`,"ConditionExpression":`)
			w.str(*p.ConditionExpression)
		}
		if p.ExpressionAttributeNames != nil {
			w.raw(`,"ExpressionAttributeNames":{`)
			n := 0
			for k, v := range p.ExpressionAttributeNames {
				if n++; n > 1 {
					w.raw(",")
				}
				w.str(k)
				w.raw(":")
				w.str(v)
			}
			w.raw("}")
		}
		if p.ExpressionAttributeValues != nil {
			w.raw(`,"ExpressionAttributeValues":`)
			w.values(p.ExpressionAttributeValues)
		}
		if p.ReturnValuesOnConditionCheckFailure != "" {
			w.raw(`,"ReturnValuesOnConditionCheckFailure":`)
			w.str(string(p.ReturnValuesOnConditionCheckFailure))
		}
		w.raw("}}")
	}
	w.raw(`],"ClientRequestToken":`)
	w.str(*in.ClientRequestToken)
	w.raw("}")
	return w.buf, w.ok
}

func batchBody(in *dynamodb.BatchWriteItemInput) ([]byte, bool) {
	if len(in.RequestItems) == 0 || in.ReturnConsumedCapacity != "" || in.ReturnItemCollectionMetrics != "" {
		return nil, false
	}
	n := 0
	for _, reqs := range in.RequestItems {
		n += len(reqs)
	}
	// A done record with a 202's answer is about 470 bytes of JSON.
	w := jsonWriter{buf: make([]byte, 0, 64+544*n), ok: true}
	w.raw(`{"RequestItems":{`)
	t := 0
	for table, reqs := range in.RequestItems {
		if len(reqs) == 0 {
			return nil, false
		}
		if t++; t > 1 {
			w.raw(",")
		}
		w.str(table)
		w.raw(":[")
		for i, r := range reqs {
			if r.PutRequest == nil || r.DeleteRequest != nil || r.PutRequest.Item == nil {
				return nil, false
			}
			if i > 0 {
				w.raw(",")
			}
			w.raw(`{"PutRequest":{"Item":`)
			w.values(r.PutRequest.Item)
			w.raw("}}")
		}
		w.raw("]")
	}
	w.raw("}}")
	return w.buf, w.ok
}

// jsonWriter appends JSON; ok turns false at a string that would need an
// escape or a value of a type it does not write (the body is then the
// SDK's).
type jsonWriter struct {
	buf []byte
	ok  bool
}

func (w *jsonWriter) raw(s string) { w.buf = append(w.buf, s...) }

// str writes a string of printable ASCII other than " and \.
func (w *jsonWriter) str(s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			w.ok = false
			return
		}
	}
	w.buf = append(w.buf, '"')
	w.buf = append(w.buf, s...)
	w.buf = append(w.buf, '"')
}

// values writes an attribute map of S, N and non-nil B values.
func (w *jsonWriter) values(m map[string]types.AttributeValue) {
	w.raw("{")
	n := 0
	for k, v := range m {
		if n++; n > 1 {
			w.raw(",")
		}
		w.str(k)
		switch v := v.(type) {
		case *types.AttributeValueMemberS:
			w.raw(`:{"S":`)
			w.str(v.Value)
		case *types.AttributeValueMemberN:
			w.raw(`:{"N":`)
			w.str(v.Value)
		case *types.AttributeValueMemberB:
			if v.Value == nil {
				w.ok = false
				return
			}
			w.raw(`:{"B":"`)
			w.buf = base64.StdEncoding.AppendEncode(w.buf, v.Value)
			w.raw(`"`)
		default:
			w.ok = false
			return
		}
		w.raw("}")
	}
	w.raw("}")
}
