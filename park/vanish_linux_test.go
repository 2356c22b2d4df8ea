package park

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// beatStream sends a heartbeat every interval, as an idle SSE stream does.
type beatStream struct {
	interval time.Duration
	closed   chan error
}

func (s *beatStream) Send(buf []byte, now time.Time) ([]byte, time.Time, bool) {
	return append(buf, ":\n"...), now.Add(s.interval), false
}

func (s *beatStream) Closed(err error) { s.closed <- err }

// readingBeatStream is a beatStream that also reads, as a parked
// WebSocket does: its peer's silence must end it the same way.
type readingBeatStream struct{ *beatStream }

func (s readingBeatStream) Receive(read func([]byte) (int, error)) error {
	for {
		if _, err := read(make([]byte, 64)); err != nil {
			if errors.Is(err, ErrWouldBlock) {
				return nil
			}
			return err
		}
	}
}

// A peer that vanishes without a FIN or a reset (its link goes down) is
// dropped within TCP_USER_TIMEOUT of the first heartbeat it does not
// acknowledge. The two ends live in network namespaces of their own,
// joined by a veth pair, so taking the client's link down touches nothing
// outside the test. A stream that reads (a WebSocket) is dropped as one
// that only writes (SSE).
func TestVanishedPeerIsDropped(t *testing.T) {
	t.Run("writing", func(t *testing.T) {
		s := &beatStream{interval: 200 * time.Millisecond, closed: make(chan error, 1)}
		vanish(t, s, s.closed)
	})
	t.Run("reading", func(t *testing.T) {
		s := &beatStream{interval: 200 * time.Millisecond, closed: make(chan error, 1)}
		vanish(t, readingBeatStream{s}, s.closed)
	})
}

func vanish(t *testing.T, s Stream, closed <-chan error) {
	if os.Getuid() != 0 || exec.Command("ip", "-V").Run() != nil {
		if os.Getenv("PUBSUB_REQUIRE_SERVICES") == "1" {
			t.Fatal("needs root and iproute2's ip for network namespaces")
		}
		t.Skip("needs root and iproute2's ip for network namespaces")
	}
	prev := userTimeout
	userTimeout = time.Second
	t.Cleanup(func() { userTimeout = prev })

	srvNS, cliNS := fmt.Sprintf("pubsub-park-s%d", os.Getpid()), fmt.Sprintf("pubsub-park-c%d", os.Getpid())
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	ip("netns", "add", srvNS)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", srvNS).Run() })
	ip("netns", "add", cliNS)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", cliNS).Run() })
	ip("link", "add", "srv0", "netns", srvNS, "type", "veth", "peer", "name", "cli0", "netns", cliNS)
	ip("-n", srvNS, "addr", "add", "10.255.0.1/30", "dev", "srv0")
	ip("-n", cliNS, "addr", "add", "10.255.0.2/30", "dev", "cli0")
	ip("-n", srvNS, "link", "set", "srv0", "up")
	ip("-n", cliNS, "link", "set", "cli0", "up")

	var ln net.Listener
	inNetns(t, srvNS, func() (err error) {
		ln, err = net.Listen("tcp", "10.255.0.1:0")
		return err
	})
	defer ln.Close()
	var client net.Conn
	inNetns(t, cliNS, func() (err error) {
		client, err = net.DialTimeout("tcp", ln.Addr().String(), wait)
		return err
	})
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Park(server, s, wait); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(wait))
	if _, err := client.Read(make([]byte, 16)); err != nil {
		t.Fatalf("no heartbeat before the link went down: %v", err)
	}

	ip("-n", cliNS, "link", "set", "cli0", "down")
	start := time.Now()
	select {
	case err := <-closed:
		if !errors.Is(err, ErrPeerGone) {
			t.Fatalf("closed with %v, want ErrPeerGone", err)
		}
		t.Logf("vanished peer dropped after %s", time.Since(start).Round(time.Millisecond))
	case <-time.After(wait):
		t.Fatalf("vanished peer still parked after %s", wait)
	}
}

// inNetns runs f on a thread in the named network namespace: the sockets
// it opens belong to that namespace for good. The thread is never given
// back to the runtime, which ends it with the goroutine.
func inNetns(t *testing.T, name string, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/var/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("in network namespace %s: %v", name, err)
	}
}
