package transport

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"herald/services/internal/herald"
)

// fakeSMTP is a minimal ESMTP server on loopback: enough of RFC 5321 to see
// what the client sends, with switches for the failures under test.
type fakeSMTP struct {
	ln         net.Listener
	user, pass string // AUTH PLAIN offered and required when set
	rejectRcpt string // RCPT TO for this address gets 550
	hangOnData bool   // never answer the end of DATA
	closeAfter bool   // close the session after each message

	mu    sync.Mutex
	conns int
	mails []fakeMail
	wg    sync.WaitGroup
}

type fakeMail struct {
	from  string
	rcpts []string
	data  string
}

func startFakeSMTP(t *testing.T, f *fakeSMTP) *fakeSMTP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.ln = ln
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns++
			f.mu.Unlock()
			f.wg.Go(func() { f.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		f.wg.Wait()
	})
	return f
}

func (f *fakeSMTP) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tp := textproto.NewConn(c)
	reply := func(s string) { tp.PrintfLine("%s", s) }
	reply("220 fake ESMTP")
	var cur fakeMail
	authed := f.user == ""
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			if f.user != "" {
				reply("250-fake\r\n250 AUTH PLAIN")
			} else {
				reply("250 fake")
			}
		case "AUTH":
			raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(arg, "PLAIN "))
			if string(raw) == "\x00"+f.user+"\x00"+f.pass {
				authed = true
				reply("235 2.7.0 ok")
			} else {
				reply("535 5.7.8 authentication failed")
			}
		case "MAIL":
			if !authed {
				reply("530 5.7.0 authentication required")
				continue
			}
			cur = fakeMail{from: strings.Trim(strings.TrimPrefix(strings.Fields(arg)[0], "FROM:"), "<>")}
			reply("250 ok")
		case "RCPT":
			rcpt := strings.Trim(strings.TrimPrefix(arg, "TO:"), "<>")
			f.mu.Lock()
			reject := rcpt == f.rejectRcpt
			f.mu.Unlock()
			if reject {
				reply("550 5.1.1 <" + rcpt + ">: recipient rejected")
				continue
			}
			cur.rcpts = append(cur.rcpts, rcpt)
			reply("250 ok")
		case "DATA":
			reply("354 go on")
			data, err := io.ReadAll(tp.DotReader())
			if err != nil {
				return
			}
			cur.data = string(data)
			f.mu.Lock()
			f.mails = append(f.mails, cur)
			f.mu.Unlock()
			if f.hangOnData {
				io.Copy(io.Discard, c) // until the client gives up
				return
			}
			reply("250 queued")
			if f.closeAfter {
				return
			}
		case "RSET", "NOOP":
			reply("250 ok")
		case "QUIT":
			reply("221 bye")
			return
		default:
			reply("502 unknown command")
		}
	}
}

func (f *fakeSMTP) snapshot() (int, []fakeMail) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns, append([]fakeMail(nil), f.mails...)
}

func newTestSMTP(t *testing.T, f *fakeSMTP, mutate func(*SMTPConfig)) *SMTP {
	t.Helper()
	cfg := SMTPConfig{Addr: f.ln.Addr().String(), PlainText: true, Now: func() time.Time { return testNow }}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := NewSMTP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func envelope(id string) *herald.Envelope {
	return &herald.Envelope{
		ID: id, From: "Sender <sender@example.com>",
		To: []string{"a@example.com"}, Cc: []string{"c@example.com"}, Bcc: []string{"b@example.com"},
		Subject: "Hello", Text: "line one\n.\n..two dots\n.x\nend",
	}
}

func TestSMTPSendReusesSessionAndDotStuffs(t *testing.T) {
	f := startFakeSMTP(t, &fakeSMTP{user: "user", pass: "secret"})
	s := newTestSMTP(t, f, func(c *SMTPConfig) { c.Username, c.Password = "user", "secret" })
	for _, id := range []string{"id-1", "id-2"} {
		msgID, err := s.Send(context.Background(), envelope(id))
		if err != nil {
			t.Fatalf("send %s: %v", id, err)
		}
		if msgID != "<"+id+"@example.com>" {
			t.Errorf("message id %q", msgID)
		}
	}
	conns, mails := f.snapshot()
	if conns != 1 {
		t.Errorf("%d sessions for two messages, want 1 (reuse)", conns)
	}
	if len(mails) != 2 {
		t.Fatalf("%d messages received, want 2", len(mails))
	}
	want, _ := BuildMessage(envelope("id-2"), testNow)
	m := mails[1]
	if m.from != "sender@example.com" || strings.Join(m.rcpts, ",") != "a@example.com,c@example.com,b@example.com" {
		t.Errorf("envelope from %q rcpts %v", m.from, m.rcpts)
	}
	// The server un-stuffs dots (and reads CRLF as LF): what it got must be
	// exactly the message built, lines of lone dots included.
	if m.data != strings.ReplaceAll(string(want), "\r\n", "\n") {
		t.Errorf("data differs from the message built:\n%q\nwant\n%q", m.data, want)
	}
}

func TestSMTPRecipientRejectedIsPermanentAndSessionReplaced(t *testing.T) {
	f := startFakeSMTP(t, &fakeSMTP{rejectRcpt: "c@example.com"})
	s := newTestSMTP(t, f, nil)
	_, err := s.Send(context.Background(), envelope("id-1"))
	var se *SMTPError
	if !errors.As(err, &se) || se.Stage != "rcpt" {
		t.Fatalf("err %v, want an SMTPError at rcpt", err)
	}
	if f := Classify(err); f.Class != Permanent || strings.Contains(f.Reason, "@") {
		t.Errorf("classified %+v, want permanent without an address", f)
	}
	f.mu.Lock()
	f.rejectRcpt = ""
	f.mu.Unlock()
	if _, err := s.Send(context.Background(), envelope("id-2")); err != nil {
		t.Fatalf("send after a rejection: %v", err)
	}
	if conns, _ := f.snapshot(); conns != 2 {
		t.Errorf("%d sessions, want a new one after the failed transaction", conns)
	}
}

func TestSMTPRequiresSTARTTLS(t *testing.T) {
	f := startFakeSMTP(t, &fakeSMTP{})
	s := newTestSMTP(t, f, func(c *SMTPConfig) { c.PlainText = false })
	_, err := s.Send(context.Background(), envelope("id-1"))
	if !errors.Is(err, ErrNoSTARTTLS) || Classify(err).Class != Account {
		t.Fatalf("err %v (%+v), want ErrNoSTARTTLS classified account", err, Classify(err))
	}
	if _, mails := f.snapshot(); len(mails) != 0 {
		t.Error("a message went out without TLS")
	}
}

func TestSMTPWrongCredentialsIsAccountLevel(t *testing.T) {
	f := startFakeSMTP(t, &fakeSMTP{user: "user", pass: "secret"})
	s := newTestSMTP(t, f, func(c *SMTPConfig) { c.Username, c.Password = "user", "wrong" })
	_, err := s.Send(context.Background(), envelope("id-1"))
	var se *SMTPError
	if !errors.As(err, &se) || se.Stage != "auth" || Classify(err).Class != Account {
		t.Fatalf("err %v (%+v), want an auth failure classified account", err, Classify(err))
	}
}

func TestSMTPDeadlineEndsAHungSession(t *testing.T) {
	f := startFakeSMTP(t, &fakeSMTP{hangOnData: true})
	s := newTestSMTP(t, f, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := s.Send(ctx, envelope("id-1"))
	if err == nil {
		t.Fatal("send to a hung server succeeded")
	}
	if f := Classify(err); f.Class != Transient {
		t.Errorf("classified %+v, want transient", f)
	}
}

func TestSMTPRedialsWhenAKeptSessionWasClosed(t *testing.T) {
	f := startFakeSMTP(t, &fakeSMTP{closeAfter: true})
	s := newTestSMTP(t, f, nil)
	for _, id := range []string{"id-1", "id-2"} {
		if _, err := s.Send(context.Background(), envelope(id)); err != nil {
			t.Fatalf("send %s: %v", id, err)
		}
	}
	if conns, mails := f.snapshot(); conns != 2 || len(mails) != 2 {
		t.Errorf("%d sessions, %d messages; want 2 and 2", conns, len(mails))
	}
}
