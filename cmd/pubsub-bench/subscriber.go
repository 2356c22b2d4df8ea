package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// handshakeTimeout bounds connecting and reading the answer headers.
const handshakeTimeout = 15 * time.Second

// subscriber is one client connection and what it has seen. Only its own
// goroutine touches it.
type subscriber struct {
	w     *worker
	index int
	live  bool
	// next is the sequence number expected from each publisher.
	next        []int64
	closeReason string
}

// deliver accounts one message; now is when it was read.
func (s *subscriber) deliver(b []byte, now time.Time) {
	st, ok := parseStamp(b)
	if !ok || st.pub < 0 || st.pub >= int64(len(s.next)) {
		s.w.foreign.Add(1)
		return
	}
	s.w.received.Add(1)
	switch next := s.next[st.pub]; {
	case st.seq < next:
		s.w.duplicated.Add(1)
		return
	case st.seq > next:
		s.w.skipped.Add(st.seq - next)
	}
	s.next[st.pub] = st.seq + 1
	s.w.unique.Add(1)
	if n := len(s.w.perServer); n > 0 {
		s.w.perServer[s.index%n].Add(1)
	}
	s.w.latency.Record(now.Sub(time.Unix(0, st.sentNS)))
}

// requestURI is the subscription's request URI for the peer: its topic,
// lastID and, for this project's endpoint, the extra parameters.
func (s *subscriber) requestURI(lastID string, extra map[string]string) string {
	c := &s.w.cfg
	topic := topicName(c.Topic, subscriberTopic(s.index, c.Topics), c.Topics)
	return subscribeURI(c.Peer, c.Path, c.Query, topic, lastID, extra)
}

// host is the Host header of the subscriber's server.
func (s *subscriber) host() string {
	_, h := s.w.cfg.server(s.index)
	return h
}

// handshakeDeadline bounds connecting: handshakeTimeout, and no later
// than the end of the connect phase.
func (s *subscriber) handshakeDeadline() time.Time {
	d := time.Now().Add(handshakeTimeout)
	if s.w.cfg.ConnectBy.Before(d) {
		return s.w.cfg.ConnectBy
	}
	return d
}

// bufferSize fits one line of a message of the configured size, escaped.
func (s *subscriber) bufferSize() int {
	return max(4096, 2*s.w.cfg.Size+1024)
}

// runSSE subscribes over Server-Sent Events, with ?format=json so each
// event's data is the envelope holding the message data.
func (s *subscriber) runSSE() error {
	conn, release, err := s.w.dial(s.index, s.w.cfg.ConnectBy)
	if err != nil {
		return s.connectFailed(err)
	}
	defer release()
	uri := s.requestURI(s.w.cfg.StartID, map[string]string{"format": "json"})
	_ = conn.SetDeadline(s.handshakeDeadline())
	req := "GET " + uri + " HTTP/1.1\r\nHost: " + s.host() + "\r\nAccept: text/event-stream\r\n" + s.authHeader() + "\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return s.connectFailed(err)
	}
	// The body is never closed: closing would read the stream to its end.
	// Closing the connection (release) ends it.
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 4096), &http.Request{Method: http.MethodGet})
	if err != nil {
		return s.connectFailed(err)
	}
	if resp.StatusCode != http.StatusOK {
		return s.connectFailed(readStatus(resp))
	}
	// The server subscribes before it answers: from here on, nothing
	// published is missed.
	_ = conn.SetDeadline(time.Time{})
	if err := s.connectDone(); err != nil {
		return err
	}
	return s.readSSE(resp.Body)
}

// runSSEH2 subscribes over Server-Sent Events as one stream of the
// worker's HTTP/2 connections.
func (s *subscriber) runSSEH2() error {
	ctx, cancel := context.WithCancel(s.w.ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+s.w.cfg.Host+s.requestURI(s.w.cfg.StartID, map[string]string{"format": "json"}), nil)
	if err != nil {
		return s.connectFailed(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if s.w.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.w.cfg.Token)
	}
	// The handshake's bound ends the request only until the answer
	// arrives.
	late := time.AfterFunc(time.Until(s.handshakeDeadline()), cancel)
	client := s.w.h2
	if s.w.cfg.HTTP2OwnConn {
		client = s.w.newH2Client(s.w.h2conf, s.index)
		defer client.CloseIdleConnections()
	}
	resp, err := client.Do(req)
	if !late.Stop() && err == nil {
		resp.Body.Close()
		err = os.ErrDeadlineExceeded
	}
	if err != nil {
		return s.connectFailed(err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode != http.StatusOK:
		return s.connectFailed(readStatus(resp))
	case resp.ProtoMajor != 2:
		return s.connectFailed(protocolError("-http2: the server answered over " + resp.Proto))
	}
	if err := s.connectDone(); err != nil {
		return err
	}
	return s.readSSE(resp.Body)
}

// authHeader is the Authorization header line of -token, or "".
func (s *subscriber) authHeader() string {
	if s.w.cfg.Token == "" {
		return ""
	}
	return "Authorization: Bearer " + s.w.cfg.Token + "\r\n"
}

// readSSE reads the event stream body until it ends, accounting each
// message.
func (s *subscriber) readSSE(body io.Reader) error {
	lines := bufio.NewReaderSize(body, s.bufferSize())
	var event []byte
	for {
		line, err := lines.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return protocolError("SSE line longer than the read buffer")
			}
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			event = event[:0]
		case bytes.HasPrefix(line, []byte("data:")):
			now := time.Now()
			if len(event) > 0 {
				if string(event) == "gap" {
					s.w.gaps.Add(1)
				}
				continue
			}
			s.deliver(line, now)
		case bytes.HasPrefix(line, []byte("event:")):
			event = append(event[:0], bytes.TrimSpace(line[len("event:"):])...)
		case bytes.HasPrefix(line, []byte(": closed: ")):
			s.closeReason = "server closed the stream: " + string(line[len(": closed: "):])
		}
	}
}

// runWS subscribes over WebSocket: the server sends text frames
// {"type":"message","id","topic","event","data","time"}.
func (s *subscriber) runWS() error {
	var release func()
	dial := func(_ context.Context, _, _ string) (net.Conn, error) {
		conn, rel, err := s.w.dial(s.index, s.w.cfg.ConnectBy)
		release = rel
		return conn, err
	}
	d := websocket.Dialer{
		HandshakeTimeout: max(time.Millisecond, time.Until(s.handshakeDeadline())),
		ReadBufferSize:   s.bufferSize(),
		WriteBufferSize:  512,
	}
	scheme := "ws://"
	if s.w.tls != nil {
		// dial has done the TLS handshake.
		scheme, d.NetDialTLSContext = "wss://", dial
	} else {
		d.NetDialContext = dial
	}
	var header http.Header
	if s.w.cfg.Token != "" {
		header = http.Header{"Authorization": {"Bearer " + s.w.cfg.Token}}
	}
	c, resp, err := d.DialContext(s.w.ctx, scheme+s.host()+s.requestURI(s.w.cfg.StartID, nil), header)
	if err != nil {
		if release != nil {
			release()
		}
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			err = readStatus(resp)
		}
		return s.connectFailed(err)
	}
	defer release()
	defer c.Close()
	if err := s.connectDone(); err != nil {
		return err
	}

	c.SetReadLimit(int64(s.bufferSize()) * 4)
	var buf bytes.Buffer
	for {
		_, r, err := c.NextReader()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				s.closeReason = fmt.Sprintf("server closed the WebSocket: %d %s", ce.Code, ce.Text)
			}
			return err
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			return err
		}
		now := time.Now()
		frame := buf.Bytes()
		switch {
		case s.w.cfg.Peer == peerNchan:
			// nchan sends each message's data as it is, one frame each.
			s.deliver(frame, now)
		case bytes.Contains(frame, []byte(`"type":"message"`)):
			s.deliver(frame, now)
		case bytes.Contains(frame, []byte(`"type":"gap"`)):
			s.w.gaps.Add(1)
		case bytes.Contains(frame, []byte(`"type":"error"`)):
			s.closeReason = "server error frame: " + string(frame[:min(len(frame), 200)])
		}
	}
}

// pollAnswer is a long-poll answer.
type pollAnswer struct {
	Messages []struct {
		Data string `json:"data"`
	} `json:"messages"`
	LastID string `json:"last_id"`
	Gap    bool   `json:"gap"`
}

// runPoll long-polls with ?last_id= over one keep-alive connection,
// reconnecting when the server closes it.
func (s *subscriber) runPoll() error {
	cursor := s.w.cfg.StartID
	var conn net.Conn
	var br *bufio.Reader
	release := func() {}
	defer func() { release() }()
	// One answer holds at most 10,000 messages (the server's largest
	// poll_batch), each data escaped in its envelope.
	maxAnswer := min(256<<20, 10_000*int64(2*s.w.cfg.Size+512))
	var body bytes.Buffer
	for first := true; ; first = false {
		if conn == nil {
			var by time.Time
			if first {
				by = s.w.cfg.ConnectBy
			}
			c, rel, err := s.w.dial(s.index, by)
			if err != nil {
				if first {
					return s.connectFailed(err)
				}
				return err
			}
			conn, release, br = c, rel, bufio.NewReaderSize(c, 4096)
		}
		req := "GET " + s.requestURI(cursor, map[string]string{"transport": "poll"}) + " HTTP/1.1\r\nHost: " + s.host() + "\r\nAccept: application/json\r\n" + s.authHeader() + "\r\n"
		if first {
			_ = conn.SetWriteDeadline(s.handshakeDeadline())
		}
		if _, err := io.WriteString(conn, req); err != nil {
			if first {
				return s.connectFailed(err)
			}
			return err
		}
		if first {
			_ = conn.SetWriteDeadline(time.Time{})
			// The poll is in the server's hands: its cursor, not the
			// moment it is read, decides what it gets.
			if err := s.connectDone(); err != nil {
				return err
			}
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			err := readStatus(resp)
			if first {
				// Never really subscribed: count it as a failed connect.
				s.live = false
				s.w.connected.Add(-1)
				s.w.failed.Add(1)
				s.w.connectErrors.add(classify(err))
			}
			return err
		}
		body.Reset()
		_, err = body.ReadFrom(io.LimitReader(resp.Body, maxAnswer+1))
		resp.Body.Close()
		switch {
		case err != nil:
			return err
		case int64(body.Len()) > maxAnswer:
			return protocolError("long-poll answer larger than 10,000 messages")
		}
		now := time.Now()
		var a pollAnswer
		if err := json.Unmarshal(body.Bytes(), &a); err != nil {
			return protocolError("unreadable long-poll answer")
		}
		if a.Gap {
			s.w.gaps.Add(1)
		}
		for _, m := range a.Messages {
			s.deliver([]byte(m.Data), now)
		}
		if a.LastID != "" {
			cursor = a.LastID
		}
		if body.Cap() > 64<<10 {
			// Idle pollers keep no large buffer.
			body = bytes.Buffer{}
		}
		if resp.Close {
			release()
			conn, release = nil, func() {}
		}
	}
}

// readStatus turns an error answer into a statusError with the first
// line of its body.
func readStatus(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	reason, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return statusError{code: resp.StatusCode, reason: reason}
}
