package herald

import (
	"io"
	"log/slog"
	"sync"
)

// SyncWriter serialises whole writes to one destination, so JSON log lines
// and metric lines written from many goroutines never interleave.
type SyncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// NewSyncWriter wraps w (the process's stdout in main).
func NewSyncWriter(w io.Writer) *SyncWriter { return &SyncWriter{w: w} }

func (s *SyncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// NewLogger is the one JSON logger a service makes in main and passes down.
func NewLogger(w io.Writer, level, environment, service string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})
	return slog.New(h).With("service", service, "env", environment)
}

// MaskSecret shows only whether a secret is set.
func MaskSecret(s string) string {
	if s == "" {
		return ""
	}
	return "***"
}
