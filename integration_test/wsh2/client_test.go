package wsh2_test

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Opcodes of RFC 6455.
const (
	opText   = 1
	opBinary = 2
	opClose  = 8
	opPing   = 9
	opPong   = 10
)

// h2Client is an HTTP/2-only client over TLS that counts the TCP
// connections it opens.
type h2Client struct {
	*http.Client
	dials atomic.Int64
}

// It is golang.org/x/net/http2's: net/http's Transport refuses the
// :protocol header before its HTTP/2 client could send it.
func newH2Client(t testing.TB, roots *x509.CertPool) *h2Client {
	c := &h2Client{}
	tr := &http2.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialTLSContext: func(ctx context.Context, network, addr string, conf *tls.Config) (net.Conn, error) {
			c.dials.Add(1)
			return (&tls.Dialer{Config: conf}).DialContext(ctx, network, addr)
		},
	}
	c.Client = &http.Client{Transport: tr}
	t.Cleanup(tr.CloseIdleConnections)
	return c
}

// publish publishes data to topic over c, with the publish key.
func (c *h2Client) publish(t testing.TB, base, topic, data string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/events", strings.NewReader(url.Values{"topic": {topic}, "data": {data}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer k")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("publish: %s %s, %v", resp.Proto, resp.Status, err)
	}
	return out.ID
}

// frame is one frame the server sent.
type frame struct {
	op      int
	rsv1    bool // compressed
	payload []byte
}

// closeCode is a close frame's code and reason.
func (f frame) closeCode() (int, string) {
	if f.op != opClose || len(f.payload) < 2 {
		return 0, ""
	}
	return int(binary.BigEndian.Uint16(f.payload)), string(f.payload[2:])
}

// h2WS is a WebSocket on a stream of an h2Client's connection: the
// client's frames go masked through the request body, the server's come
// in the response body.
type h2WS struct {
	t      testing.TB
	Resp   *http.Response
	out    *io.PipeWriter
	mu     sync.Mutex // one frame at a time
	frames chan frame
	done   chan struct{} // closed when the server's side ended
	err    error         // why it ended, once done

	pings       atomic.Int64 // pings received
	ignorePings atomic.Bool  // leave them unanswered
}

// dialH2 opens a WebSocket to base+"/events"+query by extended CONNECT,
// with header; the answer must be 200.
func dialH2(t testing.TB, c *h2Client, base, query string, header http.Header) *h2WS {
	t.Helper()
	ws, err := tryH2(t, c, base, query, header)
	if err != nil {
		t.Fatal(err)
	}
	if ws.Resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(ws.Resp.Body)
		t.Fatalf("extended CONNECT %s: %s %s", query, ws.Resp.Status, b)
	}
	go ws.read()
	return ws
}

// tryH2 sends the extended CONNECT and returns the answer, whatever it is.
func tryH2(t testing.TB, c *h2Client, base, query string, header http.Header) (*h2WS, error) {
	in, out := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodConnect, base+"/events"+query, in)
	if err != nil {
		t.Fatal(err)
	}
	// The HTTP/2 client sends this header as the :protocol
	// pseudo-header of an extended CONNECT, once the server's SETTINGS
	// allow it.
	req.Header[":protocol"] = []string{"websocket"}
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Authorization", "Bearer k")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	ws := &h2WS{t: t, Resp: resp, out: out, frames: make(chan frame, 64), done: make(chan struct{})}
	t.Cleanup(func() {
		cancel()
		out.Close()
		resp.Body.Close()
	})
	return ws, nil
}

// read reads the server's frames until the stream ends.
func (w *h2WS) read() {
	defer close(w.done)
	defer close(w.frames)
	r := bufio.NewReader(w.Resp.Body)
	for {
		var hdr [2]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			w.err = err
			return
		}
		if hdr[1]&0x80 != 0 {
			w.err = fmt.Errorf("the server sent a masked frame")
			return
		}
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			_, w.err = io.ReadFull(r, b[:])
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			_, w.err = io.ReadFull(r, b[:])
			n = binary.BigEndian.Uint64(b[:])
		}
		if w.err != nil {
			return
		}
		f := frame{op: int(hdr[0] & 0x0f), rsv1: hdr[0]&0x40 != 0, payload: make([]byte, n)}
		if _, err := io.ReadFull(r, f.payload); err != nil {
			w.err = err
			return
		}
		if hdr[0]&0x80 == 0 {
			w.err = fmt.Errorf("the server sent a fragment (opcode %d)", f.op)
			return
		}
		if f.rsv1 {
			inflated, err := io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(f.payload), strings.NewReader("\x00\x00\xff\xff\x01\x00\x00\xff\xff"))))
			if err != nil {
				w.err = fmt.Errorf("inflating a frame: %w", err)
				return
			}
			f.payload = inflated
		}
		if f.op == opPing {
			w.pings.Add(1)
			if !w.ignorePings.Load() {
				w.raw(0x80|opPong, f.payload, true)
			}
			continue
		}
		w.frames <- f
	}
}

// raw sends one frame: first is its first byte (FIN, RSV, opcode);
// masked as a client must, or not.
func (w *h2WS) raw(first byte, payload []byte, masked bool) {
	b := []byte{first}
	maskBit := byte(0)
	if masked {
		maskBit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, maskBit|byte(n))
	case n <= 0xffff:
		b = append(b, maskBit|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, maskBit|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if masked {
		var key [4]byte
		_, _ = rand.Read(key[:])
		b = append(b, key[:]...)
		for i, c := range payload {
			b = append(b, c^key[i%4])
		}
	} else {
		b = append(b, payload...)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// A write after the stream ended fails; the reads tell the test.
	_, _ = w.out.Write(b)
}

// send sends a whole message of opcode op.
func (w *h2WS) send(op int, payload []byte) { w.raw(0x80|byte(op), payload, true) }

// sendJSON sends v as a text message.
func (w *h2WS) sendJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		w.t.Fatal(err)
	}
	w.send(opText, b)
}

// sendCompressed sends a text message compressed (permessage-deflate).
func (w *h2WS) sendCompressed(payload []byte) {
	var buf bytes.Buffer
	fw, _ := flate.NewWriter(&buf, flate.BestSpeed)
	_, _ = fw.Write(payload)
	_ = fw.Flush()
	w.raw(0x80|0x40|opText, bytes.TrimSuffix(buf.Bytes(), []byte("\x00\x00\xff\xff")), true)
}

// next is the server's next frame, within testserver.Wait.
func (w *h2WS) next() frame {
	w.t.Helper()
	select {
	case f, ok := <-w.frames:
		if !ok {
			w.t.Fatalf("the stream ended: %v", w.err)
		}
		return f
	case <-time.After(testserver.Wait):
		w.t.Fatal("no frame within", testserver.Wait)
	}
	return frame{}
}

// nextText is the next frame, which must be a text frame of type typ
// (any type when "").
func (w *h2WS) nextText(typ string) testserver.WSFrame {
	w.t.Helper()
	f := w.next()
	var m testserver.WSFrame
	if f.op != opText || json.Unmarshal(f.payload, &m) != nil || (typ != "" && m.Type != typ) {
		w.t.Fatalf("got frame (opcode %d) %q, want a text frame of type %q", f.op, f.payload, typ)
	}
	m.Raw = string(f.payload)
	return m
}

// expectClose reads until the server's close frame and returns its code
// and reason; the stream must then end.
func (w *h2WS) expectClose() (int, string) {
	w.t.Helper()
	for {
		f := w.next()
		if f.op != opClose {
			continue
		}
		code, reason := f.closeCode()
		select {
		case _, ok := <-w.frames:
			if ok {
				w.t.Fatal("a frame after the close frame")
			}
		case <-time.After(testserver.Wait):
			w.t.Fatal("the stream is still open after the close frame")
		}
		return code, reason
	}
}
