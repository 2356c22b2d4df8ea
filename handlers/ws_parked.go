package handlers

// A WebSocket over HTTP/1.1 leaves gorilla once its handshake and replay
// are out: its socket is parked (package park), so an idle
// connection holds no goroutine, only its socket, its subscription and
// parkedWS. The core's worker reads the client's frames when the socket is
// readable (wsread.go parses them) and answers pings and closes itself;
// text frames go, in order, to a goroutine that exists while some wait
// and runs the frame protocol every path shares (wsframe.go,
// wssubscribe.go, wsrefresh.go), since a publish may wait on the hub's
// back-pressure and a subscribe on the broker's history. The worker sends
// the subscription's messages, pings and the closing frame, as
// wsConn.write does on the goroutine path, except while a subscribe,
// unsubscribe or refresh has taken the subscription from it (withSub):
// then that change's frames go out first, as the writer's do there.
// With permessage-deflate, messages go as their shared compressed frames
// and the reader inflates the client's (wsdeflate.go). Over TLS, the core reads and writes through
// crypto/tls on goroutines that exist while there is something to read or
// write.

import (
	"context"
	"errors"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/park"
)

const (
	// wsOutBound is how many bytes of frames the frame protocol may queue
	// ahead of the socket before it waits for the worker to send them.
	wsOutBound = 64 << 10
	// wsReadsPerTurn bounds the reads of one turn of the worker, so a
	// client that sends without pause does not keep it from the others.
	wsReadsPerTurn = 4
)

// frameWSWire is the kind of a message's whole WebSocket frame, header and
// all, shared by every parked subscriber.
var frameWSWire = hub.NewFrameKind()

// errWSClosing is what a frame queued after the closing one gets.
var errWSClosing = errors.New("the WebSocket is closing")

// parkedWS is a WebSocket served by the parked core.
type parkedWS struct {
	c       *wsConn
	pc      atomic.Pointer[park.Conn]
	cancel  context.CancelFunc
	release func()
	// hubEnded ends a connection without topics with the hub's others.
	hubEnded  <-chan struct{}
	hubReason func() error
	gone      chan struct{} // closed when the connection is

	// Used by the worker only.
	in       wsReader
	nextPing time.Time
	pongBy   time.Time // a client that answers no ping by then is dropped
	watching bool      // in idle, for having no subscription

	mu       sync.Mutex
	out      []byte        // frames queued for the socket
	room     chan struct{} // a token when the worker took out
	msgs     []wsInbound   // client messages waiting for the frame protocol
	busy     bool          // runCommands runs
	owned    bool          // c.sub is not the worker's (withSub, or park until it is done)
	want     bool          // withSub asks the worker for c.sub
	granted  chan struct{} // and gets it
	paused   bool          // reading waits for room in msgs or out
	closing  bool          // a close frame is queued: nothing follows it
	closeBy  time.Time     // then, how long the client has to answer it
	ending   bool          // close the connection once out is sent
	failed   error         // why the frame protocol stopped, if it failed
	peerDone bool          // the client's close frame came
	dead     bool          // Closed was called
}

// wsInbound is one message from the client.
type wsInbound struct {
	binary bool
	data   []byte
}

// park hands the connection to the parked core once what the subscription
// replays is out, and reports whether it did. When it did not, nothing was
// sent, the goroutine path serves the connection, and release, if not
// nil, is to be called when it ends.
func (c *wsConn) park(backlog []*hub.Message, gap *hub.Gap) (parked bool, release func()) {
	if !park.Supported || c.conn.Subprotocol() != "" {
		return false, nil
	}
	// Park takes plain TCP, or TLS over it; else it fails and this falls
	// back.
	nc := c.conn.NetConn()
	// The connection outlives the handler's request and its context.
	ctx, cancel := context.WithCancel(hub.CarryClient(context.Background(), c.ctx))
	p := &parkedWS{c: c, cancel: cancel, release: c.rq.keep(), gone: make(chan struct{}), room: make(chan struct{}, 1), granted: make(chan struct{}, 1)}
	p.hubEnded, p.hubReason = c.ep.Hub.Ended()
	p.in.limit, p.in.deflate = c.ep.MaxMessageSize, c.deflate
	if done, err := c.replayAll(nil, gap, backlog); !done || err != nil {
		// The client was told (an error frame) or is gone; either way
		// the goroutine path ends it as it would have.
		cancel()
		return false, p.release
	}
	now := time.Now()
	p.nextPing = now.Add(c.ep.Heartbeat)
	p.pongBy = now.Add(5 * c.ep.Heartbeat / 2)
	c.sink = p
	// This goroutine owns c.sub until it hands it to the worker.
	p.owned = true
	// Keep only what the frame protocol reads of the request (ep.publish:
	// its ?topic= and its peer's address) and of the module's answers
	// (the default topic): the request, its context and Caddy's state in
	// it, and gorilla's Conn with the buffers net/http lent the handshake,
	// would stay for the connection's life. Set before Park: once parked,
	// a client's frame may run a command at once.
	ctxBefore, rBefore, defBefore := c.ctx, c.r, c.rq.DefaultTopic
	c.ctx = ctx
	c.r = &http.Request{URL: &url.URL{RawQuery: c.r.URL.RawQuery}, RemoteAddr: c.r.RemoteAddr}
	if def := c.rq.DefaultTopic; def != nil {
		topic, err := def()
		c.rq.DefaultTopic = func() (string, error) { return topic, err }
	}
	pc, err := park.Park(nc, p, writeTimeout)
	if err != nil {
		c.ep.Logger.Debug("WebSocket served on its goroutine", zap.Error(err))
		c.sink, c.ctx, c.r, c.rq.DefaultTopic = c.stream, ctxBefore, rBefore, defBefore
		cancel()
		return false, p.release
	}
	p.pc.Store(pc)
	c.conn, c.stream = nil, nil
	p.handBack(nil)
	return true, nil
}

// notify asks the worker to run the stream soon.
func (p *parkedWS) notify() {
	if pc := p.pc.Load(); pc != nil {
		pc.Notify()
	}
}

// Send implements park.Stream: what wsConn.write would send at now.
func (p *parkedWS) Send(buf []byte, now time.Time) ([]byte, time.Time, bool) {
	p.mu.Lock()
	// out is let go, not kept: an idle connection holds no buffer.
	buf = append(buf, p.out...)
	p.out = nil
	if p.want && !p.owned {
		p.want, p.owned = false, true
		p.granted <- struct{}{}
	}
	// Nothing follows a close frame.
	deliver := !p.owned && !p.closing
	if p.paused {
		p.paused = false
		defer p.notify()
	}
	p.mu.Unlock()
	select {
	case p.room <- struct{}{}:
	default:
	}
	if deliver {
		buf = p.deliver(buf, now)
	}
	if tok := p.c.token.Load(); tok != nil && tok.Expired(now) {
		// 1008 (policy violation): reconnect with a new token.
		buf = p.closeFrame(buf, now, websocket.ClosePolicyViolation, errTokenExpired.Error())
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.ending:
		return buf, time.Time{}, true
	case p.closing && (p.peerDone || !now.Before(p.closeBy)):
		return buf, time.Time{}, true
	case !now.Before(p.pongBy):
		p.c.ep.Logger.Debug("WebSocket closed", zap.String("reason", "no pong"))
		return buf, time.Time{}, true
	}
	next := p.pongBy
	if p.closing {
		next = p.closeBy
	} else {
		if !now.Before(p.nextPing) {
			buf = appendWSFrame(buf, websocket.PingMessage, nil)
			p.nextPing = now.Add(p.c.ep.Heartbeat)
		}
		next = earliest(next, p.nextPing)
	}
	if tok := p.c.token.Load(); tok != nil {
		next = earliest(next, tok.Expires)
	}
	return buf, next, false
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// deliver appends what the subscription has, or the close frame that ends
// it, as wsConn.write and wsConn.end do; the worker owns c.sub here.
func (p *parkedWS) deliver(buf []byte, now time.Time) []byte {
	c := p.c
	if (c.sub == nil) != p.watching {
		p.watching = c.sub == nil
		if p.watching {
			watchIdle(p)
		} else {
			unwatchIdle(p)
		}
	}
	if c.sub == nil {
		select {
		case <-p.hubEnded:
			return p.closeFrame(buf, now, websocket.CloseGoingAway, p.hubReason().Error())
		default:
			return buf
		}
	}
	select {
	case <-c.sub.Done():
	default:
		buf, _ = drainWS(buf, c.sub, c.deflate, math.MaxInt)
		return buf
	}
	reason := c.sub.Err()
	code := websocket.CloseGoingAway
	if errors.Is(reason, hub.ErrSlowConsumer) {
		code = websocket.CloseTryAgainLater
	} else if buf, _ = drainWS(buf, c.sub, c.deflate, math.MaxInt); c.sub.Queued() > 0 {
		// A batch per turn: the queue notifies again.
		return buf
	}
	text := "subscription ended"
	if reason != nil {
		text = reason.Error()
	}
	c.ep.Logger.Debug("WebSocket subscriber closed", zap.Strings("topics", c.sub.Filters()), zap.Error(reason))
	return p.closeFrame(buf, now, code, text)
}

// closeFrame appends a close frame, unless one went out already, and
// waits wsCloseGrace for the client's.
func (p *parkedWS) closeFrame(buf []byte, now time.Time, code int, reason string) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return buf
	}
	p.closing, p.closeBy = true, now.Add(wsCloseGrace)
	if len(reason) > maxCloseReason {
		reason = reason[:maxCloseReason]
	}
	return appendWSFrame(buf, websocket.CloseMessage, websocket.FormatCloseMessage(code, reason))
}

// drainWS appends the whole frames of at most limit queued messages, up to
// sseBatch bytes and a few messages beyond, and returns how many it took.
func drainWS(buf []byte, sub *hub.Subscriber, deflate bool, limit int) ([]byte, int) {
	var batch [8]*hub.Message
	n := 0
	for start := len(buf); n < limit && len(buf)-start < sseBatch; {
		want := min(len(batch), limit-n)
		msgs := sub.Take(batch[:0:want])
		for _, m := range msgs {
			buf = appendWire(buf, m, deflate)
		}
		n += len(msgs)
		if len(msgs) < want {
			break
		}
	}
	return buf, n
}

// appendWire appends m's whole frame, shared by every WebSocket
// subscriber: compressed when deflate was negotiated.
func appendWire(buf []byte, m *hub.Message, deflate bool) []byte {
	if deflate {
		return append(buf, m.Frame(frameWSDeflate, encodeWSDeflate)...)
	}
	return append(buf, m.Frame(frameWSWire, encodeWSWire)...)
}

func encodeWSWire(m *hub.Message) []byte {
	return appendWSFrame(nil, wsOpcode(m), m.Frame(frameWebSocket, encodeWS))
}

// appendWSFrame appends one unmasked, final frame: a server's.
func appendWSFrame(buf []byte, op int, payload []byte) []byte {
	n := len(payload)
	// One allocation at most: the header alone would take one, and the
	// payload another.
	buf = slices.Grow(buf, 10+n)
	buf = append(buf, 0x80|byte(op))
	switch {
	case n < 126:
		buf = append(buf, byte(n))
	case n <= 0xffff:
		buf = append(buf, 126, byte(n>>8), byte(n))
	default:
		buf = append(buf, 127, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(buf, payload...)
}

// Receive implements park.Receiver: it reads the client's frames, answers
// control frames and hands messages to the frame protocol.
func (p *parkedWS) Receive(read func([]byte) (int, error)) error {
	for range wsReadsPerTurn {
		p.mu.Lock()
		full := len(p.msgs) >= wsCommands || len(p.out) >= wsOutBound
		p.paused = full
		ending := p.ending
		p.mu.Unlock()
		if ending {
			return nil
		}
		if full {
			// Whoever makes room notifies.
			return nil
		}
		err := p.in.fill(read)
		if errors.Is(err, park.ErrWouldBlock) {
			return nil
		}
		if err != nil {
			if p.peerClosed() {
				// The client closed after its close frame: what is
				// queued for it goes out, and the answer.
				p.mu.Lock()
				p.ending = true
				p.mu.Unlock()
				return nil
			}
			return err
		}
		if err := p.in.frames(p.frame); err != nil {
			return p.fail(err)
		}
	}
	// More may wait: come back on a later turn.
	p.notify()
	return nil
}

func (p *parkedWS) peerClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peerDone
}

// fail ends the connection for a frame the client should not have sent,
// with the close code gorilla would send.
func (p *parkedWS) fail(err error) error {
	var ce *wsCloseError
	if !errors.As(err, &ce) {
		return err
	}
	p.c.ep.Logger.Debug("WebSocket closed", zap.Error(err))
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closing {
		p.closing = true
		p.out = appendWSFrame(p.out, websocket.CloseMessage, websocket.FormatCloseMessage(ce.code, ce.text))
	}
	p.ending = true
	return nil
}

// frame handles one whole frame (a message, once reassembled).
func (p *parkedWS) frame(op int, payload []byte) {
	switch op {
	case websocket.PingMessage:
		p.mu.Lock()
		if !p.closing {
			p.out = appendWSFrame(p.out, websocket.PongMessage, payload)
		}
		p.mu.Unlock()
	case websocket.PongMessage:
		p.pongBy = time.Now().Add(5 * p.c.ep.Heartbeat / 2)
	case websocket.CloseMessage:
		p.mu.Lock()
		p.peerDone = true
		if !p.closing {
			// Echo the code, as gorilla does.
			p.closing = true
			code := websocket.CloseNoStatusReceived
			if len(payload) >= 2 {
				code = int(payload[0])<<8 | int(payload[1])
			}
			p.out = appendWSFrame(p.out, websocket.CloseMessage, websocket.FormatCloseMessage(code, ""))
		}
		p.ending = true
		p.mu.Unlock()
		p.c.ep.Logger.Debug("WebSocket closed", zap.String("reason", "client closed"))
	default:
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.closing {
			return
		}
		p.msgs = append(p.msgs, wsInbound{binary: op == websocket.BinaryMessage, data: payload})
		if !p.busy {
			p.busy = true
			go p.runCommands()
		}
	}
}

// runCommands runs the frame protocol on the client's messages, in order,
// and returns when none waits: no goroutine stays while a connection is
// idle. A publish runs beside the worker, which goes on delivering, as
// the reader does on the goroutine path; a subscription change takes the
// subscription from it (withSub), as the writer does there.
func (p *parkedWS) runCommands() {
	c := p.c
	for {
		p.mu.Lock()
		if len(p.msgs) == 0 || p.closing || p.failed != nil {
			p.msgs = nil
			p.busy = false
			p.mu.Unlock()
			return
		}
		in := p.msgs[0]
		p.msgs[0] = wsInbound{}
		p.msgs = p.msgs[1:]
		p.mu.Unlock()
		p.notify() // there is room to read again
		cmd := c.command(in.binary, in.data)
		var err error
		if cmd.kind == "" {
			// An answer: it only needs writing.
			err = c.run(cmd)
		} else {
			err = p.withSub(func() error { return c.run(cmd) })
		}
		if err != nil {
			p.mu.Lock()
			p.failed = err
			if !p.closing {
				// A frame that did not go out in time: the socket
				// stopped draining.
				p.ending = true
			}
			p.mu.Unlock()
			c.ep.Logger.Debug("WebSocket write failed", zap.Error(err))
		}
	}
}

// withSub runs f with c.sub taken from the worker, which grants it between
// two of its turns (Send).
func (p *parkedWS) withSub(f func() error) error {
	p.mu.Lock()
	p.want = true
	p.mu.Unlock()
	p.notify()
	select {
	case <-p.granted:
	case <-p.gone:
		p.mu.Lock()
		owned := p.owned
		p.mu.Unlock()
		if owned {
			// Granted as it closed: Closed left the subscription here.
			p.handBack(p.c.sub)
		}
		return net.ErrClosed
	}
	prev := p.c.sub
	err := f()
	p.handBack(prev)
	return err
}

// handBack gives c.sub back to the worker; prev is the one it had. A
// subscription made meanwhile is new to it, and one whose connection
// closed meanwhile is closed here, by its owner.
func (p *parkedWS) handBack(prev *hub.Subscriber) {
	c := p.c
	if c.sub != nil && c.sub != prev {
		c.sub.OnReady(p.notify)
	}
	p.mu.Lock()
	p.owned = false
	dead := p.dead
	p.mu.Unlock()
	if dead && c.sub != nil {
		c.sub.Close()
	}
	p.notify()
}

// send implements wsSink for the frame protocol.
func (p *parkedWS) send(op int, b []byte) error {
	return p.queue(op, b, false)
}

// sendFrames implements wsSink for the frame protocol.
func (p *parkedWS) sendFrames(frames []byte) error {
	return p.queue(0, frames, true)
}

// close implements wsSink for the frame protocol.
func (p *parkedWS) close(code int, reason string) error {
	return p.queue(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), false)
}

// queue queues a frame of op for the worker, or, when whole, the whole
// frames payload holds, waiting while wsOutBound bytes wait already, at
// most writeTimeout, as a blocking write would.
func (p *parkedWS) queue(op int, payload []byte, whole bool) error {
	var timeout *time.Timer
	p.mu.Lock()
	for len(p.out) >= wsOutBound && !p.closing {
		p.mu.Unlock()
		if timeout == nil {
			timeout = time.NewTimer(writeTimeout)
			defer timeout.Stop()
		}
		select {
		case <-p.room:
		case <-p.gone:
			return net.ErrClosed
		case <-timeout.C:
			return park.ErrWriteTimeout
		}
		p.mu.Lock()
	}
	if p.closing {
		p.mu.Unlock()
		return errWSClosing
	}
	switch {
	case whole:
		p.out = append(p.out, payload...)
	case op == websocket.CloseMessage:
		p.closing, p.closeBy = true, time.Now().Add(wsCloseGrace)
		fallthrough
	default:
		p.out = appendWSFrame(p.out, op, payload)
	}
	p.mu.Unlock()
	p.notify()
	return nil
}

// Closed implements park.Stream: the subscription ends with the
// connection, and so does what the frame protocol was doing.
func (p *parkedWS) Closed(err error) {
	close(p.gone)
	p.cancel()
	p.mu.Lock()
	owned := p.owned
	p.dead = true
	p.failed = net.ErrClosed
	p.mu.Unlock()
	// Whoever holds the subscription closes it when it hands it back.
	if c := p.c; !owned && c.sub != nil {
		c.sub.Close()
	}
	if p.watching {
		unwatchIdle(p)
	}
	p.release()
	if err != nil {
		p.c.ep.Logger.Debug("parked WebSocket closed", zap.Error(err))
	}
}

// Interface guards
var (
	_ park.Receiver = (*parkedWS)(nil)
	_ wsSink        = (*parkedWS)(nil)
)

// A parked connection without a subscription hears of nothing that would
// end it with its hub's others (hub.Ended), and waits for its next ping
// otherwise: idle holds such connections by the channel they watch, and
// one goroutine per channel, while any watches it, wakes them when it is
// closed.
var (
	idleMu sync.Mutex
	idle   = map[<-chan struct{}]*idleSet{}
)

type idleSet struct {
	conns map[*parkedWS]struct{}
	stop  chan struct{}
}

// watchIdle makes p's worker run it when p.hubEnded is closed.
func watchIdle(p *parkedWS) {
	idleMu.Lock()
	defer idleMu.Unlock()
	set := idle[p.hubEnded]
	if set == nil {
		set = &idleSet{conns: map[*parkedWS]struct{}{}, stop: make(chan struct{})}
		idle[p.hubEnded] = set
		go set.wait(p.hubEnded)
	}
	set.conns[p] = struct{}{}
}

// unwatchIdle undoes watchIdle.
func unwatchIdle(p *parkedWS) {
	idleMu.Lock()
	defer idleMu.Unlock()
	set := idle[p.hubEnded]
	if set == nil {
		return
	}
	delete(set.conns, p)
	if len(set.conns) == 0 {
		delete(idle, p.hubEnded)
		close(set.stop)
	}
}

func (s *idleSet) wait(ended <-chan struct{}) {
	select {
	case <-ended:
	case <-s.stop:
		return
	}
	idleMu.Lock()
	if idle[ended] == s {
		delete(idle, ended)
	}
	conns := s.conns
	s.conns = nil
	idleMu.Unlock()
	for p := range conns {
		p.notify()
	}
}
