package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"herald/services/devstack/dynamolocal"
)

// writesOK is a DynamoDB endpoint for the API alone in the keyed-ceiling
// mode: it answers each write the API makes as DynamoDB answers a write
// whose condition holds, at once, and refuses everything else. In the burst
// every post carries a key of its own, so every Begin finds no record and
// every Complete finds its own lease: DynamoDB's answers are these. What
// the mode measures is then the API's own cost of a key, its SDK calls and
// their network round trips included, with nothing else setting the pace:
// on AWS the API's CPU is the ceiling (DynamoDB on demand scales past
// it), locally the DynamoDB emulator is (BENCHMARKS.md). It stores nothing
// and checks no condition, so the store's decisions are not exercised here:
// the keyed mode and the tests do that, on dynalite. A request it does not
// know (a read: a replay, a status lookup) is refused with a
// ValidationException, so a run that needed one fails instead of passing
// on a wrong answer.
type writesOK struct {
	URL string

	srv *http.Server
	mu  sync.Mutex
	ops map[string]dynamolocal.OpStats
}

// targetPrefix is the X-Amz-Target of DynamoDB's JSON protocol.
const dynamoTargetPrefix = "DynamoDB_20120810."

// writeAnswers are the answers to the writes the API's keyed path makes,
// as DynamoDB gives them when no return values were asked for (Begin and
// Complete ask for the old item only when the condition fails).
var writeAnswers = map[string]string{
	"PutItem":            `{}`,
	"UpdateItem":         `{}`,
	"TransactWriteItems": `{}`,
	"BatchWriteItem":     `{"UnprocessedItems":{}}`,
}

// startWritesOK listens on a free loopback port.
func startWritesOK() (*writesOK, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("writes-ok DynamoDB: %w", err)
	}
	w := &writesOK{URL: "http://" + ln.Addr().String(), ops: map[string]dynamolocal.OpStats{}}
	w.srv = &http.Server{Handler: w, ReadHeaderTimeout: 10 * time.Second}
	go w.srv.Serve(ln)
	return w, nil
}

func (w *writesOK) Close() error {
	if err := w.srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Stats counts requests by operation, as dynamolocal's proxy does.
func (w *writesOK) Stats() dynamolocal.Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := dynamolocal.Stats{Operations: make(map[string]dynamolocal.OpStats, len(w.ops))}
	for op, o := range w.ops {
		s.Operations[op] = o
	}
	return s
}

func (w *writesOK) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	op, isOp := strings.CutPrefix(r.Header.Get("X-Amz-Target"), dynamoTargetPrefix)
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	answer, known := writeAnswers[op]
	w.mu.Lock()
	o := w.ops[op]
	o.Requests++
	if !known || err != nil || !json.Valid(body) {
		o.Errors++
	}
	w.ops[op] = o
	w.mu.Unlock()
	switch {
	case r.Method != http.MethodPost || !isOp:
		writeDynamoError(rw, "UnknownOperationException", "not a DynamoDB request")
	case err != nil || !json.Valid(body):
		writeDynamoError(rw, "SerializationException", "the request body is not JSON")
	case !known:
		writeDynamoError(rw, "ValidationException", op+" is not served by the bench's writes-ok endpoint (keyed-ceiling mode): it answers the API's writes only")
	default:
		writeDynamo(rw, http.StatusOK, []byte(answer))
	}
}

// writeDynamo answers as DynamoDB does, with the body's CRC32 (the SDK
// checks it, and warns when it is missing).
func writeDynamo(rw http.ResponseWriter, status int, body []byte) {
	rw.Header().Set("Content-Type", "application/x-amz-json-1.0")
	rw.Header().Set("X-Amz-Crc32", fmt.Sprint(crc32.ChecksumIEEE(body)))
	rw.WriteHeader(status)
	rw.Write(body)
}

func writeDynamoError(rw http.ResponseWriter, code, msg string) {
	b, _ := json.Marshal(map[string]string{"__type": "com.amazonaws.dynamodb.v20120810#" + code, "message": msg})
	writeDynamo(rw, http.StatusBadRequest, b)
}
