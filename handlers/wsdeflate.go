package handlers

// permessage-deflate (RFC 7692) for WebSockets whose client offers it,
// always without context takeover: each message is compressed on its own,
// so a message's compressed frame is made once and shared by every
// subscriber, like its plain one, and a connection keeps no compressor
// between messages. gorilla negotiates it and compresses on the goroutine
// path; the parked path writes the shared frames (frameWSDeflate) and
// inflates what the client sends (wsread.go). Either way a client's
// message inflates to at most max_message_size: gorilla's read limit
// counts the compressed bytes only.

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/gorilla/websocket"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// deflateUpgrader is upgrader, negotiating permessage-deflate.
var deflateUpgrader = func() websocket.Upgrader {
	u := upgrader
	u.EnableCompression = true
	return u
}()

// offersDeflate reports whether r offers permessage-deflate, whatever its
// parameters: the server's answer turns context takeover off both ways,
// which every client must accept (RFC 7692, 7.1.1), and keeps the default
// window.
func offersDeflate(r *http.Request) bool {
	for _, v := range r.Header.Values("Sec-WebSocket-Extensions") {
		for ext := range strings.SplitSeq(v, ",") {
			name, _, _ := strings.Cut(ext, ";")
			if strings.EqualFold(strings.TrimSpace(name), "permessage-deflate") {
				return true
			}
		}
	}
	return false
}

// negotiate picks the upgrader for r, and gives gorilla a request whose
// only extension offer is the one this decided on, so that what gorilla
// negotiates and what the parked path assumes are one decision.
func negotiate(r *http.Request) (*websocket.Upgrader, *http.Request, bool) {
	if r.Header.Get("Sec-WebSocket-Extensions") == "" {
		return &upgrader, r, false
	}
	deflate := offersDeflate(r)
	clone := *r
	clone.Header = r.Header.Clone()
	clone.Header.Del("Sec-WebSocket-Extensions")
	if !deflate {
		return &upgrader, &clone, false
	}
	clone.Header.Set("Sec-WebSocket-Extensions", "permessage-deflate")
	return &deflateUpgrader, &clone, true
}

// frameWSDeflate is the kind of a message's whole compressed WebSocket
// frame, shared by every parked subscriber that negotiated compression.
var frameWSDeflate = hub.NewFrameKind()

// deflateLevel trades ratio for CPU: the fastest level, as gorilla's
// default, since a server compresses every message it sends.
const deflateLevel = flate.BestSpeed

var flateWriters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, deflateLevel)
	return w
}}

// deflateTail ends every compressed message on the wire; it is removed
// when sending and put back when reading (RFC 7692, 7.2.1 and 7.2.2).
const deflateTail = "\x00\x00\xff\xff"

// finalBlock is an empty stored block marked final: after a message's
// blocks it ends the stream, so the reader sees its end, not an
// unexpected EOF.
const finalBlock = "\x01\x00\x00\xff\xff"

// encodeWSDeflate encodes m's frame compressed, with RSV1 set; a message
// that does not shrink goes as its plain frame, which a compressing
// connection may send too.
func encodeWSDeflate(m *hub.Message) []byte {
	payload := m.Frame(frameWebSocket, encodeWS)
	var buf bytes.Buffer
	w := flateWriters.Get().(*flate.Writer)
	w.Reset(&buf)
	_, _ = w.Write(payload)
	_ = w.Flush()
	flateWriters.Put(w)
	compressed := bytes.TrimSuffix(buf.Bytes(), []byte(deflateTail))
	if len(compressed) >= len(payload) {
		return m.Frame(frameWSWire, encodeWSWire)
	}
	frame := appendWSFrame(nil, wsOpcode(m), compressed)
	frame[0] |= rsv1
	return frame
}

// rsv1 is the bit of a frame's first byte that marks a compressed message.
const rsv1 = 0x40

// errInflatedTooLarge is a compressed message that inflates beyond the
// read limit.
var errInflatedTooLarge = errors.New("websocket: message inflates beyond the read limit")

// inflate decompresses a client's message, and stops at limit bytes: a
// few kilobytes that inflate to gigabytes cost no more than limit.
func inflate(compressed []byte, limit int64) ([]byte, error) {
	src := io.MultiReader(bytes.NewReader(compressed), strings.NewReader(deflateTail+finalBlock))
	fr := flateReaders.Get().(io.ReadCloser)
	defer flateReaders.Put(fr)
	_ = fr.(flate.Resetter).Reset(src, nil)
	return readLimited(fr, limit)
}

// flateReaders lends decompressors, with their 32 KiB window, to the
// messages being inflated: an idle connection holds none.
var flateReaders = sync.Pool{New: func() any { return flate.NewReader(nil) }}

// readLimited reads r to its end, refusing more than limit bytes.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, errInflatedTooLarge
	}
	return b, nil
}
