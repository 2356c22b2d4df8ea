package browser_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/security"
	"github.com/chromedp/chromedp"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testbrowser"
	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Chromium, on an HTTPS page whose server offers extended CONNECT, opens
// its WebSocket as a stream of the page's HTTP/2 connection (RFC 8441):
// the page, its fetch, its SSE stream and the WebSocket, which gets what
// the fetch publishes, come over one connection, as Caddy's access log
// shows. A WebSocket over HTTP/1.1 would have needed a connection of its
// own. (Chromium may open spare connections that carry no request.)
func TestWebSocketSharesThePageConnection(t *testing.T) {
	t.Chdir(repoRoot)
	cert, key, _ := testserver.SelfSigned(t)
	accessLog := filepath.Join(t.TempDir(), "access.log")
	srv := testserver.Start(t, fmt.Sprintf(`
https://127.0.0.1:{PORT} {
	tls %s %s
	log {
		output file %s
	}
	pubsub /events/* {
		publish_key k
	}
	root * integration_test/browser/testdata
	file_server
}
`, cert, key, accessLog))

	p := openPage(t, testbrowser.New(t), "about:blank")
	// The certificate is the test's own, trusted by no root of Chromium's.
	p.do(func(ctx context.Context, target *chromedp.Target) (chromedp.Void, error) {
		return chromedp.Void{}, discard(cdp.Call(ctx, target, security.SetIgnoreCertificateErrors,
			security.SetIgnoreCertificateErrorsParams{Ignore: true}))
	})
	p.do(chromedp.Navigate(fmt.Sprintf("https://127.0.0.1:%d/client.html", srv.Port)))
	got := eval[string](p, `new Promise((resolve, reject) => {
		const sse = new EventSource("/events/?topic=room");
		const ws = new WebSocket(location.origin.replace("https:", "wss:") + "/events/?topic=room");
		ws.onerror = () => reject(new Error("WebSocket failed"));
		ws.onmessage = (e) => { sse.close(); ws.close(); resolve(JSON.parse(e.data).data); };
		ws.onopen = () => fetch("/events/", {
			method: "POST",
			headers: {"Authorization": "Bearer k", "Content-Type": "application/x-www-form-urlencoded"},
			body: "topic=room&data=over+one+connection",
		});
	})`)
	if got != "over one connection" {
		t.Fatalf("the WebSocket got %q", got)
	}

	// The WebSocket's entry is logged when it ends.
	var requests []string
	ports := map[string]bool{}
	testserver.Eventually(t, "the WebSocket's access log entry", func() bool {
		requests, ports = loggedRequests(t, accessLog)
		return ports["CONNECT"]
	})
	delete(ports, "CONNECT")
	t.Logf("requests: %q", requests)
	if len(ports) != 1 {
		t.Fatalf("requests over %d connections, want 1:\n%q", len(ports), requests)
	}
}

// loggedRequests reads Caddy's access log: each request as "METHOD PROTO
// URI from PORT", and the client ports they came from, with "CONNECT" set
// once an extended CONNECT over HTTP/2 is among them.
func loggedRequests(t *testing.T, path string) ([]string, map[string]bool) {
	f, err := os.Open(path)
	if err != nil {
		return nil, map[string]bool{}
	}
	defer f.Close()
	var requests []string
	ports := map[string]bool{}
	for sc := bufio.NewScanner(f); sc.Scan(); {
		var entry struct {
			Request struct {
				Method     string `json:"method"`
				Proto      string `json:"proto"`
				URI        string `json:"uri"`
				RemotePort string `json:"remote_port"`
			} `json:"request"`
		}
		if err := json.Unmarshal(sc.Bytes(), &entry); err != nil {
			t.Fatalf("access log line %q: %v", sc.Text(), err)
		}
		r := entry.Request
		requests = append(requests, fmt.Sprintf("%s %s %s from %s", r.Method, r.Proto, r.URI, r.RemotePort))
		ports[r.RemotePort] = true
		if r.Method == "CONNECT" && r.Proto == "HTTP/2.0" {
			ports["CONNECT"] = true
		}
	}
	return requests, ports
}
