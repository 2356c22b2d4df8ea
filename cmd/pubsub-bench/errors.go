package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
)

// classify names an error without addresses or ports, so the counts of
// distinct errors stay few, and says what to change when it is a limit.
func classify(err error) string {
	var errno syscall.Errno
	switch {
	case err == nil:
		return "closed"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files in the load client: raise its RLIMIT_NOFILE hard limit or use more -procs"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no free local port: use more -sources"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused: is the server running, is its listen backlog (net.core.somaxconn) full?"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the server (its open-files limit? it stopped?)"
	case errors.Is(err, errLate):
		return errLate.Error()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.As(err, &errno):
		return errno.Error()
	}
	var status statusError
	if errors.As(err, &status) {
		return status.Error()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	var pe protocolError
	if errors.As(err, &pe) {
		return pe.Error()
	}
	// The last part of a wrapped error names the cause without the
	// addresses before it.
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return "error: " + msg[:min(len(msg), 100)]
}

// statusError is an HTTP error answer to a subscribe request.
type statusError struct {
	code   int
	reason string
}

func (e statusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.code, e.reason) }

// protocolError is a server answer the client cannot read.
type protocolError string

func (e protocolError) Error() string { return string(e) }

// errorCounts counts errors by name, keeping at most maxErrorKinds names.
type errorCounts struct {
	mu sync.Mutex
	m  map[string]int64
}

const maxErrorKinds = 16

func (e *errorCounts) add(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m == nil {
		e.m = map[string]int64{}
	}
	if _, ok := e.m[name]; !ok && len(e.m) >= maxErrorKinds {
		name = "other errors"
	}
	e.m[name]++
}

func (e *errorCounts) snapshot() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.m) == 0 {
		return nil
	}
	out := make(map[string]int64, len(e.m))
	for k, v := range e.m {
		out[k] = v
	}
	return out
}
