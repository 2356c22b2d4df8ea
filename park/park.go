// Package park holds long-lived streaming connections that mostly wait,
// without a goroutine each: on Linux an epoll instance notices peers that
// close or fail, and a small pool of workers writes what the streams have
// to send without ever blocking on a socket. Elsewhere Supported is false,
// and transports keep a goroutine per connection.
package park

import (
	"errors"
	"time"
)

// Stream is what a parked connection carries. The core calls its methods
// on one worker goroutine at a time, never at once.
type Stream interface {
	// Send appends to buf what the stream has to send at now (queued
	// messages, a heartbeat that is due, a closing reason) and returns
	// it; next is when it wants to be asked again though not notified
	// (zero: only when notified), and end says the connection closes once
	// what it returned is out. The core asks it when notified, at next,
	// and only when the socket has taken everything it was given before,
	// so what a slow peer has not read waits in the stream's own queue.
	Send(buf []byte, now time.Time) (out []byte, next time.Time, end bool)
	// Closed is called once, after the connection was closed: err is nil
	// when Send ended it, else why it closed.
	Closed(err error)
}

// Receiver is a Stream that takes what the peer sends (a WebSocket's
// frames). Without it, any byte from the peer closes the connection.
type Receiver interface {
	Stream
	// Receive is called, on the worker, before Send when the socket may
	// have bytes to read: it calls read, which never blocks, until read
	// returns ErrWouldBlock or it wants no more for now; then it calls
	// Notify once it wants to read again. read returns io.EOF when the
	// peer closed its side. An error closes the connection.
	Receive(read func(p []byte) (int, error)) error
}

// ErrWouldBlock is what a Receiver's read returns when the socket holds
// nothing more for now: the core calls Receive again when it does.
var ErrWouldBlock = errors.New("park: nothing to read")

// Why a parked connection was closed other than by its stream.
var (
	// ErrPeerGone: the peer closed the connection, reset it, or stopped
	// acknowledging (TCP keepalive or TCP_USER_TIMEOUT gave up).
	ErrPeerGone = errors.New("peer closed the connection")
	// ErrUnexpectedData: the peer sent bytes on a connection that carries
	// no more requests.
	ErrUnexpectedData = errors.New("peer sent data on a parked stream")
	// ErrWriteTimeout: bytes waited longer than the write timeout for the
	// peer to read them.
	ErrWriteTimeout = errors.New("write timed out")
)

// Keepalive settings of a parked socket: a peer that vanishes without a
// FIN (a laptop closed, a NAT entry dropped) is noticed by keepalive
// probes when nothing is sent, and by TCP_USER_TIMEOUT when sent bytes
// stay unacknowledged (a heartbeat), so it is dropped within about
// keepAliveIdle + keepAliveCount*keepAliveInterval, or userTimeout after
// the first unacknowledged write.
const (
	keepAliveIdle     = 30 * time.Second
	keepAliveInterval = 10 * time.Second
	keepAliveCount    = 3
)

// userTimeout is TCP_USER_TIMEOUT; a variable, so a test of a vanishing
// peer need not wait for it.
var userTimeout = 20 * time.Second
