//go:build !linux

package park

import (
	"errors"
	"net"
	"time"
)

// Supported reports whether this platform parks connections.
const Supported = false

// Conn is a parked connection; there are none on this platform.
type Conn struct{}

// Notify does nothing on this platform.
func (c *Conn) Notify() {}

// Park fails on this platform: transports keep their goroutine.
func Park(net.Conn, Stream, time.Duration) (*Conn, error) {
	return nil, errors.New("parking connections needs Linux")
}

// Wait returns true at once: nothing is parked on this platform.
func Wait(time.Duration) bool { return true }
