package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"sync"
	"time"

	"herald/services/internal/herald"
	"herald/services/mailaddr"
)

var (
	// ErrNoSTARTTLS: the server does not offer STARTTLS and plain text was not allowed.
	ErrNoSTARTTLS = errors.New("server does not offer STARTTLS")
	// ErrNoAuth: credentials are configured but the server offers no AUTH.
	ErrNoAuth = errors.New("server does not offer AUTH")
)

// SMTPError is a failed SMTP step. Stage tells whether the session
// ("connect", "hello", "starttls", "auth") or the message ("mail", "rcpt",
// "data") failed, which decides its class.
type SMTPError struct {
	Stage string
	Err   error
}

func (e *SMTPError) Error() string { return "smtp " + e.Stage + ": " + e.Err.Error() }
func (e *SMTPError) Unwrap() error { return e.Err }

func (e *SMTPError) messageStage() bool {
	return e.Stage == "mail" || e.Stage == "rcpt" || e.Stage == "data"
}

// SMTPConfig configures the SMTP transport.
type SMTPConfig struct {
	// Addr is the relay's host:port.
	Addr string
	// PlainText allows a session without STARTTLS. Only for loopback test
	// servers; the caller enforces that.
	PlainText bool
	// RootCAs verifies the server's certificate; nil means the system roots.
	RootCAs *x509.CertPool
	// Username and Password, when set, are sent with AUTH PLAIN (after STARTTLS).
	Username, Password string
	// HelloName is sent with EHLO; "localhost" when empty.
	HelloName string
	// MaxIdle connections are kept for reuse; 0 means 4.
	MaxIdle int
	// IdleTimeout drops a kept connection unused for this long (servers close
	// idle sessions); 0 means 30 s.
	IdleTimeout time.Duration
	// Now stamps the Date header; time.Now when nil.
	Now func() time.Time
}

// SMTP sends through an SMTP relay, reusing sessions between messages (a
// session costs a TCP and a TLS handshake and an AUTH round trip).
type SMTP struct {
	cfg  SMTPConfig
	host string
	idle chan *smtpConn
}

// NewSMTP checks the configuration; it does not connect.
func NewSMTP(cfg SMTPConfig) (*SMTP, error) {
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("smtp address %q: %w", cfg.Addr, err)
	}
	if cfg.HelloName == "" {
		cfg.HelloName = "localhost"
	}
	if cfg.MaxIdle <= 0 {
		cfg.MaxIdle = 4
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &SMTP{cfg: cfg, host: host, idle: make(chan *smtpConn, cfg.MaxIdle)}, nil
}

// Send delivers one envelope in one SMTP transaction and returns its
// Message-ID header. ctx bounds every network step.
func (s *SMTP) Send(ctx context.Context, e *herald.Envelope) (string, error) {
	msg, err := BuildMessage(e, s.cfg.Now())
	if err != nil {
		return "", fmt.Errorf("%w: build message: %v", herald.ErrUnreadable, err)
	}
	for {
		c, reused, err := s.get(ctx)
		if err != nil {
			return "", err
		}
		stop := c.watch(ctx)
		if reused {
			// A kept session may have been closed by the server meanwhile:
			// RSET tells, and a failure here says nothing about the message.
			if err := c.client.Reset(); err != nil {
				stop()
				c.close()
				continue
			}
		}
		err = s.transact(c, e, msg)
		stop()
		if err != nil {
			c.close()
			return "", err
		}
		s.put(c)
		return MessageID(e), nil
	}
}

func (s *SMTP) transact(c *smtpConn, e *herald.Envelope, msg []byte) error {
	if err := c.client.Mail(mailaddr.Bare(e.From)); err != nil {
		return &SMTPError{"mail", err}
	}
	for _, list := range [][]string{e.To, e.Cc, e.Bcc} {
		for _, rcpt := range list {
			if err := c.client.Rcpt(mailaddr.Bare(rcpt)); err != nil {
				return &SMTPError{"rcpt", err}
			}
		}
	}
	w, err := c.client.Data()
	if err != nil {
		return &SMTPError{"data", err}
	}
	// The DATA writer dot-stuffs lines that begin with "." and ends with CRLF.CRLF.
	if _, err := w.Write(msg); err != nil {
		w.Close()
		return &SMTPError{"data", err}
	}
	if err := w.Close(); err != nil {
		return &SMTPError{"data", err}
	}
	return nil
}

// get returns a kept session (reused) or a new one.
func (s *SMTP) get(ctx context.Context) (c *smtpConn, reused bool, err error) {
	for {
		select {
		case c := <-s.idle:
			if time.Since(c.idleSince) > s.cfg.IdleTimeout {
				c.close()
				continue
			}
			return c, true, nil
		default:
			c, err := s.dial(ctx)
			return c, false, err
		}
	}
}

func (s *SMTP) put(c *smtpConn) {
	c.idleSince = time.Now()
	select {
	case s.idle <- c:
	default:
		c.quit()
	}
}

func (s *SMTP) dial(ctx context.Context) (*smtpConn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return nil, &SMTPError{"connect", err}
	}
	c := &smtpConn{raw: raw}
	stop := c.watch(ctx)
	defer stop()
	client, err := smtp.NewClient(raw, s.host)
	if err != nil {
		raw.Close()
		return nil, &SMTPError{"connect", err}
	}
	c.client = client
	if err := client.Hello(s.cfg.HelloName); err != nil {
		c.close()
		return nil, &SMTPError{"hello", err}
	}
	if !s.cfg.PlainText {
		if ok, _ := client.Extension("STARTTLS"); !ok {
			c.close()
			return nil, &SMTPError{"starttls", ErrNoSTARTTLS}
		}
		tc := &tls.Config{ServerName: s.host, RootCAs: s.cfg.RootCAs, MinVersion: tls.VersionTLS12}
		if err := client.StartTLS(tc); err != nil {
			c.close()
			return nil, &SMTPError{"starttls", err}
		}
	}
	if s.cfg.Username != "" {
		if ok, _ := client.Extension("AUTH"); !ok {
			c.close()
			return nil, &SMTPError{"auth", ErrNoAuth}
		}
		// net/smtp's PLAIN refuses to send credentials without TLS except to
		// localhost, which is what we want as well.
		if err := client.Auth(smtp.PlainAuth("", s.cfg.Username, s.cfg.Password, s.host)); err != nil {
			c.close()
			return nil, &SMTPError{"auth", err}
		}
	}
	return c, nil
}

// Close ends the kept sessions.
func (s *SMTP) Close() error {
	for {
		select {
		case c := <-s.idle:
			c.quit()
		default:
			return nil
		}
	}
}

type smtpConn struct {
	client    *smtp.Client
	raw       net.Conn
	idleSince time.Time
}

// watch applies ctx's deadline and cancellation to the connection: net/smtp
// takes no context, so a cancelled ctx expires the connection's deadline.
func (c *smtpConn) watch(ctx context.Context) (stop func()) {
	if d, ok := ctx.Deadline(); ok {
		c.raw.SetDeadline(d)
	}
	var once sync.Once
	cancelWatch := context.AfterFunc(ctx, func() { c.raw.SetDeadline(time.Unix(1, 0)) })
	return func() {
		once.Do(func() {
			cancelWatch()
			c.raw.SetDeadline(time.Time{})
		})
	}
}

func (c *smtpConn) quit() {
	c.raw.SetDeadline(time.Now().Add(2 * time.Second))
	if c.client != nil {
		c.client.Quit()
	}
	c.raw.Close()
}

func (c *smtpConn) close() {
	if c.client != nil {
		c.client.Close()
	}
	c.raw.Close()
}
