package herald

import (
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// GuardRequestBodies wraps an SDK HTTP client so that net/http never sees a
// request body as an io.WriterTo, only as an io.Reader. LoadAWSConfig applies
// it; give it to any SDK client made without LoadAWSConfig.
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
// the retry can queue a message twice. A closed body's Read returns
// (0, io.EOF), which io.Copy takes as the end, so hiding WriteTo is enough.
func GuardRequestBodies(next aws.HTTPClient) aws.HTTPClient { return bodyGuard{next: next} }

type bodyGuard struct{ next aws.HTTPClient }

func (c bodyGuard) Do(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = readOnlyBody{req.Body}
	}
	return c.next.Do(req)
}

// readOnlyBody exposes only Read and Close of a body.
type readOnlyBody struct{ rc io.ReadCloser }

func (b readOnlyBody) Read(p []byte) (int, error) { return b.rc.Read(p) }
func (b readOnlyBody) Close() error               { return b.rc.Close() }
