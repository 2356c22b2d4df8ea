package handlers

// Reading a client's WebSocket frames on the parked path (ws_parked.go),
// by the rules gorilla applies on the goroutine path: frames masked, no
// reserved bits but RSV1 on the first frame of a compressed message (when
// permessage-deflate was negotiated), control frames whole and short,
// fragments in order, a message no larger than the read limit, compressed
// or inflated; a breach gets the close code and reason gorilla would send.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// wsReadBuffer is the size of the buffer a read goes to; a frame that is
// larger grows it, up to the read limit.
const wsReadBuffer = 4 << 10

// wsReadBuffers lends read buffers to connections that are reading: an
// idle one holds none.
var wsReadBuffers = sync.Pool{New: func() any { return new([wsReadBuffer]byte) }}

// wsCloseError is a breach of the protocol: the connection closes with
// code and text.
type wsCloseError struct {
	code int
	text string
}

func (e *wsCloseError) Error() string {
	return fmt.Sprintf("websocket: close %d %s", e.code, e.text)
}

// wsReader reassembles a client's frames from what the socket gives, a
// read at a time, and keeps only what is not yet a whole frame.
type wsReader struct {
	limit  int64  // the largest message, in bytes
	buf    []byte // read, not yet handled
	pooled *[wsReadBuffer]byte
	msg    []byte // the fragments of a message so far
	msgOp  int    // its opcode; 0 between messages
	// deflate allows compressed messages (permessage-deflate).
	deflate bool
	// compressed marks the message being read as compressed (RSV1 on
	// its first frame).
	compressed bool
}

// fill reads once from the socket.
func (r *wsReader) fill(read func([]byte) (int, error)) error {
	switch {
	case r.buf == nil:
		r.pooled = wsReadBuffers.Get().(*[wsReadBuffer]byte)
		r.buf = r.pooled[:0]
	case cap(r.buf)-len(r.buf) < wsReadBuffer/4:
		// A frame larger than the buffer: frames bounded its size.
		grown := make([]byte, len(r.buf), 2*cap(r.buf))
		copy(grown, r.buf)
		r.giveBack()
		r.buf = grown
	}
	n, err := read(r.buf[len(r.buf):cap(r.buf)])
	r.buf = r.buf[:len(r.buf)+n]
	if len(r.buf) == 0 {
		r.giveBack()
		r.buf = nil
	}
	return err
}

func (r *wsReader) giveBack() {
	if r.pooled != nil {
		wsReadBuffers.Put(r.pooled)
		r.pooled = nil
	}
}

// frames hands each whole frame read to handle: control frames as they
// come, data frames as whole messages (opcode text or binary). A payload
// handed over is the handler's.
func (r *wsReader) frames(handle func(op int, payload []byte)) error {
	off := 0
	defer func() { r.compact(off) }()
	for {
		b := r.buf[off:]
		if len(b) < 2 {
			return nil
		}
		final, op, masked := b[0]&0x80 != 0, int(b[0]&0x0f), b[1]&0x80 != 0
		n, hdr := int64(b[1]&0x7f), 2
		switch n {
		case 126:
			if len(b) < 4 {
				return nil
			}
			n, hdr = int64(binary.BigEndian.Uint16(b[2:])), 4
		case 127:
			if len(b) < 10 {
				return nil
			}
			u := binary.BigEndian.Uint64(b[2:])
			if u > uint64(r.limit) {
				return &wsCloseError{code: websocket.CloseMessageTooBig}
			}
			n, hdr = int64(u), 10
		}
		rsv := b[0] & 0x70
		if r.deflate && rsv == rsv1 && (op == websocket.TextMessage || op == websocket.BinaryMessage) {
			// A compressed message: only its first frame says so.
			rsv, r.compressed = 0, true
		}
		if err := r.check(rsv, final, op, masked, n); err != nil {
			return err
		}
		hdr += 4
		if int64(len(b)) < int64(hdr)+n {
			return nil
		}
		payload := b[hdr : int64(hdr)+n]
		for i := range payload {
			payload[i] ^= b[hdr-4+i%4]
		}
		off += hdr + int(n)
		switch {
		case op >= websocket.CloseMessage:
			if op == websocket.CloseMessage {
				if err := checkClose(payload); err != nil {
					return err
				}
			}
			handle(op, append([]byte(nil), payload...))
		case final && op != 0:
			msg, err := r.message(append([]byte(nil), payload...))
			if err != nil {
				return err
			}
			handle(op, msg)
		default:
			r.msg = append(r.msg, payload...)
			if op != 0 {
				r.msgOp = op
			}
			if final {
				msg, err := r.message(r.msg)
				if err != nil {
					return err
				}
				handle(r.msgOp, msg)
				r.msg, r.msgOp = nil, 0
			}
		}
	}
}

// message is a whole message's payload, inflated if it came compressed.
func (r *wsReader) message(payload []byte) ([]byte, error) {
	if !r.compressed {
		return payload, nil
	}
	r.compressed = false
	msg, err := inflate(payload, r.limit)
	switch {
	case errors.Is(err, errInflatedTooLarge):
		return nil, &wsCloseError{code: websocket.CloseMessageTooBig}
	case err != nil:
		return nil, &wsCloseError{code: websocket.CloseInvalidFramePayloadData, text: "invalid compressed data"}
	}
	return msg, nil
}

// check applies gorilla's rules to a frame's header.
func (r *wsReader) check(rsv byte, final bool, op int, masked bool, n int64) error {
	var errs []string
	if rsv != 0 {
		errs = append(errs, fmt.Sprintf("unexpected reserved bits 0x%x", rsv))
	}
	switch op {
	case websocket.CloseMessage, websocket.PingMessage, websocket.PongMessage:
		if n > 125 {
			errs = append(errs, "len > 125 for control")
		}
		if !final {
			errs = append(errs, "FIN not set on control")
		}
	case websocket.TextMessage, websocket.BinaryMessage:
		if r.msgOp != 0 {
			errs = append(errs, "data before FIN")
		}
	case 0:
		if r.msgOp == 0 {
			errs = append(errs, "continuation after FIN")
		}
	default:
		errs = append(errs, fmt.Sprintf("bad opcode %d", op))
	}
	if !masked {
		errs = append(errs, "bad MASK")
	}
	if len(errs) > 0 {
		text := strings.Join(errs, ", ")
		if len(text) > maxCloseReason {
			text = text[:maxCloseReason]
		}
		return &wsCloseError{code: websocket.CloseProtocolError, text: text}
	}
	if op < websocket.CloseMessage && int64(len(r.msg))+n > r.limit {
		return &wsCloseError{code: websocket.CloseMessageTooBig}
	}
	return nil
}

// checkClose applies gorilla's rules to a close frame's payload.
func checkClose(payload []byte) error {
	if len(payload) < 2 {
		return nil
	}
	code := int(binary.BigEndian.Uint16(payload))
	switch {
	case !validCloseCode(code):
		return &wsCloseError{code: websocket.CloseProtocolError, text: fmt.Sprintf("bad close code %d", code)}
	case !utf8.Valid(payload[2:]):
		return &wsCloseError{code: websocket.CloseProtocolError, text: "invalid utf8 payload in close frame"}
	}
	return nil
}

// validCloseCode reports whether a client may send code (RFC 6455, 7.4).
func validCloseCode(code int) bool {
	switch code {
	case websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseProtocolError,
		websocket.CloseUnsupportedData, websocket.CloseInvalidFramePayloadData, websocket.ClosePolicyViolation,
		websocket.CloseMessageTooBig, websocket.CloseMandatoryExtension, websocket.CloseInternalServerErr,
		websocket.CloseServiceRestart, websocket.CloseTryAgainLater:
		return true
	}
	return code >= 3000 && code <= 4999
}

// compact drops the first off bytes, which were handled; a reader with
// nothing left gives its buffer back.
func (r *wsReader) compact(off int) {
	rest := copy(r.buf, r.buf[off:])
	r.buf = r.buf[:rest]
	if rest == 0 {
		r.giveBack()
		r.buf = nil
	}
}
