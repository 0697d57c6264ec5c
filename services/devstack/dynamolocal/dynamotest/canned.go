package dynamotest

import (
	"io"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"herald/services/devstack/dynamolocal"
)

// CannedClient is a DynamoDB client whose every call succeeds at once,
// without a network: what remains of a call is the SDK's and the caller's
// CPU (serialising, signing, parsing), which a benchmark of the store's
// client side measures.
func CannedClient() *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region: "us-east-1", BaseEndpoint: aws.String("http://dynamodb.invalid"), HTTPClient: canned{},
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", ""),
	})
}

// canned answers every request with success: a write as
// dynamolocal.WriteAnswer, anything else {}.
type canned struct{}

func (canned) Do(r *http.Request) (*http.Response, error) {
	io.Copy(io.Discard, r.Body)
	r.Body.Close()
	_, op, _ := strings.Cut(r.Header.Get("X-Amz-Target"), ".")
	answer, ok := dynamolocal.WriteAnswer(op)
	if !ok {
		answer = "{}"
	}
	return &http.Response{
		StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/x-amz-json-1.0"}},
		Body:          io.NopCloser(strings.NewReader(answer)),
		ContentLength: int64(len(answer)), Request: r,
	}, nil
}
