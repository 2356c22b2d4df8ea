package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// wsPublishers holds one WebSocket per publisher for -publish ws: a
// backend that keeps a socket open and sends publish frames, the way
// docs/operations.md calls the cheapest. Each publisher waits for the ack
// of a frame before it sends the next, as it waits for an HTTP answer.
type wsPublishers struct {
	url    string
	header http.Header
	dialer websocket.Dialer

	mu    sync.Mutex
	conns map[int]*websocket.Conn
}

func newWSPublishers(p *publisher, cfg Config) (*wsPublishers, error) {
	u := "ws://" + cfg.target.addr + cfg.target.path
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 4096, WriteBufferSize: 4096}
	if cfg.target.tls {
		conf, err := clientTLS(cfg.caPEM, cfg.Insecure, cfg.target.serverName, "http/1.1")
		if err != nil {
			return nil, err
		}
		u, d.TLSClientConfig = "wss://"+cfg.target.addr+cfg.target.path, conf
	}
	header := http.Header{}
	if p.host != "" {
		header.Set("Host", p.host)
	}
	if p.key != "" {
		header.Set("Authorization", "Bearer "+p.key)
	}
	return &wsPublishers{url: u, header: header, dialer: d, conns: make(map[int]*websocket.Conn)}, nil
}

// conn returns publisher pub's socket, opening it the first time.
func (w *wsPublishers) conn(ctx context.Context, pub int) (*websocket.Conn, error) {
	w.mu.Lock()
	c := w.conns[pub]
	w.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c, resp, err := w.dialer.DialContext(ctx, w.url, w.header)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			err = readStatus(resp)
		}
		return nil, err
	}
	w.mu.Lock()
	w.conns[pub] = c
	w.mu.Unlock()
	return c, nil
}

// publish sends one publish frame, body being its "topic"/"data" or
// "messages" members, and waits for its ack; a failed socket is closed and
// opened again by the next publish.
func (w *wsPublishers) publish(ctx context.Context, pub int, ref int64, body []byte) error {
	c, err := w.conn(ctx, pub)
	if err != nil {
		return err
	}
	frame := append([]byte(`{"type":"publish","ref":`), strconv.FormatInt(ref, 10)...)
	frame = append(append(append(frame, ','), body...), '}')
	if err = w.exchange(ctx, c, ref, frame); err != nil {
		w.mu.Lock()
		delete(w.conns, pub)
		w.mu.Unlock()
		c.Close()
	}
	return err
}

func (w *wsPublishers) exchange(ctx context.Context, c *websocket.Conn, ref int64, frame []byte) error {
	deadline := time.Now().Add(30 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.SetWriteDeadline(deadline)
	if err := c.WriteMessage(websocket.TextMessage, frame); err != nil {
		return err
	}
	_ = c.SetReadDeadline(deadline)
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			return err
		}
		var reply struct {
			Type   string
			Ref    json.RawMessage
			Reason string
		}
		if err := json.Unmarshal(b, &reply); err != nil {
			return fmt.Errorf("publish answer %q: %w", b, err)
		}
		if string(reply.Ref) != strconv.FormatInt(ref, 10) {
			continue
		}
		if reply.Type != "ack" {
			return errors.New("publish refused: " + reply.Reason)
		}
		return nil
	}
}

func (w *wsPublishers) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for pub, c := range w.conns {
		_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		c.Close()
		delete(w.conns, pub)
	}
}

// How publishers send to this project (-publish).
const (
	publishJSON = "json" // POST application/json, an object or (-batch) an array
	publishForm = "form" // POST application/x-www-form-urlencoded, one message
	publishWS   = "ws"   // publish frames on a WebSocket per publisher
)
