package herald

import (
	"bytes"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// GuardRequestBodies wraps an SDK HTTP client so that net/http never reads
// a request body the SDK can close under it: a body of up to maxCopiedBody
// bytes (every DynamoDB call, SQS calls but the largest batches) goes to
// the transport as a copy in memory, a larger one as an io.Reader only (no
// io.WriterTo). LoadAWSConfig applies it; give it to any SDK client made
// without LoadAWSConfig.
//
// Why: smithy-go (v1.28.9) closes a request's body as soon as the HTTP
// client returns the response headers, and its body wrapper's WriteTo
// answers io.EOF once closed. net/http's transport, after writing the
// Content-Length bytes of a body, copies the body once more to check that
// nothing is left; io.Copy prefers WriteTo and hands its io.EOF back as an
// error. When the server answers before the transport's writer goroutine got
// to that check (a nearby endpoint, a busy CPU), the transport takes the
// io.EOF for a failed request write and closes the connection while the
// caller is still reading the answer: "failed to discard remaining HTTP
// response body ... use of closed network connection", and the SDK retries
// the call. For ReceiveMessage the messages handed out by the lost answer
// stay invisible for the whole visibility timeout; for SendMessage(Batch)
// the retry can queue a message twice. A copy the SDK does not own cannot be
// closed under the transport; a closed body's Read returns (0, io.EOF),
// which io.Copy takes as the end, so hiding WriteTo is enough for the rest.
//
// The copy also saves a write to the socket per call: net/http sends the
// headers of a body it does not know to be in memory on their own, then
// the body (FlushHeaders, for bodies that may block); a *bytes.Reader goes
// out with its headers in one write. On the API's keyed path (two DynamoDB
// calls per notification) that write is a good part of its CPU.
func GuardRequestBodies(next aws.HTTPClient) aws.HTTPClient { return bodyGuard{next: next} }

// maxCopiedBody bounds the request bodies the guard copies into memory.
const maxCopiedBody = 256 << 10

type bodyGuard struct{ next aws.HTTPClient }

func (c bodyGuard) Do(req *http.Request) (*http.Response, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return c.next.Do(req)
	}
	if req.ContentLength <= 0 || req.ContentLength > maxCopiedBody {
		req.Body = readOnlyBody{req.Body}
		return c.next.Do(req)
	}
	buf := make([]byte, req.ContentLength)
	_, err := io.ReadFull(req.Body, buf)
	req.Body.Close() // as the transport would have: the request is done with it
	if err != nil {
		return nil, fmt.Errorf("read the request body (%d bytes): %w", req.ContentLength, err)
	}
	req.Body = io.NopCloser(bytes.NewReader(buf))
	return c.next.Do(req)
}

// readOnlyBody exposes only Read and Close of a body.
type readOnlyBody struct{ rc io.ReadCloser }

func (b readOnlyBody) Read(p []byte) (int, error) { return b.rc.Read(p) }
func (b readOnlyBody) Close() error               { return b.rc.Close() }
