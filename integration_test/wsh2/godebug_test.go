package wsh2_test

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Caddy started without GODEBUG=http2xconnect=1 offers no extended
// CONNECT, so an HTTP/2 client does not send one (the server would reset
// the stream), while WebSockets over HTTP/1.1 and SSE over HTTP/2 work
// as before; with the setting, the same binary takes it.
func TestOnlyWithGODEBUG(t *testing.T) {
	bin := testserver.BuildCaddy(t)
	cert, key, roots := testserver.SelfSigned(t)
	for _, tc := range []struct {
		name string
		env  []string
	}{
		{"with", nil}, // inherited from this process (TestMain)
		{"without", []string{"GODEBUG="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			child := testserver.StartChildEnv(t, bin, tc.env, "", site(cert, key))
			base := strings.Replace(child.Base, "http://", "https://", 1)
			c := newH2Client(t, roots)
			sse := testserver.Subscribe(t, c.Client, base+"/events?topic=g", nil)
			ws, err := tryH2(t, c, base, "?topic=g", nil)
			switch {
			case tc.env == nil && (err != nil || ws.Resp.StatusCode != http.StatusOK):
				t.Fatalf("extended CONNECT with the setting: %v", err)
			case tc.env != nil && (err == nil || !strings.Contains(err.Error(), "extended connect not supported by peer")):
				t.Fatalf("extended CONNECT without the setting: %v, want it not offered", err)
			}

			d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: roots}, HandshakeTimeout: testserver.Wait}
			h1, resp, err := d.Dial(strings.Replace(base, "https://", "wss://", 1)+"/events?topic=g", nil)
			if err != nil {
				t.Fatalf("WebSocket over HTTP/1.1: %v", err)
			}
			defer h1.Close()
			if resp.ProtoMajor != 1 {
				t.Fatalf("WebSocket over %s", resp.Proto)
			}
			id := c.publish(t, base, "g", "both")
			_ = h1.SetReadDeadline(time.Now().Add(testserver.Wait))
			var m testserver.WSFrame
			if _, data, err := h1.ReadMessage(); err != nil || json.Unmarshal(data, &m) != nil || m.ID != id {
				t.Fatalf("WebSocket over HTTP/1.1 got %q, %v; want %s", data, err, id)
			}
			if e := sse.Next(); e.ID != id {
				t.Fatalf("SSE got %+v, want %s", e, id)
			}
			if tc.env == nil {
				go ws.read()
				if m := ws.nextText("message"); m.ID != id {
					t.Fatalf("WebSocket over HTTP/2 got %s, want %s", m.Raw, id)
				}
			}
		})
	}
}
