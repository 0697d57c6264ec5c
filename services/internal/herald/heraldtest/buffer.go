// Package heraldtest holds helpers the services' tests share (test code only;
// the shared production code is package herald).
package heraldtest

import (
	"bytes"
	"sync"
)

// Buffer collects output written from other goroutines (a logger, a child
// process's copier) and reads it back whole while they may still write.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
