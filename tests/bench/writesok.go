package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"herald/services/devstack/dynamolocal"
)

// writesOK is a DynamoDB endpoint for the API alone in the keyed-ceiling
// mode (dynamolocal.WritesOK on a loopback port): it answers each write the
// API makes as DynamoDB answers a write whose condition holds, at once, and
// refuses everything else. In the burst every post carries a key of its
// own, so every Begin finds no record and every Complete finds its own
// lease: DynamoDB's answers are these. What the mode measures is then the
// API's own cost of a key, its SDK calls and their network round trips
// included, with nothing else setting the pace: on AWS the API's CPU is
// the ceiling (DynamoDB on demand scales past it), locally the DynamoDB
// emulator is (BENCHMARKS.md). It stores nothing and checks no condition,
// so the store's decisions are not exercised here: the keyed mode and the
// tests do that, on dynalite. A request it does not know (a read: a
// replay, a status lookup) is refused with a ValidationException, so a run
// that needed one fails instead of passing on a wrong answer.
type writesOK struct {
	*dynamolocal.WritesOK
	URL string
	srv *http.Server
}

// startWritesOK listens on a free loopback port.
func startWritesOK() (*writesOK, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("writes-ok DynamoDB: %w", err)
	}
	w := &writesOK{WritesOK: dynamolocal.NewWritesOK(), URL: "http://" + ln.Addr().String()}
	w.srv = &http.Server{Handler: w.WritesOK, ReadHeaderTimeout: 10 * time.Second}
	go w.srv.Serve(ln)
	return w, nil
}

func (w *writesOK) Close() error {
	if err := w.srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
