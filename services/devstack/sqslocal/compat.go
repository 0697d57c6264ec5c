package sqslocal

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
)

// jsonProtocolFixes corrects goaws v0.5.4 where its JSON-protocol answers
// differ from SQS's, so AWS SDK clients read them as SQS would send them.
//
// SendMessageBatch: goaws writes its query-protocol element names
// ({"SendMessageBatchResultEntry": [...], "BatchResultErrorEntry": [...]})
// where the JSON protocol has {"Successful": [...], "Failed": [...]}. The SDK
// then sees a batch with neither successes nor failures, and a careful
// client treats every entry as not sent (and sends it again).
func jsonProtocolFixes(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Amz-Target") != "AmazonSQS.SendMessageBatch" {
			next.ServeHTTP(w, r)
			return
		}
		buf := &bufferedResponse{header: http.Header{}, status: http.StatusOK}
		next.ServeHTTP(buf, r)
		body := buf.body.Bytes()
		if buf.status == http.StatusOK {
			var goaws struct {
				Entries []json.RawMessage `json:"SendMessageBatchResultEntry"`
				Errors  []json.RawMessage `json:"BatchResultErrorEntry"`
			}
			if err := json.Unmarshal(body, &goaws); err == nil {
				fixed, err := json.Marshal(map[string][]json.RawMessage{
					"Successful": append([]json.RawMessage{}, goaws.Entries...),
					"Failed":     append([]json.RawMessage{}, goaws.Errors...),
				})
				if err == nil {
					body = fixed
				}
			}
		}
		for k, v := range buf.header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(buf.status)
		w.Write(body)
	})
}

// bufferedResponse holds a handler's answer so it can be rewritten.
type bufferedResponse struct {
	header      http.Header
	status      int
	wroteHeader bool
	body        bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(status int) {
	if !b.wroteHeader {
		b.status, b.wroteHeader = status, true
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	b.wroteHeader = true
	return b.body.Write(p)
}
