package apitest

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// ReplyWait bounds waiting for one reply on a loopback connection. It is
// generous for a loaded machine and shorter than the API's read timeout
// (30 s), so a server that waits for a slow body before answering fails a
// test instead of passing late.
const ReplyWait = 10 * time.Second

// Conn is one client connection that writes bytes as they are given. It is
// closed when the test ends.
type Conn struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

// Dial connects to addr (host:port) within ReplyWait.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ReplyWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &Conn{t: t, c: c, r: bufio.NewReader(c)}
}

// Send writes s as it is.
func (c *Conn) Send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatal(err)
	}
}

// Reply reads one response, body included, within ReplyWait.
func (c *Conn) Reply() *http.Response {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(ReplyWait))
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		c.t.Fatalf("no reply within %s: %v", ReplyWait, err)
	}
	if _, err := io.ReadAll(resp.Body); err != nil {
		c.t.Fatalf("reply body: %v", err)
	}
	return resp
}

// ClosedByServer reports whether the server ends the connection within wait.
func (c *Conn) ClosedByServer(wait time.Duration) bool {
	c.c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.r.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}
