package handlers

// WebSockets over HTTP/2 (RFC 8441). When the server offers extended
// CONNECT (Go's HTTP/2 server does only under GODEBUG=http2xconnect=1, a
// process-wide switch), a client may open a WebSocket as a stream of a
// connection it already has: a CONNECT request with the pseudo-header
// :protocol websocket, answered 200. The stream then carries the frames of
// RFC 6455 both ways, as a hijacked socket does over HTTP/1.1. gorilla
// cannot serve a stream, so this file is the frame codec there: wsReader
// (wsread.go) reads the client's frames from the request body with
// gorilla's rules, appendWSFrame and the shared frames of ws_parked.go and
// wsdeflate.go go out through the ResponseWriter. The rest (the reader and
// writer of websocket.go, the frame protocol) is the goroutine path's, so
// such a WebSocket keeps its handler goroutine for its life: a stream
// cannot leave net/http to be parked.

import (
	"encoding/binary"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// IsWebSocketConnect reports whether r opens a WebSocket over HTTP/2: an
// extended CONNECT whose :protocol is websocket (Go's HTTP/2 server hands
// the pseudo-header over among the headers). HTTP/3 (RFC 9220) is not
// served: quic-go reports :protocol elsewhere, and browsers do not use it.
func IsWebSocketConnect(r *http.Request) bool {
	return r.ProtoMajor == 2 && r.Method == http.MethodConnect && r.Header.Get(":protocol") == "websocket"
}

// errWSPeerClosed is the end of a stream whose client sent its close
// frame.
var errWSPeerClosed = errors.New("websocket: the client closed the connection")

// acceptStream answers a WebSocket's extended CONNECT with 200, after
// the checks gorilla makes of an HTTP/1.1 handshake that still apply
// (RFC 8441, 5: no key, no accept), negotiating permessage-deflate as
// negotiate does. It returns nil when it refused the request.
func acceptStream(w http.ResponseWriter, r *http.Request, limit int64) (*h2Stream, bool) {
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		// As gorilla answers a version it does not speak.
		w.Header().Set("Sec-WebSocket-Version", "13")
		fail(w, http.StatusBadRequest, "websocket: unsupported version: 13 not found in 'Sec-Websocket-Version' header")
		return nil, false
	}
	deflate := offersDeflate(r)
	if deflate {
		w.Header().Set("Sec-WebSocket-Extensions", "permessage-deflate; server_no_context_takeover; client_no_context_takeover")
	}
	s := &h2Stream{
		body: r.Body,
		rc:   http.NewResponseController(w),
		in:   wsReader{limit: limit, deflate: deflate},
	}
	// Every write lifts its deadline: an HTTP/2 stream is reset when its
	// deadline passes, writing or not (see sseWriter).
	s.out = sseWriter{w: w, rc: s.rc, lift: true}
	w.WriteHeader(http.StatusOK)
	if err := s.rc.Flush(); err != nil {
		return nil, false
	}
	return s, deflate
}

// h2Stream is a WebSocket on an HTTP/2 stream: the wsStream of
// websocket.go's reader and writer.
type h2Stream struct {
	rc   *http.ResponseController
	body interface{ Read([]byte) (int, error) }

	// The reader's.
	in      wsReader
	pending []wsInbound // messages read, not yet handed to the reader
	readErr error       // why reading ended, once pending is handed out
	onPong  func()

	mu        sync.Mutex // one frame at a time: the writer's, and the reader's answers
	out       sseWriter
	closeSent bool        // the close frame went: nothing follows it
	stopped   atomic.Bool // abort was called
}

// send implements wsSink.
func (s *h2Stream) send(op int, b []byte) error {
	return s.write(appendWSFrame(nil, op, b), false)
}

// close implements wsSink.
func (s *h2Stream) close(code int, reason string) error {
	return s.write(appendWSFrame(nil, websocket.CloseMessage, websocket.FormatCloseMessage(code, reason)), true)
}

// sendFrames implements wsSink: one write and one flush.
func (s *h2Stream) sendFrames(frames []byte) error {
	return s.write(frames, false)
}

// ping implements wsStream.
func (s *h2Stream) ping() error {
	return s.write(appendWSFrame(nil, websocket.PingMessage, nil), false)
}

// write sends whole frames and flushes them, within writeTimeout.
func (s *h2Stream) write(frame []byte, closing bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closeSent {
		return errWSClosing
	}
	if s.stopped.Load() {
		return errWSClosing
	}
	s.closeSent = closing
	return s.out.write(frame)
}

// setReadDeadline implements wsStream. A deadline that passes ends the
// body's reads, and with them the reader.
func (s *h2Stream) setReadDeadline(t time.Time) error {
	return s.rc.SetReadDeadline(t)
}

// abort implements wsStream: nothing more is written. A write under way,
// to a client that stopped reading, ends at its deadline (writeTimeout),
// which resets the stream; it cannot be cut shorter from here, since
// Caddy's write timeout wrapper takes a deadline only from the goroutine
// that writes. The stream ends cleanly when the handler returns.
func (s *h2Stream) abort() { s.stopped.Store(true) }

// next implements wsStream: the client's next message. Pings are
// answered and pongs reported on the way; a client's close frame is
// answered with its code, and a breach of the protocol with the close
// code gorilla would send.
func (s *h2Stream) next() (int, []byte, error) {
	for {
		if len(s.pending) > 0 {
			m := s.pending[0]
			s.pending = s.pending[1:]
			op := websocket.TextMessage
			if m.binary {
				op = websocket.BinaryMessage
			}
			return op, m.data, nil
		}
		s.pending = nil
		if s.readErr != nil {
			s.in.giveBack()
			return 0, nil, s.readErr
		}
		readErr := s.in.fill(s.body.Read)
		err := s.in.frames(s.frame)
		var breach *wsCloseError
		switch {
		case s.readErr != nil:
			// The client's close frame: what followed it does not count.
		case errors.As(err, &breach):
			_ = s.close(breach.code, breach.text)
			s.readErr = err
		case readErr != nil:
			s.readErr = readErr
		}
	}
}

// frame handles one frame of the client's, as wsReader.frames hands it.
func (s *h2Stream) frame(op int, payload []byte) {
	if s.readErr != nil {
		return
	}
	switch op {
	case websocket.TextMessage, websocket.BinaryMessage:
		s.pending = append(s.pending, wsInbound{binary: op == websocket.BinaryMessage, data: payload})
	case websocket.PingMessage:
		_ = s.write(appendWSFrame(nil, websocket.PongMessage, payload), false)
	case websocket.PongMessage:
		s.onPong()
	case websocket.CloseMessage:
		// Answered as gorilla does: the client's code, no reason.
		answer := []byte{}
		if len(payload) >= 2 {
			answer = websocket.FormatCloseMessage(int(binary.BigEndian.Uint16(payload)), "")
		}
		_ = s.write(appendWSFrame(nil, websocket.CloseMessage, answer), true)
		s.readErr = errWSPeerClosed
	}
}
