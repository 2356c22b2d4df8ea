package park

import (
	"net"
	"time"
)

// Blocking serves a Stream on a goroutine of its own, with blocking
// writes: for a connection Park cannot take (one that a listener wrapper
// hands over as something other than plain TCP, or any connection where
// Supported is false) once it has left net/http.
type Blocking struct {
	nc           net.Conn
	stream       Stream
	writeTimeout time.Duration
	wake         chan struct{}
}

// NewBlocking returns the server of stream on nc; call Run to serve it.
func NewBlocking(nc net.Conn, stream Stream, writeTimeout time.Duration) *Blocking {
	return &Blocking{nc: nc, stream: stream, writeTimeout: writeTimeout, wake: make(chan struct{}, 1)}
}

// Notify asks Run to call the stream's Send soon; it returns at once.
func (b *Blocking) Notify() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Run serves the stream until it ends or the connection fails, then
// closes the connection and calls the stream's Closed.
func (b *Blocking) Run() {
	gone := make(chan struct{})
	go func() {
		// Nothing is expected from the peer: any byte, or the end,
		// closes the stream.
		defer close(gone)
		_, _ = b.nc.Read(make([]byte, 1))
	}()
	err := b.serve(gone)
	_ = b.nc.Close()
	<-gone
	b.stream.Closed(err)
}

func (b *Blocking) serve(gone <-chan struct{}) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var buf []byte
	for {
		now := time.Now()
		out, next, end := b.stream.Send(buf[:0], now)
		if len(out) > 0 {
			_ = b.nc.SetWriteDeadline(now.Add(b.writeTimeout))
			if _, err := b.nc.Write(out); err != nil {
				return err
			}
			buf = out[:0]
		}
		if end {
			return nil
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = time.Until(next)
		}
		timer.Reset(wait)
		select {
		case <-b.wake:
		case <-timer.C:
		case <-gone:
			return ErrPeerGone
		}
	}
}
