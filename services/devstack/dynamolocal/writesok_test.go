package dynamolocal

import (
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// WritesOK answers the keyed path's writes through the SDK as
// DynamoDB does when their conditions hold, refuses reads with a message
// that names it, and counts both.
func TestWritesOK(t *testing.T) {
	w := NewWritesOK()
	srv := httptest.NewServer(w)
	defer srv.Close()
	db := dynamodb.New(dynamodb.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", ""),
	})
	ctx := context.Background()
	// The SDK checks the answers' CRC32 and logs a warning when it is missing.
	resp, err := http.Post(srv.URL, "application/x-amz-json-1.0", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got, want := resp.Header.Get("X-Amz-Crc32"), fmt.Sprint(crc32.ChecksumIEEE(body)); got != want {
		t.Errorf("X-Amz-Crc32 = %q, want %q", got, want)
	}
	item := map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "k#a"}}
	put := &types.Put{TableName: aws.String("t"), Item: item, ConditionExpression: aws.String("attribute_not_exists(#pk)"),
		ExpressionAttributeNames: map[string]string{"#pk": "pk"}}
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: put.TableName, Item: item, ConditionExpression: put.ConditionExpression, ExpressionAttributeNames: put.ExpressionAttributeNames}); err != nil {
		t.Errorf("PutItem: %v", err)
	}
	if _, err := db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{{Put: put}, {Put: put}}}); err != nil {
		t.Errorf("TransactWriteItems: %v", err)
	}
	out, err := db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{"t": {{PutRequest: &types.PutRequest{Item: item}}}}})
	if err != nil || len(out.UnprocessedItems) != 0 {
		t.Errorf("BatchWriteItem: %v, unprocessed %v", err, out)
	}
	_, err = db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("t"), Key: item})
	if err == nil || !strings.Contains(err.Error(), "ValidationException") || !strings.Contains(err.Error(), "GetItem is not served") {
		t.Errorf("GetItem: %v, want a ValidationException naming it", err)
	}
	st := w.Stats()
	for op, want := range map[string]int64{"PutItem": 1, "TransactWriteItems": 1, "BatchWriteItem": 1, "GetItem": 1, "": 1} {
		if got := st.Operations[op].Requests; got != want {
			t.Errorf("%s requests = %d, want %d", op, got, want)
		}
	}
	if e := st.Operations["GetItem"].Errors; e != 1 || st.Operations["PutItem"].Errors != 0 {
		t.Errorf("errors: GetItem %d (want 1), PutItem %d (want 0)", e, st.Operations["PutItem"].Errors)
	}
	if st.Total() != 5 {
		t.Errorf("total = %d, want 5", st.Total())
	}
}
