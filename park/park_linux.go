package park

import (
	"container/heap"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Supported reports whether this platform parks connections.
const Supported = true

// The epoll events a parked connection waits for, edge-triggered: data or
// a close from the peer, an error, and room in the send buffer (reported
// only after a write filled it, so an idle socket never wakes anyone).
const watched = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLOUT | unix.EPOLLET

// writeBuffer is the size a worker's buffer for a stream's Send starts
// at; it grows if a stream sends more at once, and is reused.
const writeBuffer = 64 << 10

// core is one epoll instance, the goroutine that waits on it, and the
// workers. It runs while connections are parked: the first Park starts
// it, and the last connection to close stops it.
type core struct {
	epfd    int
	wakefd  int // an eventfd that ends the poller
	workers []*worker

	mu    sync.Mutex
	conns map[uint64]*Conn

	stopped chan struct{} // closed when the last connection is gone
}

var (
	coreMu sync.Mutex
	active *core
	nextID uint64 // guarded by coreMu; 0 is the wake eventfd
)

// Conn is a parked connection.
type Conn struct {
	id           uint64
	core         *core
	worker       *worker
	nc           net.Conn
	raw          syscall.RawConn
	stream       Stream
	writeTimeout time.Duration

	scheduled atomic.Bool   // waiting in its worker's run queue
	events    atomic.Uint32 // epoll events not yet handled
	closed    atomic.Bool

	// A TLS connection's bytes go out through tls on a goroutine of its
	// own while it has some (writeTLS): crypto/tls cannot resume a write
	// that the socket did not take whole.
	tls     *tls.Conn
	wmu     sync.Mutex
	wqueue  []byte // what the writer writes
	writing bool   // the writer runs
	werr    error  // why the last write failed
	// And a Receiver's bytes come through tls from a goroutine that runs
	// while the peer sends (readTLS).
	rmu      sync.Mutex
	inbox    []byte // read, not yet received
	rerr     error  // why reading ended
	reading  bool   // the reader runs
	rewake   bool   // the socket became readable while it ran
	overfull bool   // the reader stopped for a full inbox

	// Used by its worker only.
	readable     bool      // the socket may hold bytes a Receiver has not read
	pending      []byte    // what the socket did not take
	pendingSince time.Time // when pending last was empty
	ending       bool      // close once pending is out
	timerAt      time.Time // its live entry in the worker's timers
}

// Park hands nc, a TCP connection whose request was answered up to the
// stream, to the core: from now on stream decides what it gets, and
// bytes that wait longer than writeTimeout for the peer close it. nc must
// be a plain TCP connection, or TLS over one; on error it is left as it
// was.
func Park(nc net.Conn, stream Stream, writeTimeout time.Duration) (*Conn, error) {
	tc, isTLS := nc.(*tls.Conn)
	if isTLS {
		nc = tc.NetConn()
	}
	tcp, ok := nc.(*net.TCPConn)
	if !ok {
		return nil, fmt.Errorf("park: %T is not a TCP connection", nc)
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("park: %w", err)
	}
	if err := tcp.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: keepAliveIdle, Interval: keepAliveInterval, Count: keepAliveCount}); err != nil {
		return nil, fmt.Errorf("park: keepalive: %w", err)
	}
	// Deadlines belong to Go's poller, which no longer reads or writes it.
	_ = nc.SetDeadline(time.Time{})

	coreMu.Lock()
	defer coreMu.Unlock()
	if active == nil {
		if active, err = startCore(); err != nil {
			return nil, err
		}
	}
	nextID++
	c := &Conn{
		id:           nextID,
		core:         active,
		worker:       active.workers[nextID%uint64(len(active.workers))],
		nc:           nc,
		raw:          raw,
		tls:          tc,
		stream:       stream,
		writeTimeout: writeTimeout,
	}
	// In the map before epoll knows it: an event may come at once.
	active.mu.Lock()
	active.conns[c.id] = c
	active.mu.Unlock()
	ev := unix.EpollEvent{Events: watched, Fd: int32(uint32(c.id)), Pad: int32(uint32(c.id >> 32))}
	var ctlErr error
	err = raw.Control(func(fd uintptr) {
		if ctlErr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(userTimeout/time.Millisecond)); ctlErr != nil {
			return
		}
		ctlErr = unix.EpollCtl(active.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err = errors.Join(err, ctlErr); err != nil {
		active.mu.Lock()
		delete(active.conns, c.id)
		active.mu.Unlock()
		if len(active.conns) == 0 {
			active.stop()
			active = nil
		}
		return nil, fmt.Errorf("park: %w", err)
	}
	c.schedule()
	return c, nil
}

// Notify asks the connection's worker to call its stream's Send soon. It
// returns at once, so it may be called under any lock (the hub's fan-out
// calls it for each subscriber it queued a message for).
func (c *Conn) Notify() {
	if !c.closed.Load() {
		c.schedule()
	}
}

func (c *Conn) schedule() {
	if c.scheduled.CompareAndSwap(false, true) {
		c.worker.push(c)
	}
}

func startCore() (*core, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("park: epoll: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("park: eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &unix.EpollEvent{Events: unix.EPOLLIN}); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, fmt.Errorf("park: epoll: %w", err)
	}
	c := &core{epfd: epfd, wakefd: wakefd, conns: map[uint64]*Conn{}, stopped: make(chan struct{})}
	// A worker never blocks on a socket, so one per processor keeps them
	// all busy under load, and a slow peer stalls none.
	for range runtime.GOMAXPROCS(0) {
		w := newWorker()
		c.workers = append(c.workers, w)
		go w.run()
	}
	go c.poll()
	return c, nil
}

// stop ends the poller and the workers; coreMu is held and no connection
// is parked. They return on their own: the last connection's worker
// calls it.
func (c *core) stop() {
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	_, _ = unix.Write(c.wakefd, one)
	for _, w := range c.workers {
		close(w.stop)
	}
	close(c.stopped)
}

// Wait waits, at most d, until no connection is parked, and reports
// whether none is. A server that stops ends its streams and waits for
// their last bytes to go out: its graceful shutdown does not see them.
func Wait(d time.Duration) bool {
	coreMu.Lock()
	c := active
	coreMu.Unlock()
	if c == nil {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.stopped:
		return true
	case <-t.C:
		return false
	}
}

// poll waits for epoll events and hands them to the connections' workers.
func (c *core) poll() {
	defer unix.Close(c.wakefd)
	defer unix.Close(c.epfd)
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(c.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			// Only a bug (a closed epoll fd) gets here: close what is
			// parked rather than leave it unwatched.
			c.mu.Lock()
			for _, conn := range c.conns {
				conn.events.Or(unix.EPOLLERR)
				conn.schedule()
			}
			c.mu.Unlock()
			return
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == 0 {
				return
			}
			c.mu.Lock()
			conn := c.conns[id]
			c.mu.Unlock()
			if conn != nil {
				conn.events.Or(ev.Events)
				conn.schedule()
			}
		}
	}
}

// release forgets a closed connection, and stops the core with the last.
func (c *core) release(conn *Conn) {
	coreMu.Lock()
	defer coreMu.Unlock()
	c.mu.Lock()
	delete(c.conns, conn.id)
	last := len(c.conns) == 0
	c.mu.Unlock()
	if last && active == c {
		active = nil
		c.stop()
	}
}

// worker runs the connections scheduled on it, one at a time, and their
// timers.
type worker struct {
	mu   sync.Mutex
	runq []*Conn

	wake chan struct{} // a token when runq may hold connections
	stop chan struct{}

	// Used by the worker's goroutine only.
	timers timers
	buf    []byte
	io     *sockIO
	// cur is the connection whose Receiver runs; receive and receiveTLS
	// are its read functions, made once for the same reason as io's.
	cur                 *Conn
	receive, receiveTLS func(p []byte) (int, error)
}

func newWorker() *worker {
	w := &worker{wake: make(chan struct{}, 1), stop: make(chan struct{}), buf: make([]byte, 0, writeBuffer), io: newSockIO()}
	w.receive = func(p []byte) (int, error) { return w.cur.receive(p) }
	w.receiveTLS = func(p []byte) (int, error) { return w.cur.receiveTLS(p) }
	return w
}

// sockIO is a worker's non-blocking read and write on a socket, as
// functions for syscall.RawConn made once: a closure made per call would
// escape to the heap with what it captures, some allocations for every
// delivery.
type sockIO struct {
	p     []byte
	n     int
	err   error
	write func(fd uintptr) bool
	read  func(fd uintptr) bool
}

func newSockIO() *sockIO {
	s := &sockIO{}
	s.write, s.read = s.writeFD, s.readFD
	return s
}

// writeFD writes p[n:] to fd, adding what it wrote to n. A peer that
// reads slowly but steadily would keep a loop writing for as long as it
// reads: two calls at most, then the socket's EPOLLOUT, or the run queue,
// brings the connection back.
func (s *sockIO) writeFD(fd uintptr) bool {
	for calls := 0; s.n < len(s.p) && calls < 2; {
		n, err := unix.Write(int(fd), s.p[s.n:])
		if err == unix.EINTR {
			continue
		}
		calls++
		if err != nil {
			s.err = err
			return true
		}
		s.n += n
	}
	return true
}

// readFD reads once into p, retrying when interrupted.
func (s *sockIO) readFD(fd uintptr) bool {
	for {
		s.n, s.err = unix.Read(int(fd), s.p)
		if s.err != unix.EINTR {
			return true
		}
	}
}

func (w *worker) push(c *Conn) {
	w.mu.Lock()
	w.runq = append(w.runq, c)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) run() {
	wakeAt := time.NewTimer(time.Hour)
	defer wakeAt.Stop()
	var batch []*Conn
	for {
		w.mu.Lock()
		batch, w.runq = w.runq, batch[:0]
		w.mu.Unlock()
		now := time.Now()
		for _, c := range batch {
			c.scheduled.Store(false)
			c.run(w, now)
		}
		clear(batch)
		for len(w.timers) > 0 && !w.timers[0].at.After(now) {
			t := heap.Pop(&w.timers).(timer)
			if c := t.conn; t.at.Equal(c.timerAt) && !c.closed.Load() {
				c.timerAt = time.Time{}
				c.run(w, now)
			}
		}
		if len(w.timers) > 0 {
			wakeAt.Reset(time.Until(w.timers[0].at))
		} else {
			wakeAt.Stop()
		}
		select {
		case <-w.wake:
		case <-wakeAt.C:
		case <-w.stop:
			return
		}
	}
}

// run handles what happened to c: the peer's events, bytes still to write,
// and its stream's Send.
func (c *Conn) run(w *worker, now time.Time) {
	if c.closed.Load() {
		return
	}
	ev := c.events.Swap(0)
	if r, ok := c.stream.(Receiver); ok {
		// What the peer sent before it closed still counts: a
		// WebSocket's close frame comes with the FIN.
		c.readable = c.readable || ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP) != 0
		if ev&unix.EPOLLERR != 0 {
			c.close(ErrPeerGone)
			return
		}
		w.cur = c
		defer func() { w.cur = nil }()
		read := w.receive
		if c.tls != nil {
			// Only crypto/tls can read a TLS socket: a reader goroutine
			// does, while the peer sends.
			if c.readable {
				c.readable = false
				c.startReader()
			}
			read = w.receiveTLS
		}
		if c.readable || (c.tls != nil && c.hasInbox()) {
			if err := r.Receive(read); err != nil {
				c.close(err)
				return
			}
		}
	} else {
		switch {
		case ev&(unix.EPOLLERR|unix.EPOLLHUP|unix.EPOLLRDHUP) != 0:
			c.close(ErrPeerGone)
			return
		case ev&unix.EPOLLIN != 0:
			if err := c.read(); err != nil {
				c.close(err)
				return
			}
		}
	}
	if c.tls != nil {
		c.runTLS(w, now)
		return
	}
	if len(c.pending) > 0 {
		if !c.write(nil, now) {
			return
		}
		if len(c.pending) > 0 {
			c.waitWritable(w, now)
			return
		}
		if c.ending {
			c.close(nil)
			return
		}
	}
	out, next, end := c.stream.Send(w.buf[:0], now)
	if cap(out) > cap(w.buf) {
		w.buf = out[:0]
	}
	if !c.write(out, now) {
		return
	}
	switch {
	case end && len(c.pending) == 0:
		c.close(nil)
	case end:
		c.ending = true
		c.waitWritable(w, now)
	case len(c.pending) > 0:
		c.waitWritable(w, now)
	default:
		c.arm(w, next)
	}
}

// runTLS is run's writing half for a TLS connection: the stream's bytes
// go to a writer goroutine, and the stream is asked again once they are
// out.
func (c *Conn) runTLS(w *worker, now time.Time) {
	c.wmu.Lock()
	writing, err := c.writing, c.werr
	c.wmu.Unlock()
	switch {
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
		c.close(ErrWriteTimeout)
		return
	case err != nil:
		c.close(fmt.Errorf("%w: %w", ErrPeerGone, err))
		return
	case writing:
		// The writer schedules c when it is done.
		return
	case c.ending:
		c.close(nil)
		return
	}
	out, next, end := c.stream.Send(w.buf[:0], now)
	if cap(out) > cap(w.buf) {
		w.buf = out[:0]
	}
	if len(out) == 0 {
		if end {
			c.close(nil)
		} else {
			c.arm(w, next)
		}
		return
	}
	c.ending = end
	c.wmu.Lock()
	c.wqueue = append(c.wqueue[:0], out...)
	c.writing = true
	c.wmu.Unlock()
	go c.writeTLS()
}

// A TLS connection's reader goroutine reads as long as the peer sends,
// and tlsLinger more; it stops when tlsInbox bytes wait for Receive.
const (
	tlsLinger = 50 * time.Millisecond
	tlsInbox  = 16 << 10
)

// startReader starts the reader goroutine, or, if it runs, makes it go on
// when it would have stopped.
func (c *Conn) startReader() {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.reading {
		c.rewake = true
		return
	}
	if c.rerr != nil || len(c.inbox) >= tlsInbox {
		return
	}
	c.reading = true
	go c.readTLS()
}

// readTLS reads through crypto/tls into the inbox and has the worker
// hand it to the stream. A read that times out with half a record leaves
// it in crypto/tls, which goes on with it at the next read.
func (c *Conn) readTLS() {
	buf := make([]byte, 4<<10)
	for {
		_ = c.tls.SetReadDeadline(time.Now().Add(tlsLinger))
		n, err := c.tls.Read(buf)
		c.rmu.Lock()
		c.inbox = append(c.inbox, buf[:n]...)
		idle := errors.Is(err, os.ErrDeadlineExceeded)
		if err != nil && !idle {
			c.rerr = err
		}
		stop := err != nil || len(c.inbox) >= tlsInbox
		if stop && idle && c.rewake {
			c.rewake, stop = false, false
		}
		c.overfull = err == nil && stop
		if stop {
			c.reading = false
		}
		c.rmu.Unlock()
		if n > 0 || (err != nil && !idle) {
			c.Notify()
		}
		if stop {
			return
		}
	}
}

// hasInbox reports whether Receive has something to take.
func (c *Conn) hasInbox() bool {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return len(c.inbox) > 0 || c.rerr != nil
}

// receiveTLS is a Receiver's read over TLS: from the inbox.
func (c *Conn) receiveTLS(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(c.inbox) == 0 {
		switch {
		case c.rerr == nil:
			return 0, ErrWouldBlock
		case errors.Is(c.rerr, io.EOF):
			return 0, io.EOF
		}
		return 0, fmt.Errorf("%w: %w", ErrPeerGone, c.rerr)
	}
	n := copy(p, c.inbox)
	c.inbox = c.inbox[n:]
	if len(c.inbox) == 0 {
		c.inbox = nil
		if c.overfull && !c.reading {
			// It stopped for room, not for want of data.
			c.overfull, c.reading = false, true
			go c.readTLS()
		}
	}
	return n, nil
}

// tlsKeep is the largest write queue an idle TLS connection keeps.
const tlsKeep = 1 << 10

// writeTLS writes the queue through crypto/tls, within the write timeout,
// and hands the connection back to its worker. No writer exists while a
// connection has nothing to send.
func (c *Conn) writeTLS() {
	c.wmu.Lock()
	b := c.wqueue
	c.wmu.Unlock()
	_ = c.tls.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	_, err := c.tls.Write(b)
	c.wmu.Lock()
	c.writing, c.werr = false, err
	if cap(c.wqueue) > tlsKeep {
		c.wqueue = nil
	}
	c.wmu.Unlock()
	c.Notify()
}

// read reads what the peer sent: nothing is expected, so any byte, or
// the end of the stream, closes the connection.
func (c *Conn) read() error {
	var b [64]byte
	var n int
	var rerr error
	err := c.raw.Read(func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), b[:])
		return true
	})
	switch {
	case err != nil:
		return ErrPeerGone
	case n > 0:
		return ErrUnexpectedData
	case n == 0 && rerr == nil:
		return ErrPeerGone
	case errors.Is(rerr, unix.EAGAIN), errors.Is(rerr, unix.EINTR):
		return nil
	}
	return ErrPeerGone
}

// receive is a Receiver's read: one non-blocking read from the socket,
// through its worker's sockIO.
func (c *Conn) receive(p []byte) (int, error) {
	s := c.worker.io
	s.p, s.n, s.err = p, 0, nil
	err := c.raw.Read(s.read)
	n, rerr := s.n, s.err
	s.p = nil
	switch {
	case err != nil:
		return 0, ErrPeerGone
	case errors.Is(rerr, unix.EAGAIN):
		c.readable = false
		return 0, ErrWouldBlock
	case rerr != nil:
		return 0, fmt.Errorf("%w: %w", ErrPeerGone, rerr)
	case n == 0 && len(p) > 0:
		c.readable = false
		return 0, io.EOF
	}
	return n, nil
}

// write writes pending, then p, as far as the socket takes them without
// blocking, and keeps the rest in pending. It reports false when it
// closed the connection on an error.
func (c *Conn) write(p []byte, now time.Time) bool {
	if len(c.pending) > 0 && len(p) > 0 {
		c.pending = append(c.pending, p...)
		p = nil
	}
	if len(c.pending) > 0 {
		p = c.pending
	}
	if len(p) == 0 {
		return true
	}
	s := c.worker.io
	s.p, s.n, s.err = p, 0, nil
	err := c.raw.Write(s.write)
	written, werr := s.n, s.err
	s.p = nil
	if err == nil && werr != nil && !errors.Is(werr, unix.EAGAIN) {
		err = werr
	}
	if err != nil {
		c.close(fmt.Errorf("%w: %w", ErrPeerGone, err))
		return false
	}
	if written < len(p) && werr == nil {
		// The socket took both writes: no EPOLLOUT will come.
		c.schedule()
	}
	rest := p[written:]
	switch {
	case len(rest) == 0:
		c.pending = nil
	case len(c.pending) == 0:
		c.pending = append([]byte(nil), rest...)
		c.pendingSince = now
	default:
		c.pending = rest // a tail of its own array: no copy per write
	}
	return true
}

// waitWritable waits for EPOLLOUT, which schedules c again, and closes c
// if its bytes wait past the write timeout.
func (c *Conn) waitWritable(w *worker, now time.Time) {
	deadline := c.pendingSince.Add(c.writeTimeout)
	if !now.Before(deadline) {
		c.close(ErrWriteTimeout)
		return
	}
	c.arm(w, deadline)
}

// arm makes the worker run c at t, unless it will run it sooner anyway.
func (c *Conn) arm(w *worker, t time.Time) {
	if t.IsZero() || (!c.timerAt.IsZero() && !t.Before(c.timerAt)) {
		return
	}
	c.timerAt = t
	heap.Push(&w.timers, timer{at: t, conn: c})
}

// close closes the socket and tells the stream why.
func (c *Conn) close(reason error) {
	if !c.closed.CompareAndSwap(false, true) {
		return
	}
	_ = c.raw.Control(func(fd uintptr) {
		_ = unix.EpollCtl(c.core.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	})
	// nc is the TCP connection, also under TLS: no close_notify alert,
	// whose write could block the worker.
	_ = c.nc.Close()
	c.pending = nil
	c.core.release(c)
	c.stream.Closed(reason)
}

// timer is a connection's wake-up; an entry whose at is no longer the
// connection's timerAt is stale and skipped.
type timer struct {
	at   time.Time
	conn *Conn
}

// timers is a min-heap of wake-ups by time.
type timers []timer

func (t timers) Len() int           { return len(t) }
func (t timers) Less(i, j int) bool { return t[i].at.Before(t[j].at) }
func (t timers) Swap(i, j int)      { t[i], t[j] = t[j], t[i] }
func (t *timers) Push(x any)        { *t = append(*t, x.(timer)) }
func (t *timers) Pop() any {
	old := *t
	x := old[len(old)-1]
	old[len(old)-1] = timer{}
	*t = old[:len(old)-1]
	return x
}
