package handlers

// The WebSocket transport. Who owns what, per connection:
//
//   - The handler goroutine reads the client's frames. It answers publish
//     frames itself (through the writer) and passes subscribe and
//     unsubscribe frames to the writer on a bounded channel.
//   - One writer goroutine owns every write to the socket, the pings and the
//     connection's single hub.Subscriber. Subscribe and unsubscribe change
//     that subscriber's filters in the hub in one step (SetFilters), so a
//     message matching several topics is sent once, and a topic kept across
//     a change loses and repeats nothing.
//
// When the reader stops (client closed, no pong, read limit), it stops the
// writer. When the writer stops (the hub ended the subscription, the socket
// stopped draining), it ends the reader through a read deadline. The handler
// goroutine closes the socket once both have stopped.
//
// That is the goroutine path. Over HTTP/1.1 on Linux, the
// connection is parked after the handshake instead (ws_parked.go): the
// same frame protocol runs without a goroutine per idle connection. Over
// HTTP/2 (wsh2.go) the goroutine path serves a stream with a codec of its
// own instead of gorilla's.

import (
	"bufio"
	"context"
	"errors"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/auth"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

const (
	// wsCloseGrace is how long the server waits for the client's close
	// frame after sending its own.
	wsCloseGrace = time.Second
	// wsCommands bounds the frames the reader may hand the writer ahead.
	wsCommands = 16
	// maxRefLength bounds a frame's ref, echoed in the answer to it.
	maxRefLength = 64
	// maxCloseReason is what fits a close frame beside its code.
	maxCloseReason = 123
)

var upgrader = websocket.Upgrader{
	// The origin is checked before the upgrade (Endpoint.admit), with a
	// one-line reason.
	CheckOrigin: func(*http.Request) bool { return true },
	// No WriteBufferPool: gorilla then writes through the 4 KiB buffer of
	// the hijacked connection, which net/http keeps allocated until the
	// handler returns anyway, rather than a second one from a pool.
}

// webSocketTransport serves WebSocket upgrades: this file (handshake,
// reader and writer), wsframe.go (the frame protocol) and wssubscribe.go
// (subscriptions).
var webSocketTransport = &Transport{Name: "ws", asks: isWebSocket, serve: (*Endpoint).serveWebSocket}

// frameWebSocket is the kind of a message's shared WebSocket frame.
var frameWebSocket = hub.NewFrameKind()

// isWebSocket reports whether r asks to be upgraded to a WebSocket (its
// Upgrade header names websocket); serveWebSocket checks the rest of the
// handshake.
func isWebSocket(r *http.Request) bool {
	for _, v := range r.Header.Values("Upgrade") {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "websocket") {
				return true
			}
		}
	}
	return false
}

// WebSocket serves a WebSocket subscriber until the client goes away, stops
// answering pings, or the hub ends its subscription. Topics from ?topic=
// (or the default topic) with ?last_id= are subscribed before the upgrade,
// so when the socket opens they are live.
func (ep *Endpoint) serveWebSocket(w http.ResponseWriter, r *http.Request, rq Request) {
	// The reader runs on a goroutine of its own: see onOwnStack.
	onOwnStack(func() { ep.webSocket(w, r, rq) })
}

func (ep *Endpoint) webSocket(w http.ResponseWriter, r *http.Request, rq Request) {
	if !IsWebSocketConnect(r) && !websocket.IsWebSocketUpgrade(r) {
		fail(w, http.StatusBadRequest, "not a WebSocket handshake: connect with a WebSocket client (Upgrade: websocket)")
		return
	}
	id, denied := ep.admit(r, rq, "WebSocket")
	if denied == nil {
		denied = id.mayConnect()
	}
	if denied == nil {
		denied = ep.hookConnect(&id, r, rq)
	}
	if denied != nil {
		denied.send(w)
		return
	}
	resume, err := lastID(r)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()

	var sub *hub.Subscriber
	var backlog []*hub.Message
	var gap *hub.Gap
	if len(r.URL.Query()["topic"]) > 0 || rq.DefaultTopic != nil {
		topics, err := rq.topics(r, ep.Limits.topics())
		if err != nil {
			fail(w, http.StatusBadRequest, err.Error())
			return
		}
		opts, denied := id.subscription(topics)
		if denied == nil {
			topics, opts, denied = ep.hookFirst(r.Context(), &id, r, rq, topics, opts)
		}
		if denied != nil {
			denied.send(w)
			return
		}
		if sub, backlog, gap, err = ep.Hub.Subscribe(ctx, topics, resume, opts...); err != nil {
			failSubscribe(w, err)
			return
		}
	} else if resume != "" {
		fail(w, http.StatusBadRequest, "last_id without topic: add ?topic=NAME, or send last_id in a subscribe frame")
		return
	}

	c := &wsConn{
		ep:  ep,
		r:   r,
		id:  id,
		rq:  rq,
		ctx: ctx,
		sub: sub,
	}
	c.token.Store(id.token)
	if !c.accept(w, r) {
		// The handshake failed, and the client was answered.
		if sub != nil {
			sub.Close()
		}
		return
	}
	if c.conn != nil {
		parked, release := c.park(backlog, gap)
		if parked {
			return
		}
		if release != nil {
			defer release()
			// What park replayed is out.
			backlog, gap = nil, nil
		}
	}
	c.serveOnGoroutine(backlog, gap, cancel)
	if c.conn != nil {
		_ = c.conn.Close()
	}
}

// serveOnGoroutine serves the connection on the goroutine path until the
// reader stops: the writer on a goroutine of its own, sending backlog and
// gap first, the reader on this one. Then it stops the writer at once,
// even if it waits on the broker (cancel ends the connection's context)
// or on a socket that stopped draining.
func (c *wsConn) serveOnGoroutine(backlog []*hub.Message, gap *hub.Gap, cancel func()) {
	c.cmds = make(chan *wsCommand, wsCommands)
	c.quit = make(chan struct{})
	c.writerDone = make(chan struct{})
	go c.write(backlog, gap)
	c.read()
	close(c.quit)
	cancel()
	c.stream.abort()
	<-c.writerDone
}

// accept completes the handshake: gorilla's upgrade over HTTP/1.1, or the
// answer to an extended CONNECT over HTTP/2 (wsh2.go). Either negotiates
// permessage-deflate the same way and picks no subprotocol.
func (c *wsConn) accept(w http.ResponseWriter, r *http.Request) bool {
	if IsWebSocketConnect(r) {
		s, deflate := acceptStream(w, r, c.ep.MaxMessageSize)
		if s == nil {
			return false
		}
		s.onPong = func() { c.extendRead(false) }
		c.stream, c.sink, c.deflate = s, s, deflate
		return true
	}
	u, offer, deflate := negotiate(r)
	conn, err := u.Upgrade(hijacker{w}, offer, nil)
	if err != nil {
		// Upgrade has answered the client.
		return false
	}
	conn.SetReadLimit(c.ep.MaxMessageSize)
	conn.SetPongHandler(func(string) error { c.extendRead(false); return nil })
	g := newGorillaSink(conn, c.ep.MaxMessageSize)
	c.conn, c.stream, c.sink, c.deflate = conn, g, g, deflate
	return true
}

// hijacker gives gorilla's Upgrader the http.Hijacker it asserts: Caddy's
// wrapped ResponseWriter hijacks only through http.ResponseController.
type hijacker struct{ http.ResponseWriter }

func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(h.ResponseWriter).Hijack()
}

// wsConn is one WebSocket connection.
type wsConn struct {
	ep *Endpoint
	r  *http.Request // the upgrade request
	id identity      // who the upgrade request is; its token is token's (ident)
	// token is the connection's token, which a refresh frame replaces:
	// the reader swaps it, the writer reads it.
	token atomic.Pointer[auth.Token]
	rq    Request
	ctx   context.Context
	// conn is gorilla's connection over HTTP/1.1, nil over HTTP/2 and
	// once parked.
	conn *websocket.Conn
	// stream is what the goroutine path reads, pings and stops.
	stream wsStream
	sink   wsSink // where frames go: stream, or the parked core once parked
	// deflate is true when permessage-deflate was negotiated (wsdeflate.go).
	deflate bool

	sub *hub.Subscriber // owned by the writer; nil while no topics

	cmds       chan *wsCommand // of pointers: the buffer is allocated with the connection
	quit       chan struct{}   // closed when the reader has stopped
	writerDone chan struct{}   // closed when the writer has stopped

	deadlineMu sync.Mutex
	stopping   bool // the writer has stopped: the read deadline is final
}

// read runs the reader until the connection ends.
func (c *wsConn) read() {
	// A live client answers every ping: without a pong for 2.5 heartbeats
	// the peer is taken for dead.
	c.extendRead(false)
	for {
		kind, data, err := c.stream.next()
		if err != nil {
			c.ep.Logger.Debug("WebSocket closed", zap.Error(err))
			return
		}
		cmd := c.command(kind == websocket.BinaryMessage, data)
		select {
		case c.cmds <- &cmd:
		case <-c.writerDone:
			return
		}
	}
}

// extendRead moves the read deadline: a pong wait ahead, or, once the
// writer has stopped (final), a short grace for the client's close frame.
func (c *wsConn) extendRead(final bool) {
	c.deadlineMu.Lock()
	defer c.deadlineMu.Unlock()
	if c.stopping {
		return
	}
	// Two heartbeats and a half: the second ping has gone out well before,
	// however the shared heartbeat wheel and the scheduler place it.
	deadline := time.Now().Add(5 * c.ep.Heartbeat / 2)
	if final {
		c.stopping = true
		deadline = time.Now().Add(wsCloseGrace)
	}
	_ = c.stream.setReadDeadline(deadline)
}

// write runs the writer: first what the initial subscription replays, then
// live messages, commands and pings until the connection ends.
func (c *wsConn) write(backlog []*hub.Message, gap *hub.Gap) {
	defer func() {
		if c.sub != nil {
			c.sub.Close()
		}
		c.extendRead(true)
		close(c.writerDone)
	}()
	if _, err := c.replayAll(nil, gap, backlog); err != nil {
		return
	}
	ping, leave := joinBeats(c.ep.Heartbeat)
	defer leave()
	expired, stopExpiry := c.ident().expiry()
	defer func() { stopExpiry() }()
	// Without topics the connection ends with the hub's subscribers.
	hubEnded, hubReason := c.ep.Hub.Ended()
	for {
		// Ready also fires when the hub ends the subscription.
		var ready, idleEnded <-chan struct{}
		if c.sub != nil {
			ready = c.sub.Ready()
			select {
			case <-c.sub.Done():
				c.end()
				return
			default:
			}
		} else {
			idleEnded = hubEnded
		}
		var err error
		select {
		case <-ready:
			// One write per turn, of what is queued up to sseBatch bytes,
			// so commands and pings are not held up by a backlog: what
			// stays queued keeps Ready signalled.
			_, err = c.writeBatch(math.MaxInt)
		case cmd := <-c.cmds:
			if cmd.kind == "refresh" {
				// The new token's expiry replaces the old one's.
				stopExpiry()
				expired, stopExpiry = c.ident().expiry()
			}
			err = c.run(*cmd)
		case <-ping.C():
			ping.Next()
			err = c.stream.ping()
		case <-expired:
			// 1008 (policy violation): reconnect with a new token.
			c.close(websocket.ClosePolicyViolation, errTokenExpired.Error())
			return
		case <-idleEnded:
			c.close(websocket.CloseGoingAway, hubReason().Error())
			return
		case <-c.quit:
			return
		}
		if err != nil {
			c.ep.Logger.Debug("WebSocket write failed", zap.Error(err))
			return
		}
	}
}

// end closes the connection for the reason the hub ended its subscription.
// A slow consumer gets 1013 (try again later: it resumes from its last ID);
// on shutdown the client first gets what was queued, then 1001.
func (c *wsConn) end() {
	reason := c.sub.Err()
	code := websocket.CloseGoingAway
	if errors.Is(reason, hub.ErrSlowConsumer) {
		code = websocket.CloseTryAgainLater
	} else if c.writeQueued(c.sub.Queued()) != nil {
		return
	}
	text := "subscription ended"
	if reason != nil {
		text = reason.Error()
	}
	c.ep.Logger.Debug("WebSocket subscriber closed", zap.Strings("topics", c.sub.Filters()), zap.Error(reason))
	c.close(code, text)
}

func (c *wsConn) close(code int, reason string) {
	if len(reason) > maxCloseReason {
		reason = reason[:maxCloseReason]
	}
	_ = c.sink.close(code, reason)
}

// writeQueued sends the next n queued messages (all that are, if fewer),
// a batch per write.
func (c *wsConn) writeQueued(n int) error {
	for n > 0 {
		sent, err := c.writeBatch(n)
		if sent == 0 || err != nil {
			return err
		}
		n -= sent
	}
	return nil
}

// frameBufs holds the buffers the goroutine path gathers frames in: an
// idle connection keeps none.
var frameBufs = sync.Pool{New: func() any { return new([]byte) }}

// writeBatch sends at most limit queued messages, as many as drainWS takes,
// in one write, and returns how many it sent.
func (c *wsConn) writeBatch(limit int) (int, error) {
	bp := frameBufs.Get().(*[]byte)
	buf, n := drainWS((*bp)[:0], c.sub, c.deflate, limit)
	var err error
	if n > 0 {
		err = c.sink.sendFrames(buf)
	}
	putFrameBuf(bp, buf)
	return n, err
}

// writeMessages sends msgs, a batch of up to sseBatch bytes per write.
func (c *wsConn) writeMessages(msgs []*hub.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	bp := frameBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	var err error
	for i, m := range msgs {
		buf = appendWire(buf, m, c.deflate)
		if len(buf) >= sseBatch || i == len(msgs)-1 {
			if err = c.sink.sendFrames(buf); err != nil {
				break
			}
			buf = buf[:0]
		}
	}
	putFrameBuf(bp, buf)
	return err
}

// putFrameBuf returns buf to frameBufs, unless a large message grew it.
func putFrameBuf(bp *[]byte, buf []byte) {
	if cap(buf) <= 2*sseBatch {
		*bp = buf[:0]
		frameBufs.Put(bp)
	}
}

// writeFrame sends one text frame; a socket that does not take it within
// writeTimeout ends the connection.
func (c *wsConn) writeFrame(b []byte) error { return c.sink.send(websocket.TextMessage, b) }

// wsSink is where a connection's frames go. The frame protocol
// (wsframe.go, wssubscribe.go, wsrefresh.go) writes through it, and so
// runs unchanged on the goroutine path and once parked (ws_parked.go).
type wsSink interface {
	// send sends a text or binary frame, within writeTimeout.
	send(op int, b []byte) error
	// sendFrames sends whole server frames (messages' shared frames,
	// appendWire) in one write, within writeTimeout.
	sendFrames(frames []byte) error
	// close sends a close frame; reason fits one (maxCloseReason).
	close(code int, reason string) error
}

// wsStream is the connection the goroutine path serves: gorilla's over
// HTTP/1.1, or an HTTP/2 stream (h2Stream).
type wsStream interface {
	wsSink
	// next reads the client's next message, answering control frames on
	// the way.
	next() (op int, data []byte, err error)
	ping() error
	// setReadDeadline ends reading at t.
	setReadDeadline(t time.Time) error
	// abort ends a write under way, once the reader has stopped.
	abort()
}

// gorillaSink is gorilla's connection, on the goroutine path. Messages
// go out as their shared frames, written to the connection gorilla wraps:
// gorilla writes each frame it sends to that connection at once and keeps
// nothing buffered between frames (conn.go, v1.5.3), so whole frames may
// go between two of its own. mu makes every write, gorilla's and those,
// one at a time, the reader's answers to pings and closes included
// (handlers set by newGorillaSink), and err ends writing as gorilla's own
// write error does.
type gorillaSink struct {
	conn  *websocket.Conn
	limit int64 // max_message_size

	mu  sync.Mutex
	err error // why writing ended: a failed write, or the close frame went
}

// controlWait bounds the write of the reader's answer to a ping or a
// close, as gorilla's default handlers do.
const controlWait = time.Second

func newGorillaSink(conn *websocket.Conn, limit int64) *gorillaSink {
	g := &gorillaSink{conn: conn, limit: limit}
	conn.SetPingHandler(func(data string) error {
		// As gorilla's: a pong that cannot go out ends nothing; the
		// writer finds a broken connection.
		_ = g.control(websocket.PongMessage, []byte(data), controlWait)
		return nil
	})
	conn.SetCloseHandler(func(code int, _ string) error {
		// As gorilla's: the client's code echoed, no reason.
		_ = g.control(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), controlWait)
		return nil
	})
	return g
}

// next reads the client's next message, at most limit bytes once
// inflated; a larger one closes the connection with 1009, as the read
// limit does for what comes uncompressed.
func (g *gorillaSink) next() (int, []byte, error) {
	kind, r, err := g.conn.NextReader()
	if err != nil {
		return 0, nil, err
	}
	data, err := readLimited(r, g.limit)
	if errors.Is(err, errInflatedTooLarge) {
		_ = g.close(websocket.CloseMessageTooBig, "")
	}
	return kind, data, err
}

func (g *gorillaSink) ping() error {
	return g.control(websocket.PingMessage, nil, writeTimeout)
}

func (g *gorillaSink) setReadDeadline(t time.Time) error { return g.conn.SetReadDeadline(t) }

func (g *gorillaSink) abort() { _ = g.conn.NetConn().SetWriteDeadline(time.Now()) }

func (g *gorillaSink) send(op int, b []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return g.err
	}
	_ = g.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	g.err = g.conn.WriteMessage(op, b)
	return g.err
}

// sendFrames implements wsSink: one write to the connection.
func (g *gorillaSink) sendFrames(frames []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return g.err
	}
	nc := g.conn.NetConn()
	_ = nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, g.err = nc.Write(frames)
	return g.err
}

func (g *gorillaSink) close(code int, reason string) error {
	return g.control(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), writeTimeout)
}

// control writes a control frame within wait; after a close frame nothing
// follows. The deadline starts once mu is held: gorilla fails a control
// frame whose deadline passed before it could start, which here would end
// writing for a frame that was only queued behind another.
func (g *gorillaSink) control(op int, data []byte, wait time.Duration) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return g.err
	}
	if err := g.conn.WriteControl(op, data, time.Now().Add(wait)); err != nil {
		g.err = err
		return err
	}
	if op == websocket.CloseMessage {
		g.err = websocket.ErrCloseSent
	}
	return nil
}
