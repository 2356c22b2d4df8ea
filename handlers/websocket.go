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

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

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

// IsWebSocket reports whether r asks to be upgraded to a WebSocket (its
// Upgrade header names websocket); WebSocket checks the rest of the
// handshake.
func IsWebSocket(r *http.Request) bool {
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
func (ep *Endpoint) WebSocket(w http.ResponseWriter, r *http.Request, rq Request) {
	// The reader runs on a goroutine of its own: see OnOwnStack.
	OnOwnStack(func() { ep.webSocket(w, r, rq) })
}

func (ep *Endpoint) webSocket(w http.ResponseWriter, r *http.Request, rq Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		fail(w, http.StatusBadRequest, "not a WebSocket handshake: connect with a WebSocket client (Upgrade: websocket)")
		return
	}
	id, denied := ep.admit(r, rq, "WebSocket")
	if denied == nil {
		denied = id.mayConnect()
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

	conn, err := upgrader.Upgrade(hijacker{w}, r, nil)
	if err != nil {
		// Upgrade has answered the client.
		if sub != nil {
			sub.Close()
		}
		return
	}
	c := &wsConn{
		ep:         ep,
		r:          r,
		id:         id,
		rq:         rq,
		ctx:        ctx,
		conn:       conn,
		sub:        sub,
		cmds:       make(chan *wsCommand, wsCommands),
		quit:       make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	go c.write(backlog, gap)
	c.read()
	// Stop the writer now, even if it is waiting on the broker or on a
	// socket that stopped draining.
	close(c.quit)
	cancel()
	_ = conn.NetConn().SetWriteDeadline(time.Now())
	<-c.writerDone
	_ = conn.Close()
}

// hijacker gives gorilla's Upgrader the http.Hijacker it asserts: Caddy's
// wrapped ResponseWriter hijacks only through http.ResponseController.
type hijacker struct{ http.ResponseWriter }

func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(h.ResponseWriter).Hijack()
}

// wsConn is one WebSocket connection.
type wsConn struct {
	ep   *Endpoint
	r    *http.Request // the upgrade request
	id   identity      // who the upgrade request is: decides publish and subscribe frames
	rq   Request
	ctx  context.Context
	conn *websocket.Conn

	sub *hub.Subscriber // owned by the writer; nil while no topics

	cmds       chan *wsCommand // of pointers: the buffer is allocated with the connection
	quit       chan struct{}   // closed when the reader has stopped
	writerDone chan struct{}   // closed when the writer has stopped

	deadlineMu sync.Mutex
	stopping   bool // the writer has stopped: the read deadline is final
}

// wsCommand is work the reader hands the writer: a subscription change,
// or a frame to send.
type wsCommand struct {
	kind   string // "subscribe", "unsubscribe", or "" to send frame
	topics []string
	lastID string
	ref    json.RawMessage
	frame  []byte
}

// clientFrame is any frame a client sends; Type says which fields apply.
type clientFrame struct {
	Type string          `json:"type"`
	Ref  json.RawMessage `json:"ref"`
	// subscribe, unsubscribe
	Topics []string `json:"topics"`
	LastID string   `json:"last_id"`
	// publish: one message, or several in Messages
	Topic string          `json:"topic"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
	// Messages stays undecoded until the frame's type and the
	// connection's right to publish are checked (decodeBatch).
	Messages json.RawMessage `json:"messages"`
}

// Server frames. A message frame is the envelope with "type":"message".
type (
	wsMessage struct {
		Type string `json:"type"`
		envelope
	}
	wsGap struct {
		Type string `json:"type"`
		hub.Gap
		// ID, when no message follows from history, is where the
		// client's cursor moves (the hub's head).
		ID string `json:"id,omitempty"`
	}
	wsReply struct {
		Type   string          `json:"type"` // "ack" or "error"
		Ref    json.RawMessage `json:"ref,omitempty"`
		ID     string          `json:"id,omitempty"`
		IDs    []string        `json:"ids,omitempty"`
		Reason string          `json:"reason,omitempty"`
	}
)

func encodeWS(m *hub.Message) []byte {
	b, _ := json.Marshal(wsMessage{Type: "message", envelope: newEnvelope(m)})
	return b
}

func ackFrame(ref json.RawMessage) []byte {
	b, _ := json.Marshal(wsReply{Type: "ack", Ref: ref})
	return b
}

func errorFrame(ref json.RawMessage, reason string) []byte {
	b, _ := json.Marshal(wsReply{Type: "error", Ref: ref, Reason: reason})
	return b
}

// read runs the reader until the connection ends.
func (c *wsConn) read() {
	c.conn.SetReadLimit(c.ep.MaxMessageSize)
	// A live client answers every ping: without a pong for 2.5 heartbeats
	// the peer is taken for dead.
	c.extendRead(false)
	c.conn.SetPongHandler(func(string) error { c.extendRead(false); return nil })
	for {
		kind, data, err := c.conn.ReadMessage()
		if err != nil {
			c.ep.Logger.Debug("WebSocket closed", zap.Error(err))
			return
		}
		var cmd wsCommand
		if kind != websocket.TextMessage {
			cmd.frame = errorFrame(nil, "binary frames are not supported: send JSON text frames")
		} else {
			cmd = c.command(data)
		}
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
	_ = c.conn.SetReadDeadline(deadline)
}

// command parses a client frame into the writer's command; a bad frame, or
// a publish, becomes the frame that answers it.
func (c *wsConn) command(data []byte) wsCommand {
	f, err := parseFrame(data)
	if err != nil {
		return wsCommand{frame: errorFrame(f.Ref, err.Error())}
	}
	switch f.Type {
	case "subscribe", "unsubscribe":
		if err := checkSubscription(f, c.ep.Limits.topics()); err != nil {
			return wsCommand{frame: errorFrame(f.Ref, err.Error())}
		}
		return wsCommand{kind: f.Type, topics: f.Topics, lastID: f.LastID, ref: f.Ref}
	case "publish":
		return wsCommand{frame: c.publish(f)}
	default:
		return wsCommand{frame: errorFrame(f.Ref, fmt.Sprintf("unknown frame type %q: use subscribe, unsubscribe or publish", f.Type))}
	}
}

func parseFrame(data []byte) (clientFrame, error) {
	var f clientFrame
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(&f)
	if err == nil && dec.More() {
		err = errors.New("trailing data after JSON value")
	}
	if !validRef(f.Ref) {
		f.Ref = nil
		if err == nil {
			err = fmt.Errorf("ref must be a string or number of at most %d bytes", maxRefLength)
		}
	}
	if err != nil {
		return f, fmt.Errorf("invalid frame: %w", err)
	}
	return f, nil
}

func validRef(ref json.RawMessage) bool {
	if len(ref) == 0 {
		return true
	}
	if len(ref) > maxRefLength {
		return false
	}
	var v any
	if json.Unmarshal(ref, &v) != nil {
		return false
	}
	switch v.(type) {
	case string, float64:
		return true
	}
	return false
}

func checkSubscription(f clientFrame, maxTopics int) error {
	switch {
	case f.Topic != "" || f.Event != "" || f.Data != nil || f.Messages != nil:
		return fmt.Errorf(`%s takes "topics" (a list) and "last_id"`, f.Type)
	case len(f.Topics) == 0:
		return errors.New(`no topics: send "topics": ["NAME"]`)
	case len(f.Topics) > maxTopics:
		return fmt.Errorf("too many topics (at most %d)", maxTopics)
	case f.Type == "unsubscribe" && f.LastID != "":
		return errors.New("unsubscribe takes no last_id")
	case len(f.LastID) > maxIDLength:
		return errors.New("last_id too long")
	}
	for _, t := range f.Topics {
		if err := hub.ValidateFilter(t); err != nil {
			return err
		}
	}
	return nil
}

// publish publishes what f carries, with the authorisation of the upgrade
// request, and returns the ack or error frame. The right to publish is
// checked before the messages are decoded, and they are decoded one at a
// time up to the batch limit, so a huge frame costs little.
func (c *wsConn) publish(f clientFrame) []byte {
	if denied := c.id.mayPublish(); denied != nil {
		return errorFrame(f.Ref, denied.reason)
	}
	if string(f.Messages) == "null" {
		f.Messages = nil
	}
	one := f.Topic != "" || f.Event != "" || f.Data != nil
	batch := f.Messages != nil
	switch {
	case f.Topics != nil || f.LastID != "":
		return errorFrame(f.Ref, `publish takes "topic", "data", "event" (or "messages"), not "topics" or "last_id"`)
	case one && batch:
		return errorFrame(f.Ref, `publish takes either "messages" or one message's "topic", "data", "event"`)
	}
	in := []jsonMessage{{Topic: f.Topic, Event: f.Event, Data: f.Data}}
	if batch {
		var err error
		in, err = decodeBatch(f.Messages, c.ep.Limits.batch())
		switch {
		case errors.Is(err, errBatchTooLong):
			return errorFrame(f.Ref, fmt.Sprintf("more than %d messages", c.ep.Limits.batch()))
		case errors.Is(err, errBatchEmpty):
			return errorFrame(f.Ref, "empty messages: nothing to publish")
		case err != nil:
			return errorFrame(f.Ref, "messages: "+err.Error())
		}
	}
	msgs := make([]hub.Message, len(in))
	for i, jm := range in {
		m, err := jm.message()
		if err == nil {
			err = c.rq.complete(&m, c.r)
		}
		if err != nil {
			if batch {
				err = fmt.Errorf("message %d: %w", i, err)
			}
			return errorFrame(f.Ref, err.Error())
		}
		msgs[i] = m
	}
	if denied := c.id.mayPublishTo(msgs); denied != nil {
		return errorFrame(f.Ref, denied.reason)
	}

	ids, err := c.ep.Hub.Publish(c.ctx, msgs...)
	switch {
	case errors.Is(err, hub.ErrInvalidTopic), errors.Is(err, hub.ErrUnavailable), errors.Is(err, hub.ErrHubClosed):
		return errorFrame(f.Ref, err.Error())
	case err != nil:
		c.ep.Logger.Error("publish failed", zap.Error(err))
		return errorFrame(f.Ref, "publish failed")
	}
	ack := wsReply{Type: "ack", Ref: f.Ref, IDs: ids}
	if !batch {
		ack.ID, ack.IDs = ids[0], nil
	}
	b, _ := json.Marshal(ack)
	return b
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
	expired, stopExpiry := c.id.expiry()
	defer stopExpiry()
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
			// One message per turn, so commands and pings are not held
			// up by a backlog: what stays queued keeps Ready signalled.
			if m, ok := c.sub.Next(); ok {
				err = c.writeMessage(m)
			}
		case cmd := <-c.cmds:
			err = c.run(*cmd)
		case <-ping.C():
			ping.Next()
			err = c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeTimeout))
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
	_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(writeTimeout))
}

func (c *wsConn) run(cmd wsCommand) error {
	switch cmd.kind {
	case "subscribe":
		return c.subscribe(cmd)
	case "unsubscribe":
		return c.unsubscribe(cmd)
	default:
		return c.writeFrame(cmd.frame)
	}
}

// subscribe adds topics. On a connection without topics it is a plain
// subscription resuming from lastID, as SSE does. On one with topics, the
// filter set grows in one step; the messages queued before that go out
// first, then, with lastID, the retained messages after it that the new
// topics match and the old ones do not, then the ack.
func (c *wsConn) subscribe(cmd wsCommand) error {
	if c.sub == nil {
		opts, denied := c.id.subscription(cmd.topics)
		if denied != nil {
			return c.writeFrame(errorFrame(cmd.ref, denied.reason))
		}
		sub, backlog, gap, err := c.ep.Hub.Subscribe(c.ctx, cmd.topics, cmd.lastID, opts...)
		if err != nil {
			return c.writeFrame(errorFrame(cmd.ref, err.Error()))
		}
		c.sub = sub
		// A replay cut short has answered with an error frame instead.
		if done, err := c.replayAll(cmd.ref, gap, backlog); !done || err != nil {
			return err
		}
		return c.writeFrame(ackFrame(cmd.ref))
	}
	old := c.sub.Filters()
	topics := slices.Clone(old)
	for _, t := range cmd.topics {
		if !slices.Contains(topics, t) {
			topics = append(topics, t)
		}
	}
	if limit := c.ep.Limits.topics(); len(topics) > limit {
		return c.writeFrame(errorFrame(cmd.ref, fmt.Sprintf("too many topics on one connection (at most %d)", limit)))
	}
	opts, denied := c.id.subscription(topics)
	if denied != nil {
		return c.writeFrame(errorFrame(cmd.ref, denied.reason))
	}
	head, queued, err := c.sub.SetFilters(topics, opts...)
	if err != nil {
		return c.writeFrame(errorFrame(cmd.ref, err.Error()))
	}
	if err := c.writeQueued(queued); err != nil {
		return err
	}
	if cmd.lastID != "" {
		// The broker filters and pages the history: one page in memory
		// at a time, each sent before the next is read.
		q := hub.Query{After: cmd.lastID, Upto: head, Match: func(topic string) bool {
			return matchesAny(cmd.topics, topic) && !matchesAny(old, topic) && c.id.mayReceive(topic)
		}}
		for {
			page, err := c.ep.Hub.History(c.ctx, q)
			if err != nil {
				return c.writeFrame(errorFrame(cmd.ref, "subscribed, but "+err.Error()))
			}
			if err := c.sendPage(page.Gap, page.Messages, head); err != nil {
				return err
			}
			if !page.More {
				break
			}
			q.After = page.Messages[len(page.Messages)-1].ID
		}
	}
	return c.writeFrame(ackFrame(cmd.ref))
}

// unsubscribe removes topics (unknown ones are ignored). Messages queued
// before the change go out before the ack; none of the removed topics
// come after it.
func (c *wsConn) unsubscribe(cmd wsCommand) error {
	if c.sub != nil {
		topics := slices.DeleteFunc(slices.Clone(c.sub.Filters()), func(t string) bool {
			return slices.Contains(cmd.topics, t)
		})
		var queued int
		if len(topics) == 0 {
			c.sub.Close()
			queued = c.sub.Queued()
		} else {
			var err error
			if _, queued, err = c.sub.SetFilters(topics); err != nil {
				return c.writeFrame(errorFrame(cmd.ref, err.Error()))
			}
		}
		if err := c.writeQueued(queued); err != nil {
			return err
		}
		if len(topics) == 0 {
			c.sub = nil
		}
	}
	return c.writeFrame(ackFrame(cmd.ref))
}

func matchesAny(filters []string, topic string) bool {
	return slices.ContainsFunc(filters, func(f string) bool { return hub.Match(f, topic) })
}

// replayAll sends the history a new subscription resumes with: the first
// page (gap and msgs) from Subscribe, then the next pages, each read once
// the one before is written. done is false when reading the rest failed:
// it answered with an error frame (with ref, the frame that subscribed)
// instead, and the client resumes from the last ID it got. err is a
// failed write.
func (c *wsConn) replayAll(ref json.RawMessage, gap *hub.Gap, msgs []*hub.Message) (done bool, err error) {
	if c.sub == nil {
		return true, nil
	}
	for {
		if err := c.sendPage(gap, msgs, c.sub.Head()); err != nil {
			return false, err
		}
		if !c.sub.Replaying() {
			return true, nil
		}
		var readErr error
		if msgs, gap, readErr = c.sub.Replay(c.ctx); readErr != nil {
			return false, c.writeFrame(errorFrame(ref, "subscribed, but "+readErr.Error()))
		}
	}
}

// sendPage sends a gap frame, if any, then msgs. With a gap and nothing to
// replay, the gap frame's id moves the client's cursor to head, so it does
// not report the same gap on its next resume.
func (c *wsConn) sendPage(gap *hub.Gap, msgs []*hub.Message, head string) error {
	if gap != nil {
		frame := wsGap{Type: "gap", Gap: *gap}
		if len(msgs) == 0 {
			frame.ID = head
		}
		b, _ := json.Marshal(frame)
		if err := c.writeFrame(b); err != nil {
			return err
		}
	}
	for _, m := range msgs {
		if err := c.writeMessage(m); err != nil {
			return err
		}
	}
	return nil
}

// writeQueued sends the next n queued messages (all that are, if fewer).
func (c *wsConn) writeQueued(n int) error {
	for range n {
		m, ok := c.sub.Next()
		if !ok {
			return nil
		}
		if err := c.writeMessage(m); err != nil {
			return err
		}
	}
	return nil
}

// writeMessage sends m with the frame bytes shared by every WebSocket
// subscriber.
func (c *wsConn) writeMessage(m *hub.Message) error {
	return c.writeFrame(m.Frame(hub.FrameWebSocket, encodeWS))
}

// writeFrame sends one text frame; a socket that does not take it within
// writeTimeout ends the connection.
func (c *wsConn) writeFrame(b []byte) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return c.conn.WriteMessage(websocket.TextMessage, b)
}
