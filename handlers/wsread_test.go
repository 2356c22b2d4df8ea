package handlers

import (
	"bytes"
	"compress/flate"
	"errors"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/caddy-pubsub/caddy-pubsub/park"
)

// maskedFrame is a frame as a client sends it, masked.
func maskedFrame(final bool, op int, payload []byte) []byte {
	b := appendWSFrame(nil, op, payload)
	if !final {
		b[0] &^= 0x80
	}
	hdr := len(b) - len(payload)
	key := [4]byte{9, 8, 7, 6}
	out := append(append(b[:hdr:hdr], key[:]...), payload...)
	out[1] |= 0x80
	for i := range payload {
		out[hdr+4+i] ^= key[i%4]
	}
	return out
}

// feed gives r the bytes of in, n at a time, and returns the frames it
// handed over and how it ended.
func feed(r *wsReader, in []byte, n int) (frames [][]byte, err error) {
	read := func(p []byte) (int, error) {
		if len(in) == 0 {
			return 0, park.ErrWouldBlock
		}
		k := copy(p, in[:min(n, len(in))])
		in = in[k:]
		return k, nil
	}
	for {
		if err := r.fill(read); errors.Is(err, park.ErrWouldBlock) {
			return frames, nil
		}
		if err := r.frames(func(op int, p []byte) { frames = append(frames, append([]byte{byte(op)}, p...)) }); err != nil {
			return frames, err
		}
		if len(r.buf) > int(r.limit)+wsReadBuffer*2+14 {
			return frames, errors.New("buffered more than the limit allows")
		}
	}
}

// The parked reader reassembles fragments around a control frame, read a
// byte at a time or all at once, and holds nothing once a frame is whole.
func TestWSReaderFragments(t *testing.T) {
	var in []byte
	in = append(in, maskedFrame(false, websocket.TextMessage, []byte("hel"))...)
	in = append(in, maskedFrame(true, websocket.PingMessage, []byte("p"))...)
	in = append(in, maskedFrame(true, 0, []byte("lo"))...)
	in = append(in, maskedFrame(true, websocket.BinaryMessage, bytes.Repeat([]byte{1}, 70000))...)
	for _, n := range []int{1, 7, len(in)} {
		r := &wsReader{limit: 1 << 20}
		frames, err := feed(r, in, n)
		if err != nil || len(frames) != 3 {
			t.Fatalf("%d at a time: %d frames, %v", n, len(frames), err)
		}
		if string(frames[0]) != "\x09p" || string(frames[1]) != "\x01hello" || len(frames[2]) != 70001 {
			t.Fatalf("%d at a time: frames %q...", n, frames[:2])
		}
		if r.buf != nil || r.pooled != nil {
			t.Fatalf("%d at a time: holds %d bytes after whole frames", n, cap(r.buf))
		}
	}
}

// Whatever a client sends, the parked reader does not panic, hands over no
// message larger than the limit, and buffers no more than it allows.
func FuzzWSReader(f *testing.F) {
	f.Add(maskedFrame(true, websocket.TextMessage, []byte(`{"type":"publish"}`)), 3)
	f.Add(maskedFrame(false, websocket.TextMessage, bytes.Repeat([]byte("x"), 600)), 1)
	f.Add([]byte{0x81, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 10)
	f.Add(maskedFrame(true, websocket.CloseMessage, []byte{0x03, 0xe8, 0xff}), 2)
	f.Fuzz(func(t *testing.T, in []byte, n int) { checkFeed(t, &wsReader{limit: 1 << 10}, in, n) })
}

// compressedFrame is a client's compressed message: RSV1 on its first
// frame, the payload deflated without its tail.
func compressedFrame(t testing.TB, op int, payload []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestSpeed)
	_, _ = w.Write(payload)
	_ = w.Flush()
	b := maskedFrame(true, op, bytes.TrimSuffix(buf.Bytes(), []byte(deflateTail)))
	b[0] |= rsv1
	return b
}

// With permessage-deflate, the parked reader inflates a compressed
// message, reads a plain one as it is, refuses one that inflates beyond
// the limit with 1009 however small it came, and refuses RSV1 when
// compression was not negotiated.
func TestWSReaderInflates(t *testing.T) {
	in := append(compressedFrame(t, websocket.TextMessage, []byte(`{"type":"publish","data":"hello hello hello"}`)),
		maskedFrame(true, websocket.BinaryMessage, []byte{0, 1})...)
	r := &wsReader{limit: 1 << 10, deflate: true}
	frames, err := feed(r, in, 3)
	if err != nil || len(frames) != 2 || string(frames[0]) != "\x01"+`{"type":"publish","data":"hello hello hello"}` || string(frames[1]) != "\x02\x00\x01" {
		t.Fatalf("frames %q, %v", frames, err)
	}

	bomb := compressedFrame(t, websocket.TextMessage, bytes.Repeat([]byte{'0'}, 1<<20))
	if len(bomb) > 4<<10 {
		t.Fatalf("the bomb is %d bytes compressed, more than the limit", len(bomb))
	}
	var ce *wsCloseError
	if _, err := feed(&wsReader{limit: 4 << 10, deflate: true}, bomb, len(bomb)); !errors.As(err, &ce) || ce.code != websocket.CloseMessageTooBig {
		t.Fatalf("1 MiB inflated from %d bytes: %v, want close 1009", len(bomb), err)
	}
	if _, err := feed(&wsReader{limit: 1 << 10}, in, len(in)); !errors.As(err, &ce) || ce.code != websocket.CloseProtocolError {
		t.Fatalf("RSV1 without compression: %v, want close 1002", err)
	}
}

// Whatever a client that negotiated compression sends, the parked reader
// does not panic and hands over no message, inflated, larger than the
// limit.
func FuzzWSReaderCompressed(f *testing.F) {
	f.Add(compressedFrame(f, websocket.TextMessage, []byte(`{"type":"publish"}`)), 3)
	f.Add(compressedFrame(f, websocket.BinaryMessage, bytes.Repeat([]byte("x"), 6000)), 100)
	f.Add(append(compressedFrame(f, websocket.TextMessage, []byte("ab"))[:2:2], 0, 0, 0, 0, 0xff, 0xff), 1)
	f.Fuzz(func(t *testing.T, in []byte, n int) { checkFeed(t, &wsReader{limit: 1 << 10, deflate: true}, in, n) })
}

// checkFeed feeds in to r, n bytes a read (1 when n is out of range), and
// checks that r fails only with a close, and hands over no message larger
// than its limit.
func checkFeed(t *testing.T, r *wsReader, in []byte, n int) {
	if n <= 0 || n > 1<<16 {
		n = 1
	}
	frames, err := feed(r, in, n)
	var ce *wsCloseError
	if err != nil && !errors.As(err, &ce) {
		t.Fatal(err)
	}
	for _, fr := range frames {
		if len(fr)-1 > int(r.limit) {
			t.Fatalf("handed over %d bytes, limit %d", len(fr)-1, r.limit)
		}
	}
}
