package browser_test

import (
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/chromedp/chromedp"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testbrowser"
)

// Two people chat in the demo page over each transport, someone posts from
// the terminal with curl, and a reloaded page replays the room's history.
func TestChatEachTransport(t *testing.T) {
	browser := testbrowser.New(t)
	srv := startDemo(t, "")
	auto := openPage(t, browser, srv.Base+"/#auto")
	auto.waitLive("ws") // the first choice, when nothing is forced
	auto.choose("sse")
	auto.waitLive("sse")
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			room := "chat-" + transport
			url := srv.Base + "/?transport=" + transport + "#" + room
			alice := openPage(t, browser, url)
			bob := openPage(t, browser, url)
			alice.waitLive(transport)
			bob.waitLive(transport)

			alice.send("alice", "hello from A")
			chat := []string{"alice: hello from A"}
			alice.waitLines(chat...)
			bob.waitLines(chat...)

			bob.send("bob", "hi A, <b>this is not bold</b>")
			chat = append(chat, "bob: hi A, <b>this is not bold</b>")
			alice.waitLines(chat...)
			bob.waitLines(chat...)
			alice.waitFor("message text kept as text", `document.querySelector("#log b") === null`)

			srv.say(t, room, "hello from the terminal")
			chat = append(chat, "terminal: hello from the terminal")
			alice.waitLines(chat...)
			bob.waitLines(chat...)

			bob.reload()
			bob.waitLive(transport)
			bob.waitLines(chat...)
			alice.send("alice", "welcome back")
			chat = append(chat, "alice: welcome back")
			bob.waitLines(chat...)
			alice.waitLines(chat...)

			if transport == "ws" { // the live socket carries publishes too: no fetch at all
				alice.waitFor("no fetch request", `performance.getEntriesByType("resource").every((e) => e.initiatorType !== "fetch")`)
			}
		})
	}
}

// Behind a proxy that refuses WebSocket upgrades, a page that prefers
// WebSocket falls back to Server-Sent Events and chats.
func TestFallbackWhenWebSocketRefused(t *testing.T) {
	browser := testbrowser.New(t)
	srv := startDemo(t, `
	@websocket header Upgrade websocket
	handle @websocket {
		respond "WebSocket refused by this proxy" 403
	}
`)
	url := srv.Base + "/?transport=ws,sse#fallback"
	alice := openPage(t, browser, url)
	bob := openPage(t, browser, url)
	alice.waitLive("sse")
	bob.waitLive("sse")

	alice.send("alice", "still here?")
	bob.waitLines("alice: still here?")
	bob.send("bob", "yes, over SSE")
	chat := []string{"alice: still here?", "bob: yes, over SSE"}
	alice.waitLines(chat...)
	bob.waitLines(chat...)
}

// A network outage between browser and Caddy: the page reconnects and
// resumes after the last message it showed, so what was published during
// the outage shows up once and nothing shows twice.
func TestResumeAfterOutage(t *testing.T) {
	browser := testbrowser.New(t)
	srv := startDemo(t, "")
	link := startProxy(t, srv.Port)
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			room := "outage-" + transport
			p := openPage(t, browser, link.Base+"/?transport="+transport+"#"+room)
			p.waitLive(transport)
			srv.say(t, room, "before")
			p.waitLines("terminal: before")

			link.cut()
			p.waitState("reconnecting")
			srv.say(t, room, "during 1")
			srv.say(t, room, "during 2")
			link.restore()

			p.waitLive(transport)
			p.waitLines("terminal: before", "terminal: during 1", "terminal: during 2")
			srv.say(t, room, "after")
			p.waitLines("terminal: before", "terminal: during 1", "terminal: during 2", "terminal: after")
		})
	}
}

// Caddy restarts, and its in-memory hub loses the history the page would
// resume from: the page says messages were missed, then chats on.
func TestGapAfterRestart(t *testing.T) {
	browser := testbrowser.New(t)
	srv := startDemo(t, "")
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			room := "restart-" + transport
			p := openPage(t, browser, srv.Base+"/?transport="+transport+"#"+room)
			p.waitLive(transport)
			srv.say(t, room, "before")
			p.waitLines("terminal: before")

			if err := caddy.Stop(); err != nil {
				t.Fatal(err)
			}
			p.waitState("reconnecting")
			// Caddy stays down: the page says so, not "reconnecting…".
			p.waitFor("offline shown", `document.querySelector("#status").classList.contains("error") && document.querySelector("#status").textContent.startsWith("offline: retrying in ")`)
			srv.Load(srv.site)
			srv.say(t, room, "after")

			p.waitLive(transport)
			p.waitFor("live shown", `document.querySelector("#status").textContent === "live over " + `+js(map[string]string{"ws": "WebSocket", "sse": "Server-Sent Events", "poll": "long-poll"}[transport]))
			p.waitLines("terminal: before",
				": some messages were missed: they are no longer in the room's history",
				"terminal: after")
		})
	}
}

// The demo as the README shows it: a conversation in the lobby, live over
// WebSocket (docs/images/chat.png; PUBSUB_SCREENSHOTS=1 rewrites it).
func TestChatScreenshot(t *testing.T) {
	browser := testbrowser.New(t)
	srv := startDemo(t, "")
	bob := openPage(t, browser, srv.Base+"/#lobby")
	alice := openPage(t, browser, srv.Base+"/#lobby")
	alice.waitLive("ws")
	bob.waitLive("ws")
	alice.send("alice", "Hi! Is the deploy done?")
	bob.waitLines("alice: Hi! Is the deploy done?")
	srv.say(t, "lobby", "deploy 2026-12-05.3 finished: 3 instances healthy")
	bob.send("bob", "Yes, all green. Reload and see the history replayed.")
	chat := []string{"alice: Hi! Is the deploy done?", "terminal: deploy 2026-12-05.3 finished: 3 instances healthy",
		"bob: Yes, all green. Reload and see the history replayed."}
	alice.waitLines(chat...)
	alice.do(chromedp.SetValue(chromedp.ID("text"), "Great, thanks!"))
	testbrowser.Screenshot(t, alice.ctx, "chat.png", 800, 640)
}
