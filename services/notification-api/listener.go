package main

import (
	"net"
	"sync"
)

// limitListener caps the connections a listener has open at once
// (HERALD_MAX_CONNECTIONS), so a flood of connections costs the process at
// most that many goroutines, buffers and sockets. When every slot is taken
// and a client connects, Accept holds that one connection unserved until
// another closes; further ones wait in the kernel's accept backlog, not in
// the process. While it waits, atCap(true) lets the server shed its idle
// keep-alive connections (http.Server.SetKeepAlivesEnabled closes them, and
// busy ones close after their reply), so clients are not held up by
// connections doing nothing; atCap(false) comes once a slot is free.
type limitListener struct {
	net.Listener
	slots  chan struct{}
	atCap  func(full bool)
	closed chan struct{}
	once   sync.Once
}

func newLimitListener(ln net.Listener, max int, atCap func(full bool)) *limitListener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, max), atCap: atCap, closed: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	select {
	case l.slots <- struct{}{}:
	default:
		// A client is waiting and every slot is taken.
		l.atCap(true)
		select {
		case l.slots <- struct{}{}:
			l.atCap(false)
		case <-l.closed:
			l.atCap(false)
			c.Close()
			return nil, net.ErrClosed
		}
	}
	return &limitedConn{Conn: c, release: func() { <-l.slots }}, nil
}

// Close also ends an Accept waiting for a slot.
func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// open is how many connections hold a slot.
func (l *limitListener) open() int { return len(l.slots) }

// limitedConn gives its slot back when closed, once.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite keeps net/http's lingering close: after a reply that ends the
// connection it half-closes, so the client reads the reply before the socket
// goes away.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
