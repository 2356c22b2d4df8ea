package browser_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// transports are the names the demo page takes in ?transport=.
var transports = []string{"ws", "sse", "poll"}

// repoRoot is the repository root, found from this file's location (tests
// run in the package directory).
var repoRoot = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}()

// demo is the demo of examples/Caddyfile running on a loopback port.
type demo struct {
	*testserver.Server
	site string // the Caddyfile text it runs, for restarts
}

// startDemo runs examples/Caddyfile, its site address moved to a free
// loopback port and extra inserted at the top of its site block.
func startDemo(t *testing.T, extra string) *demo {
	t.Helper()
	t.Chdir(repoRoot) // the demo's root directives are relative to the repository
	b, err := os.ReadFile(filepath.Join("examples", "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	const address = "http://localhost:8080 {"
	if !strings.Contains(string(b), address) {
		t.Fatalf("examples/Caddyfile has no site %q", address)
	}
	site := strings.Replace(string(b), address, "http://127.0.0.1:{PORT} {\n"+extra, 1)
	return &demo{Server: testserver.Start(t, site), site: site}
}

// say publishes plain text into room as curl does in the README.
func (d *demo) say(t *testing.T, room, text string) {
	t.Helper()
	testserver.Publish(t, d.Base+"/events/"+room, url.Values{"data": {text}})
}

// page is one browser tab showing the demo chat.
type page struct {
	t   *testing.T
	ctx context.Context
}

// openPage opens url in a new tab of browser.
func openPage(t *testing.T, browser context.Context, url string) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // opens the tab for the test's lifetime
		t.Fatal(err)
	}
	p := &page{t: t, ctx: ctx}
	p.do(chromedp.Navigate(url))
	return p
}

// do runs actions within testserver.Wait.
func (p *page) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, testserver.Wait)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatal(err)
	}
}

// send types a chat message into the form, sends it, and waits until the
// page has its ID (the page then clears the text field).
func (p *page) send(name, text string) {
	p.t.Helper()
	p.do(
		chromedp.SetValue(chromedp.ID("name"), name),
		chromedp.SetValue(chromedp.ID("text"), text),
		chromedp.Click(chromedp.CSS("#send button")),
	)
	p.waitFor("message "+text+" published", `document.querySelector("#text").value === ""`)
}

// choose picks a transport in the page's select box, as a user does, and
// waits for the page it navigates to.
func (p *page) choose(transport string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, testserver.Wait)
	defer cancel()
	loaded := chromedp.Events(ctx, cdppage.LoadEventFired)
	p.do(chromedp.Evaluate[chromedp.Void](`(() => {
		const s = document.querySelector("#transport");
		s.value = ` + js(transport) + `;
		s.dispatchEvent(new Event("change"));
	})()`))
	for _, err := range loaded {
		if err != nil {
			p.t.Fatalf("choosing %s: %v", transport, err)
		}
		return
	}
}

func (p *page) reload() {
	p.t.Helper()
	p.do(chromedp.Reload())
}

// linesJS lists the chat log as "who: text" lines (notices have no who).
const linesJS = `[...document.querySelectorAll("#log li")].map((li) => li.querySelector(".who").textContent + ": " + li.lastChild.textContent)`

// statusJS describes the connection state shown on the page.
const statusJS = `(() => { const s = document.querySelector("#status"); return s.dataset.state + "/" + s.dataset.transport + " (" + s.title + ")"; })()`

// waitFor waits until the JavaScript expression cond is true, then returns;
// on timeout it fails with the page's status and chat log.
func (p *page) waitFor(what, cond string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, testserver.Wait+time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](cond,
		chromedp.WithPollingTimeout(testserver.Wait), chromedp.WithPollingInterval(20*time.Millisecond)))
	if err == nil {
		return
	}
	status, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](statusJS))
	lines, _ := chromedp.Run(p.ctx, chromedp.Evaluate[[]string](linesJS))
	p.t.Fatalf("%s: %v\nstatus: %s\nlog: %q", what, err, status, lines)
}

// waitState waits for the page's connection state ("live", "reconnecting").
func (p *page) waitState(state string) {
	p.t.Helper()
	p.waitFor("state "+state, `document.querySelector("#status").dataset.state === `+js(state))
}

// waitLive waits until the page says it is live over transport.
func (p *page) waitLive(transport string) {
	p.t.Helper()
	p.waitFor("live over "+transport,
		`document.querySelector("#status").dataset.state === "live" && document.querySelector("#status").dataset.transport === `+js(transport))
}

// waitLines waits until the chat log is exactly want, in order: nothing
// missing, nothing twice.
func (p *page) waitLines(want ...string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("chat log %q", want), `JSON.stringify(`+linesJS+`) === JSON.stringify(`+js(want)+`)`)
}

// js encodes v as a JavaScript literal.
func js(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// proxy forwards loopback TCP connections to a server until cut, which
// drops every connection and refuses new ones until restore: a network
// outage between the browser and Caddy, while Caddy and its hub live on.
type proxy struct {
	Base   string // http://127.0.0.1:PORT
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, targetPort int) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{
		Base:   "http://" + ln.Addr().String(),
		ln:     ln,
		target: fmt.Sprintf("127.0.0.1:%d", targetPort),
		conns:  map[net.Conn]struct{}{},
	}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.forward(c)
	}
}

// forward copies between c and a new connection to the target until
// either side ends or the proxy is cut.
func (p *proxy) forward(c net.Conn) {
	defer p.wg.Done()
	defer c.Close()
	if !p.track(c) {
		return
	}
	defer p.untrack(c)
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(up, c) //nolint:errcheck // ends when either side closes
		up.Close()
		close(done)
	}()
	io.Copy(c, up) //nolint:errcheck // ends when either side closes
	c.Close()
	<-done
}

// track registers a browser connection, or reports false while the proxy
// is cut; closing it ends both directions.
func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

// cut drops every connection and refuses new ones.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
}

// restore accepts connections again.
func (p *proxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}
