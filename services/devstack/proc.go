package devstack

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one child process of the stack. It runs in its own process group,
// so a signal reaches it and anything it started, and an interactive Ctrl-C
// reaches only the launcher, which then stops its children in order.
type proc struct {
	name    string
	logPath string
	echo    io.Writer // nil: log file only

	mu   sync.Mutex // guards cmd, done, err
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and been reaped
	err  error         // from Wait
}

type procSpec struct {
	path      string
	args      []string
	variables []string
	dir       string
	// onStdout sees each stdout line (for ready lines); may be nil.
	onStdout func(line string)
}

// start launches the process; its stdout and stderr go, line by line, to the
// log file (appended to, so restarts keep history) and to echo.
func (p *proc) start(spec procSpec) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !isClosed(p.done) {
		return fmt.Errorf("%s is already running (pid %d)", p.name, p.cmd.Process.Pid)
	}
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: open log: %w", p.name, err)
	}
	out := &lineSink{file: logFile, echo: p.echo, prefix: "[" + p.name + "] "}
	fmt.Fprintf(logFile, "--- %s: starting %s %s\n", time.Now().Format(time.RFC3339Nano), spec.path, strings.Join(spec.args, " "))

	cmd := exec.Command(spec.path, spec.args...)
	cmd.Env = spec.variables
	cmd.Dir = spec.dir
	cmd.Stdin = nil
	stdout := &lineWriter{sink: out, onLine: spec.onStdout}
	stderr := &lineWriter{sink: out}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = sysProcAttr()
	// If something outside the group still holds the output pipes, do not
	// let Wait hang on them.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("%s: start %s: %w", p.name, spec.path, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.err = cmd, done, nil
	go func() {
		err := cmd.Wait()
		stdout.flush()
		stderr.flush()
		// Sweep the group: nothing the process started may outlive it.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		fmt.Fprintf(logFile, "--- %s: exited: %v\n", time.Now().Format(time.RFC3339Nano), exitText(err))
		logFile.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// running reports whether the process is alive, with its pid.
func (p *proc) running() (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || isClosed(p.done) {
		return 0, false
	}
	return p.cmd.Process.Pid, true
}

// exited is closed when the current process has exited; nil if never started.
func (p *proc) exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// exitErr is how the last process ended (nil: exit status 0).
func (p *proc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// stop sends SIGTERM to the group and waits up to grace, then SIGKILLs. It
// returns an error when the process did not exit cleanly on SIGTERM.
func (p *proc) stop(grace time.Duration) error {
	pid, ok := p.running()
	if !ok {
		return nil
	}
	done := p.exited()
	syscall.Kill(-pid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		syscall.Kill(-pid, syscall.SIGKILL)
		<-done
		return fmt.Errorf("%s (pid %d) did not exit within %s of SIGTERM; killed", p.name, pid, grace)
	}
	if err := p.exitErr(); err != nil && !diedOf(err, syscall.SIGTERM) {
		return fmt.Errorf("%s (pid %d) on SIGTERM: %s", p.name, pid, exitText(err))
	}
	return nil
}

// diedOf: the process ended by sig without handling it (how Node.js stops on
// SIGTERM), which for the signal a stop sent is a clean end.
func diedOf(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// kill sends SIGKILL to the group and waits until the process is reaped.
func (p *proc) kill() {
	pid, ok := p.running()
	if !ok {
		return
	}
	done := p.exited()
	syscall.Kill(-pid, syscall.SIGKILL)
	<-done
}

// tail returns the last n lines of the log, for error messages.
func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func isClosed(c chan struct{}) bool {
	if c == nil {
		return true
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// lineSink writes whole lines to a log file and, prefixed, to echo.
type lineSink struct {
	mu     sync.Mutex
	file   *os.File
	echo   io.Writer
	prefix string
}

func (s *lineSink) line(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.file.Write(b)
	if s.echo != nil {
		s.echo.Write(append([]byte(s.prefix), b...))
	}
}

// lineWriter splits a stream into lines for a lineSink.
type lineWriter struct {
	sink   *lineSink
	onLine func(string)
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := w.buf[:i+1]
		w.sink.line(line)
		if w.onLine != nil {
			w.onLine(string(line[:i]))
		}
		w.buf = w.buf[i+1:]
	}
	// A very long line without a newline is flushed as it is.
	if len(w.buf) > 64<<10 {
		w.flush()
	}
	return len(p), nil
}

// flush writes out a last line that had no newline.
func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.sink.line(append(w.buf, '\n'))
		w.buf = nil
	}
}
