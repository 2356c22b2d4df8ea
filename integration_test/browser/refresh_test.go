package browser_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testbrowser"
	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// tokenLife is how long the tokens of the refresh tests live: short, so
// the tests see expiries, but long enough that a refresh halfway through
// has seconds to spare.
const tokenLife = 5 * time.Second

// tokenBackend is the application's backend handing out tokens: each GET
// mints one for the same subject that expires tokenLife later.
type tokenBackend struct {
	mu   sync.Mutex
	exps []time.Time // expiry of each token minted, in order
}

// startTokenBackend runs the backend on a loopback port and returns it with
// its address.
func startTokenBackend(t *testing.T) (*tokenBackend, string) {
	t.Helper()
	b := &tokenBackend{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		exp := time.Now().Add(tokenLife)
		tok := token(t, browserSecret, exp)
		b.mu.Lock()
		b.exps = append(b.exps, time.Unix(exp.Unix(), 0)) // exp as the token says it, in whole seconds
		b.mu.Unlock()
		fmt.Fprint(w, tok)
	}))
	t.Cleanup(srv.Close)
	return b, strings.TrimPrefix(srv.URL, "http://")
}

// minted returns the expiries of the tokens minted so far.
func (b *tokenBackend) minted() []time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]time.Time(nil), b.exps...)
}

// wsTraffic records, through the DevTools protocol, the WebSockets a tab
// creates and closes and the text frames it sends and receives.
type wsTraffic struct {
	mu              sync.Mutex
	created, closed int
	sent, received  []string
}

func watchWebSockets(t *testing.T, p *page) *wsTraffic {
	t.Helper()
	w := &wsTraffic{}
	err := chromedp.Listen(p.ctx, func(ev any) {
		w.mu.Lock()
		defer w.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventWebSocketCreated:
			w.created++
		case *network.EventWebSocketClosed:
			w.closed++
		case *network.EventWebSocketFrameSent:
			w.sent = append(w.sent, string(ev.Response.PayloadData))
		case *network.EventWebSocketFrameReceived:
			w.received = append(w.received, string(ev.Response.PayloadData))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// refreshAcked reports whether a refresh frame went out and the server
// acked that frame's ref.
func (w *wsTraffic) refreshAcked() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	acked := map[string]bool{}
	for _, s := range w.received {
		var f struct{ Type, Ref string }
		if json.Unmarshal([]byte(s), &f) == nil && f.Type == "ack" {
			acked[f.Ref] = true
		}
	}
	for _, s := range w.sent {
		var f struct{ Type, Token, Ref string }
		if json.Unmarshal([]byte(s), &f) == nil && f.Type == "refresh" && f.Token != "" && acked[f.Ref] {
			return true
		}
	}
	return false
}

// A WebSocket whose token is about to expire gets a new one from getToken
// and keeps going on the same connection: past the first token's expiry
// (which the server enforces, leeway 0) it is the one socket the page
// opened, its messages still arrive, and the server acked the refresh
// frames. refresh() also takes a token by hand, and the server's refusal
// of a bad one rejects it and leaves the connection as it was.
func TestClientRefreshesTokenInPlace(t *testing.T) {
	backend, addr := startTokenBackend(t)
	srv, p := startExpiringPage(t, testbrowser.New(t), "\treverse_proxy /token "+addr)
	traffic := watchWebSockets(t, p)

	eval[bool](p, `connectAs("r", "/events/x", {transports: ["ws"], topics: ["chat/refresh"], lastId: "earliest",
		getToken: async () => (await fetch("/token")).text()})`)
	p.waitLog("r", "open ws")
	first := backend.minted()[0]
	// The server would have closed the connection at the first token's
	// expiry; a second past it, it is still the same one.
	p.waitFor("a second past the first token's expiry", `Date.now() > `+fmt.Sprint(first.Add(time.Second).UnixMilli()))
	long := token(t, browserSecret, time.Now().Add(time.Hour))
	testserver.Request(t, http.MethodPost, srv.Base+"/events/x", "application/x-www-form-urlencoded",
		url.Values{"topic": {"chat/refresh"}, "data": {"after the first token"}}.Encode(), map[string][]string{"Authorization": {"Bearer " + long}})
	p.waitGot("r", "chat/refresh after the first token")

	log := strings.Join(eval[[]string](p, `conns.r.log`), "|")
	if strings.Count(log, "open ws") != 1 || strings.Contains(log, "down ") || !strings.Contains(log, "refresh") || strings.Contains(log, "refresh failed") {
		t.Errorf("want one open and refreshes, none failed: %q", log)
	}
	if !traffic.refreshAcked() {
		t.Errorf("no refresh frame acked by the server; sent %q", traffic.sent)
	}
	traffic.mu.Lock()
	created, closed := traffic.created, traffic.closed
	traffic.mu.Unlock()
	if created != 1 || closed != 0 {
		t.Errorf("%d WebSockets created and %d closed, want the one, open", created, closed)
	}

	got := eval[string](p, `conns.r.refresh("not.a.token").then(() => "resolved", (e) => e.message)`)
	if !strings.HasPrefix(got, "pubsub: refresh: invalid token") {
		t.Errorf("refresh with a bad token: %q", got)
	}
	if got := eval[string](p, `conns.r.refresh(`+js(long)+`).then(() => "resolved", (e) => e.message)`); got != "resolved" {
		t.Errorf("refresh with a good token: %q", got)
	}
	if state := eval[string](p, `conns.r.state + " " + conns.r.log.filter((e) => e === "open ws").length`); state != "live 1" {
		t.Errorf("after the refresh calls: %s", state)
	}
	eval[bool](p, `(conns.r.close(), true)`)
}

// A getToken that keeps handing out the expiring token is asked again a
// few times, each closer to the expiry, and never in a tight loop; then
// the server ends the connection at the expiry, and the client reconnects
// with the token getToken gives then. That one expires in 87 days, further
// than a browser timer reaches (2^31-1 ms, about 24.8 days; a longer delay
// wraps around, 87 days to a negative one, which fires at once): it is not
// asked for again at once either.
func TestClientRefreshBacksOff(t *testing.T) {
	srv, p := startExpiringPage(t, testbrowser.New(t), "")
	short := token(t, browserSecret, time.Now().Add(tokenLife))
	fresh := token(t, browserSecret, time.Now().Add(87*24*time.Hour))
	// When the connection drops, getToken starts handing out the fresh
	// token: set by the page itself, so the reconnect cannot outrun it.
	eval[bool](p, `(tokens = [`+js(short)+`], tokenCalls = 0, true)`)
	eval[bool](p, `connectAs("b", "/events/x", {transports: ["ws"], topics: ["chat/backoff"], lastId: "earliest", getToken})`)
	eval[bool](p, `(conns.b.on("state", (s) => { if (s.detail) { callsAtDown = tokenCalls; tokens = [`+js(fresh)+`]; } }), true)`)
	p.waitLog("b", "open ws")
	p.waitFor("the connection dropped at the expiry", `conns.b.log.some((e) => e.startsWith("down "))`)
	p.waitFor("open again", `conns.b.log.filter((e) => e === "open ws").length === 2`)

	log := eval[[]string](p, `conns.b.log`)
	failed := 0
	for _, e := range log {
		if strings.HasPrefix(e, "down ") {
			break
		}
		if e == "refresh failed: getToken gave no new token" {
			failed++
		}
	}
	calls := eval[int](p, `callsAtDown`)
	// One call to open, then one per failed attempt: at half the token's
	// life left, then at each halving until less than a second would be.
	if failed < 1 || failed > 3 || calls != 1+failed {
		t.Errorf("%d failed refreshes, getToken called %d times before the drop; log %q", failed, calls, log)
	}
	for _, e := range log {
		if strings.HasPrefix(e, "down ") && !strings.Contains(e, "1008") {
			t.Errorf("the connection dropped with %q, want the server's expiry (1008)", e)
		}
	}
	testserver.Request(t, http.MethodPost, srv.Base+"/events/x", "application/x-www-form-urlencoded",
		url.Values{"topic": {"chat/backoff"}, "data": {"after the reconnect"}}.Encode(), map[string][]string{"Authorization": {"Bearer " + fresh}})
	p.waitGot("b", "chat/backoff after the reconnect")
	if n := eval[int](p, `tokenCalls - callsAtDown`); n != 1 {
		t.Errorf("getToken called %d times since the reconnect, want once", n)
	}
	if got := eval[[]string](p, `conns.b.log`); len(got) != len(log) {
		t.Errorf("more events after the reconnect: %q", got[len(log):])
	}
	eval[bool](p, `(conns.b.close(), true)`)
}
