package main

import (
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"herald/services/internal/herald"
)

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

type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += n
	return n, err
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

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
			level := slog.LevelInfo
			if status >= 500 {
				level = slog.LevelWarn
			}
			s.log.LogAttrs(r.Context(), level, "request", attrs...)
		}()
		next.ServeHTTP(rec, r)
	})
}
