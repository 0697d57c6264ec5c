package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"herald/services/internal/herald"
)

// Requests refused without a valid API key (401, and 404 or 405 before any
// key) cost an attacker nothing, so their log lines are sampled: at most
// unauthLogBurst at once, then unauthLogRate a second. The Rejected metric
// still counts every one.
const (
	unauthLogBurst = 10
	unauthLogRate  = 1
)

// unreadBodyLinger is how long a connection answered before its request
// body was read stays open to read the rest; net/http's own lingering close
// waits 500 ms.
const unreadBodyLinger = time.Second

// logSampler lets at most burst lines through at once and rate a second
// after, and counts the ones it held back so the next line can say so.
type logSampler struct {
	lim *rate.Limiter

	mu         sync.Mutex
	suppressed int
}

func newLogSampler(perSecond float64, burst int) *logSampler {
	return &logSampler{lim: rate.NewLimiter(rate.Limit(perSecond), burst)}
}

// allow says whether to log a line now, and how many lines were held back
// since the last one it allowed.
func (l *logSampler) allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.lim.AllowN(now, 1) {
		l.suppressed++
		return false, 0
	}
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}

// requestInfo is what a handler learns that the request log line reports.
// Only the handler's goroutine writes it, before the log line is written.
type requestInfo struct {
	requestID          string
	keyID              string
	notificationID     string
	accepted, rejected int
}

type infoKey struct{}

// info returns the request's requestInfo (a throwaway one outside observe,
// so handlers never check for nil).
func info(r *http.Request) *requestInfo {
	if ri, ok := r.Context().Value(infoKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{}
}

// validRequestID accepts a caller's X-Request-Id when it is short printable
// ASCII, so it is safe to echo and to log.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// statusRecorder notes the status and size of a reply, and closes the
// connection after a reply sent before the request's body was read to its
// end. Otherwise net/http reads up to 256 KiB of the unread body before it
// writes the reply, so a slow client without a key would hold the
// connection for the whole read timeout and get no answer.
type statusRecorder struct {
	http.ResponseWriter
	body   *trackedBody // nil when the request has no body
	status int
	bytes  int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
		if s.body != nil && !s.body.done.Load() {
			s.Header().Set("Connection", "close")
			// net/http still reads what is left (up to 256 KiB) after the
			// reply: let it for unreadBodyLinger, so the client takes in
			// the reply before the socket closes, not the read timeout.
			_ = http.NewResponseController(s.ResponseWriter).SetReadDeadline(time.Now().Add(unreadBodyLinger))
		}
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += n
	return n, err
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// trackedBody notes when a request body has been read to its end.
type trackedBody struct {
	io.ReadCloser
	done atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.done.Store(true)
	}
	return n, err
}

// observe gives every request an id (the caller's X-Request-Id when usable),
// turns a panic into a 500, and writes one log line per request: never a
// body, an address or a key, only the key's id.
func (s *server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &requestInfo{requestID: r.Header.Get("X-Request-Id")}
		if !validRequestID(ri.requestID) {
			ri.requestID = herald.NewID()
		}
		w.Header().Set("X-Request-Id", ri.requestID)
		rec := &statusRecorder{ResponseWriter: w}
		if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			rec.body = &trackedBody{ReadCloser: r.Body}
			r.Body = rec.body
		}
		r = r.WithContext(context.WithValue(r.Context(), infoKey{}, ri))
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("panic", "requestId", ri.requestID, "panic", p, "stack", string(debug.Stack()))
				if rec.status == 0 {
					writeProblem(rec, newProblem(http.StatusInternalServerError, "internal", ""))
				}
			}
			status := rec.status
			if status == 0 {
				status = http.StatusOK // nothing written: net/http sends 200
			}
			path := r.URL.Path
			if len(path) > 200 {
				path = path[:200] + "..."
			}
			attrs := []slog.Attr{
				slog.String("requestId", ri.requestID),
				slog.String("method", r.Method),
				slog.String("path", path),
				slog.Int("status", status),
				slog.Float64("latencyMs", float64(time.Since(start).Microseconds())/1000),
				slog.Int("bytes", rec.bytes),
			}
			if ri.keyID != "" {
				attrs = append(attrs, slog.String("keyId", ri.keyID))
			}
			if ri.notificationID != "" {
				attrs = append(attrs, slog.String("notificationId", ri.notificationID))
			}
			if ri.accepted+ri.rejected > 0 {
				attrs = append(attrs, slog.Int("accepted", ri.accepted), slog.Int("rejected", ri.rejected))
			}
			if ri.keyID == "" && status >= 400 && status < 500 {
				ok, suppressed := s.unauthLog.allow(s.now())
				if !ok {
					return
				}
				if suppressed > 0 {
					attrs = append(attrs, slog.Int("suppressed", suppressed))
				}
			}
			level := slog.LevelInfo
			if status >= 500 {
				level = slog.LevelWarn
			}
			s.log.LogAttrs(r.Context(), level, "request", attrs...)
		}()
		next.ServeHTTP(rec, r)
	})
}
