package handlers

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/park"
)

// An SSE stream over HTTP/1.1, once its headers and replay are out, leaves
// net/http: it is hijacked and parked (package park), so an idle
// subscriber holds no goroutine, only its socket, its subscription and
// parkedSSE. The hub notifies the core when the subscription has messages
// or ends (Subscriber.OnReady); a worker then calls Send, which does what
// sseStream.run does on the goroutine path. Over TLS, what Send returns is
// written through crypto/tls by a goroutine that exists while there is
// something to write. HTTP/2 and HTTP/3 streams cannot leave net/http:
// they keep the goroutine path, as does every platform but Linux.

// chunkRoom is the room kept before a chunk's data for its size line:
// eight hex digits and CRLF.
const chunkRoom = 10

// parkedSSE is an SSE stream served by the parked core. net/http began the
// response with chunked transfer encoding, so each write is one chunk, and
// the stream ends with the last chunk.
//
// It keeps nothing of the request: the request, Caddy's response writers
// and net/http's connection state are garbage once the handler returns,
// and they are most of what an idle stream on the goroutine path holds.
type parkedSSE struct {
	ep        *Endpoint
	sub       *hub.Subscriber
	frame     func(*hub.Message) []byte
	release   func()
	heartbeat time.Duration
	nextBeat  time.Time
	expires   time.Time // zero without a token
}

// park hands the stream to the parked core, and reports whether it did;
// when it did not, the stream is as it was.
func (s *sseStream) park(rq Request) bool {
	// Chunks are written by hand from here on: only a GET over HTTP/1.1
	// has a chunked body (HTTP/1.0 has none, HEAD no body), and only an
	// uncompressed one can be continued raw.
	if !park.Supported || s.r.Method != http.MethodGet || s.r.ProtoMajor != 1 || s.r.ProtoMinor != 1 ||
		s.out.w.Header().Get("Content-Encoding") != "" {
		return false
	}
	conn, _, err := s.out.rc.Hijack()
	if err != nil {
		return false
	}
	p := &parkedSSE{ep: s.ep, sub: s.sub, frame: s.frame, release: rq.keep(), heartbeat: s.ep.Heartbeat}
	if s.id.token != nil {
		p.expires = s.id.token.Expires
	}
	pc, err := park.Park(conn, p, writeTimeout)
	if err != nil {
		// The connection is ours now and cannot go back to net/http (a
		// listener wrapper handed it over as something other than plain
		// TCP): it keeps a goroutine, as it would have.
		s.ep.Logger.Debug("SSE stream served on its goroutine", zap.Error(err))
		b := park.NewBlocking(conn, p, writeTimeout)
		s.sub.OnReady(b.Notify)
		b.Run()
		return true
	}
	s.sub.OnReady(pc.Notify)
	return true
}

// Send implements park.Stream: what sseStream.run and endSSE would write
// at now.
func (p *parkedSSE) Send(buf []byte, now time.Time) ([]byte, time.Time, bool) {
	sub := p.sub
	buf = append(buf[:0], make([]byte, chunkRoom)...)
	end := false
	select {
	case <-sub.Done():
		reason := sub.Err()
		if !errors.Is(reason, hub.ErrSlowConsumer) {
			// The queue goes out a batch per Send: a subscription with
			// more queued is notified again.
			if buf = drain(buf, sub, p.frame); sub.Queued() > 0 {
				break
			}
		}
		if reason != nil {
			buf = append(buf, ": closed: "+reason.Error()+"\n\n"...)
			p.ep.Logger.Debug("SSE subscriber closed", zap.Strings("topics", sub.Filters()), zap.Error(reason))
		}
		end = true
	default:
		if !p.expires.IsZero() && !now.Before(p.expires) {
			buf = append(buf, ": closed: "+errTokenExpired.Error()+"\n\n"...)
			end = true
			break
		}
		buf = drain(buf, sub, p.frame)
	}
	if p.nextBeat.IsZero() {
		p.nextBeat = now.Add(p.heartbeat)
	}
	if !end && len(buf) == chunkRoom && !now.Before(p.nextBeat) {
		buf = append(buf, ":\n\n"...)
	}
	if len(buf) > chunkRoom {
		// An idle stream gets a heartbeat one interval after it last got
		// anything.
		p.nextBeat = now.Add(p.heartbeat)
	}
	next := p.nextBeat
	if !p.expires.IsZero() && p.expires.Before(next) {
		next = p.expires
	}
	return chunk(buf, end), next, end
}

// chunk frames buf[chunkRoom:] as one HTTP/1.1 chunk, in place, followed
// by the last chunk when end; it returns nothing when there is nothing to
// send.
func chunk(buf []byte, end bool) []byte {
	n := len(buf) - chunkRoom
	if n > 0 {
		size := strconv.AppendInt(make([]byte, 0, chunkRoom), int64(n), 16)
		size = append(size, "\r\n"...)
		start := chunkRoom - len(size)
		copy(buf[start:], size)
		buf = append(buf[start:], "\r\n"...)
	} else {
		buf = buf[chunkRoom:]
	}
	if end {
		buf = append(buf, "0\r\n\r\n"...)
	}
	return buf
}

// Closed implements park.Stream: the subscription ends with the
// connection.
func (p *parkedSSE) Closed(err error) {
	p.sub.Close()
	p.release()
	if err != nil {
		p.ep.Logger.Debug("parked SSE stream closed", zap.Strings("topics", p.sub.Filters()), zap.Error(err))
	}
}

// Interface guards
var _ park.Stream = (*parkedSSE)(nil)
