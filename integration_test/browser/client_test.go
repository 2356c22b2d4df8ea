package browser_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testbrowser"
	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// clientSite serves the client test page (testdata/client.html) and the
// client, with extra at the top of the site block and endpoint's settings
// in the pubsub block at /events/*.
func clientSite(extra, endpoint string) string {
	return `
http://127.0.0.1:{PORT} {
` + extra + `
	pubsub /events/* {
		history 100 1h
` + endpoint + `
	}
	pubsub_client
	root * integration_test/browser/testdata
	file_server
}
`
}

// startClientPage starts Caddy with site and opens the client test page.
func startClientPage(t *testing.T, browser context.Context, site string) (*testserver.Server, *page) {
	t.Helper()
	t.Chdir(repoRoot)
	srv := testserver.Start(t, site)
	p := openPage(t, browser, srv.Base+"/client.html")
	p.waitFor("the client module loaded", `window.ready === true`)
	return srv, p
}

// eval runs the JavaScript expression in the page, awaiting it if it is a
// promise, and returns its value.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, testserver.Wait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// waitGot waits until connection name has received exactly want.
func (p *page) waitGot(name string, want ...string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("%s received %q", name, want),
		`JSON.stringify(conns[`+js(name)+`].got) === JSON.stringify(`+js(want)+`)`)
}

// waitLog waits until connection name's event log has entry.
func (p *page) waitLog(name, entry string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("%s logged %q", name, entry), `conns[`+js(name)+`].log.includes(`+js(entry)+`)`)
}

// Over each transport, the client's subscription follows subscribe and
// unsubscribe on the live connection (in place on a WebSocket, by
// reconnecting elsewhere), its publishes arrive, and close() ends it.
func TestClientEachTransport(t *testing.T) {
	browser := testbrowser.New(t)
	srv, p := startClientPage(t, browser, clientSite("", ""))
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			p.t = t
			a, b := "a/"+transport, "b/"+transport
			eval[bool](p, `connectAs(`+js(transport)+`, "/events/x", {transports: [`+js(transport)+`], topics: [`+js(a)+`], lastId: "earliest"})`)
			p.waitLog(transport, "open "+transport)
			eval[string](p, `conns[`+js(transport)+`].publish(`+js(a)+`, "one")`)
			p.waitGot(transport, a+" one")

			testserver.Publish(t, srv.Base+"/events/x", url.Values{"topic": {b}, "data": {"before"}})
			eval[bool](p, `conns[`+js(transport)+`].subscribe([`+js(b)+`]).then(() => true)`)
			p.waitGot(transport, a+" one", b+" before") // replayed after the cursor
			eval[bool](p, `conns[`+js(transport)+`].unsubscribe([`+js(a)+`]).then(() => true)`)
			testserver.Publish(t, srv.Base+"/events/x", url.Values{"topic": {a}, "data": {"unsubscribed"}})
			testserver.Publish(t, srv.Base+"/events/x", url.Values{"topic": {b}, "data": {"two"}})
			p.waitGot(transport, a+" one", b+" before", b+" two")
			if got := eval[string](p, `conns[`+js(transport)+`].transport`); got != transport {
				t.Errorf("transport %q after the changes, want %q", got, transport)
			}

			eval[bool](p, `(conns[`+js(transport)+`].close(), true)`)
			p.waitLog(transport, "close")
			if got := eval[string](p, `conns[`+js(transport)+`].state`); got != "closed" {
				t.Errorf("state %q after close(), want closed", got)
			}
		})
	}
	// The subscription changes of the WebSocket went over the socket.
	p.t = t
	if n := eval[int](p, `performance.getEntriesByType("resource").filter((e) => e.name.includes("transport=ws")).length`); n != 0 {
		t.Errorf("%d HTTP requests for the WebSocket connection", n)
	}
}

// Behind a proxy that lets neither WebSocket upgrades nor event streams
// through, the client falls back from WebSocket to Server-Sent Events to
// long-poll, saying so, and delivers.
func TestClientFallsBackToLongPoll(t *testing.T) {
	browser := testbrowser.New(t)
	srv, p := startClientPage(t, browser, clientSite(`
	@websocket header Upgrade websocket
	handle @websocket {
		respond "WebSocket refused by this proxy" 403
	}
	@stream header Accept *text/event-stream*
	handle @stream {
		respond "event streams refused by this proxy" 403
	}
`, ""))
	eval[bool](p, `connectAs("c", "/events/x", {topics: ["fb"], lastId: "earliest"})`)
	p.waitLog("c", "open poll")
	if got := eval[[]string](p, `conns.c.log`); strings.Join(got, "|") != "fallback ws>sse|fallback sse>poll|open poll" {
		t.Fatalf("events %q, want the two fallbacks then open over poll", got)
	}
	testserver.Publish(t, srv.Base+"/events/x", url.Values{"topic": {"fb"}, "data": {"by long-poll"}})
	p.waitGot("c", "fb by long-poll")
}

// token returns an HS256 token of secret that expires at exp and grants
// chat/#.
func token(t *testing.T, secret string, exp time.Time) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":    "browser",
		"exp":    exp.Unix(),
		"pubsub": map[string][]string{"publish": {"chat/#"}, "subscribe": {"chat/#"}},
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const browserSecret = "browser-test-secret-browser-test-secret-0123"

// startExpiringPage starts Caddy with the client test site, extra at the
// top of its site block and /events/* taking tokens of browserSecret
// whose expiry it enforces to the second (leeway 0), and opens the page.
func startExpiringPage(t *testing.T, browser context.Context, extra string) (*testserver.Server, *page) {
	t.Helper()
	t.Setenv("PUBSUB_TEST_SECRET", browserSecret)
	return startClientPage(t, browser, clientSite(extra, `
		jwt {
			secret {env.PUBSUB_TEST_SECRET}
			leeway 0s
		}
`))
}

// The server ends a stream when its token expires; the client asks
// getToken again before it reconnects, and goes on with the fresh token,
// resuming where it was, on each transport (the WebSocket with its
// refresh in place turned off: refreshMargin 0).
func TestClientGetTokenOnReconnect(t *testing.T) {
	srv, p := startExpiringPage(t, testbrowser.New(t), "")
	fresh := token(t, browserSecret, time.Now().Add(time.Hour))
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			p.t = t
			expires := time.Now().Add(2 * time.Second)
			short := token(t, browserSecret, expires)
			topic := "chat/" + transport
			eval[bool](p, `(tokens = [`+js(short)+`, `+js(fresh)+`], tokenCalls = 0, true)`)
			eval[bool](p, `connectAs(`+js(transport)+`, "/events/x", {transports: [`+js(transport)+`], topics: [`+js(topic)+`], lastId: "earliest", getToken, refreshMargin: 0})`)
			p.waitLog(transport, "open "+transport)
			// One call per connection; the long-poll calls it before each
			// request, and may have sent its first GET already.
			if n := eval[int](p, `tokenCalls`); n != 1 && (transport != "poll" || n != 2) {
				t.Fatalf("getToken called %d times by the first open", n)
			}
			// The stream the short token opened ends when it expires; the
			// long-poll asks getToken before each request anyway.
			p.waitFor("the short token expired", `Date.now() > `+fmt.Sprint(expires.UnixMilli()))
			if transport != "poll" {
				p.waitFor("a second open, after getToken", `conns[`+js(transport)+`].log.filter((e) => e === "open `+transport+`").length === 2`)
			}
			p.waitFor("live, with a fresh token", `conns[`+js(transport)+`].state === "live" && tokenCalls >= 2`)
			testserver.Request(t, "POST", srv.Base+"/events/x", "application/x-www-form-urlencoded",
				url.Values{"topic": {topic}, "data": {"after expiry"}}.Encode(), map[string][]string{"Authorization": {"Bearer " + fresh}})
			p.waitGot(transport, topic+" after expiry")
			eval[bool](p, `(conns[`+js(transport)+`].close(), true)`)
		})
	}
}

// A page on one origin subscribes to an endpoint on another whose cors
// names it, with the token in a cookie: with credentials "include" the
// cookie goes along on every transport; without it, SSE and long-poll
// requests carry no cookie and are refused.
func TestClientCookieAcrossOrigins(t *testing.T) {
	browser := testbrowser.New(t)
	t.Setenv("PUBSUB_TEST_SECRET", browserSecret)
	t.Chdir(repoRoot)
	apiPort := testserver.FreePort(t)
	api := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	page := testserver.FreePort(t)
	site := fmt.Sprintf(`
http://127.0.0.1:{PORT} {
	pubsub /events/* {
		history 100 1h
		jwt {
			secret {env.PUBSUB_TEST_SECRET}
			cookie pubsub_token
		}
		cors http://127.0.0.1:%d
	}
}

http://127.0.0.1:%d {
	pubsub_client
	root * integration_test/browser/testdata
	file_server
}
`, page, page)
	testserver.Start(t, strings.Replace(site, "{PORT}", fmt.Sprint(apiPort), 1))
	p := openPage(t, browser, fmt.Sprintf("http://127.0.0.1:%d/client.html", page))
	p.waitFor("the client module loaded", `window.ready === true`)
	cookie := token(t, browserSecret, time.Now().Add(time.Hour))
	httpOnly := true
	p.do(func(ctx context.Context, target *chromedp.Target) (chromedp.Void, error) {
		return chromedp.Void{}, discard(cdp.Call(ctx, target, network.SetCookie,
			network.SetCookieParams{Name: "pubsub_token", Value: cookie, URL: api, HTTPOnly: &httpOnly}))
	})
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			p.t = t
			topic := "chat/cookie-" + transport
			name := "with-" + transport
			eval[bool](p, `connectAs(`+js(name)+`, `+js(api+"/events/x")+`, {transports: [`+js(transport)+`], topics: [`+js(topic)+`], lastId: "earliest", credentials: "include"})`)
			p.waitLog(name, "open "+transport)
			testserver.Request(t, "POST", api+"/events/x", "application/x-www-form-urlencoded",
				url.Values{"topic": {topic}, "data": {"to the cookie"}}.Encode(), map[string][]string{"Authorization": {"Bearer " + cookie}})
			p.waitGot(name, topic+" to the cookie")
			eval[bool](p, `(conns[`+js(name)+`].close(), true)`)

			if transport == "ws" {
				return // a WebSocket handshake carries the cookie whatever the page asks
			}
			name = "without-" + transport
			eval[bool](p, `connectAs(`+js(name)+`, `+js(api+"/events/x")+`, {transports: [`+js(transport)+`], topics: [`+js(topic)+`]})`)
			p.waitFor(name+" refused", `conns[`+js(name)+`].log.some((e) => e.startsWith("error "))`)
			eval[bool](p, `(conns[`+js(name)+`].close(), true)`)
		})
	}
}

// discard keeps the error of a call whose result is empty.
func discard(_ cdp.Empty, err error) error { return err }

// A publish over a WebSocket whose server never answers is rejected after
// its timeout, and the connection stays up. (Caddy always answers: the
// server here is a plain WebSocket server that reads and ignores frames.)
func TestClientWebSocketPublishTimeout(t *testing.T) {
	browser := testbrowser.New(t)
	_, p := startClientPage(t, browser, clientSite("", ""))
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}))
	t.Cleanup(silent.Close)
	eval[bool](p, `connectAs("silent", `+js(silent.URL+"/events")+`, {transports: ["ws"], topics: ["t"]})`)
	p.waitLog("silent", "open ws")
	got := eval[string](p, `conns.silent.publish("t", "hello?", {timeout: 300}).then(() => "resolved", (e) => e.message)`)
	if got != "pubsub: no answer within 300 ms" {
		t.Fatalf("publish: %q, want the timeout", got)
	}
	if state := eval[string](p, `conns.silent.state`); state != "live" {
		t.Fatalf("state %q after the timeout, want live", state)
	}
	eval[bool](p, `(conns.silent.close(), true)`)
}

// Over each transport, binary data reaches the client as a Uint8Array,
// published from the page (a binary frame over a WebSocket, data_base64 in
// a POST) and as application/octet-stream from elsewhere.
func TestClientBinaryMessages(t *testing.T) {
	browser := testbrowser.New(t)
	srv, p := startClientPage(t, browser, clientSite("", ""))
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			p.t = t
			topic := "bin/" + transport
			eval[bool](p, `connectAs(`+js(transport)+`, "/events/x", {transports: [`+js(transport)+`], topics: [`+js(topic)+`], lastId: "earliest"})`)
			p.waitLog(transport, "open "+transport)
			eval[string](p, `conns[`+js(transport)+`].publish(`+js(topic)+`, new Uint8Array([0, 255, 254, 10]))`)
			p.waitGot(transport, topic+" bytes:0,255,254,10")

			status, body, _ := testserver.Request(t, http.MethodPost, srv.Base+"/events/x?topic="+topic, "application/octet-stream", "\x80\x00", nil)
			if status != http.StatusOK {
				t.Fatalf("octet-stream publish: %d %s", status, body)
			}
			p.waitGot(transport, topic+" bytes:0,255,254,10", topic+" bytes:128,0")
			eval[bool](p, `(conns[`+js(transport)+`].close(), true)`)
		})
	}
}

// Chromium offers permessage-deflate on every WebSocket: the server
// accepts it without context takeover, and a compressible message and a
// binary one reach the client whole over the compressed connection.
func TestClientCompressedWebSocket(t *testing.T) {
	browser := testbrowser.New(t)
	srv, p := startClientPage(t, browser, clientSite("", ""))
	ext := eval[string](p, `new Promise((resolve, reject) => {
		const ws = new WebSocket(location.origin.replace("http", "ws") + "/events/x?topic=z");
		ws.onopen = () => { resolve(ws.extensions); ws.close(); };
		ws.onerror = () => reject(new Error("WebSocket failed"));
	})`)
	if ext != "permessage-deflate; server_no_context_takeover; client_no_context_takeover" {
		t.Fatalf("Chromium negotiated %q", ext)
	}
	eval[bool](p, `connectAs("z", "/events/x", {transports: ["ws"], topics: ["z"]})`)
	p.waitLog("z", "open ws")
	data := strings.Repeat(`{"sensor":"kitchen","celsius":21.5},`, 300)
	testserver.Publish(t, srv.Base+"/events/x", url.Values{"topic": {"z"}, "data": {data}})
	status, body, _ := testserver.Request(t, http.MethodPost, srv.Base+"/events/x?topic=z", "application/octet-stream", strings.Repeat("\x01", 5000), nil)
	if status != http.StatusOK {
		t.Fatalf("octet-stream publish: %d %s", status, body)
	}
	p.waitFor("both messages whole", `conns.z.got.length === 2 && conns.z.got[0] === "z " + `+js(data)+` && conns.z.got[1] === "z bytes:" + Array(5000).fill(1).join(",")`)
}
