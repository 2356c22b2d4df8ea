package config_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// A hub defined in the global pubsub option is shared by the sites that
// name it, with the global history; a hub not defined globally is still
// defined in its handler.
func TestGlobalHubSharedBySites(t *testing.T) {
	port2 := testserver.FreePort(t)
	s := testserver.StartWith(t, chatHub, fmt.Sprintf(`
http://127.0.0.1:{PORT} {
	pubsub /chat* {
		hub chat
		heartbeat 5s
	}
	pubsub /local* {
		hub local
		history 1
		poll_timeout 1s
	}
}
http://127.0.0.1:%d {
	pubsub /feed* {
		hub chat
		publish_key feed-key
	}
}
`, port2))
	second := fmt.Sprintf("http://127.0.0.1:%d", port2)
	sub := testserver.Subscribe(t, nil, second+"/feed?topic=room", nil)
	var ids []string
	for i := range 3 {
		id := testserver.Publish(t, s.Base+"/chat", url.Values{"topic": {"room"}, "data": {fmt.Sprint(i)}})
		if ev := sub.Next(); ev.ID != id {
			t.Fatalf("subscriber on the other site got %+v, want %s", ev, id)
		}
		ids = append(ids, id)
	}
	// history 2 from the global block: the earliest resume finds the last two.
	got := testserver.Poll(t, second+"/feed", "earliest", "room")
	if len(got.Messages) != 2 || got.Messages[0].ID != ids[1] || got.Messages[1].ID != ids[2] {
		t.Fatalf("resume on the global hub: got %+v, want %v", got, ids[1:])
	}

	for i := range 2 {
		testserver.Publish(t, s.Base+"/local", url.Values{"topic": {"x"}, "data": {fmt.Sprint(i)}})
	}
	if got := testserver.Poll(t, s.Base+"/local", "earliest", "x"); len(got.Messages) != 1 || got.Messages[0].Data != "1" {
		t.Fatalf("hub defined in its handler (history 1): got %+v", got)
	}
	if got := testserver.Poll(t, s.Base+"/local", "earliest", "room"); len(got.Messages) != 0 {
		t.Fatalf("the handler's own hub holds the global hub's messages: %+v", got)
	}
}

// Hub settings in a handler of a global hub, wherever in the block, and
// mistakes in the global option fail adapt with the file and line.
func TestGlobalHubErrorsNameFileAndLine(t *testing.T) {
	handlerCases := []struct {
		name, globals, site, at, want string
		globalLine                    int // the line in globals, when at is ""
	}{
		{"history after hub", chatHub, `
http://127.0.0.1:1 {
	pubsub {
		hub chat
		history 10
	}
}
`, "history 10", `hub "chat" is defined in the global pubsub option (the pubsub app), so its history belongs there`, 0},
		{"queue before hub", chatHub, `
http://127.0.0.1:1 {
	pubsub {
		heartbeat 5s
		queue 5
		hub chat
	}
}
`, "queue 5", `its queue belongs there`, 0},
		{"presence on the default hub", "\tpubsub {\n\t\thub default\n\t}", `
http://127.0.0.1:1 {
	pubsub {
		presence
	}
}
`, "presence", `hub "default" is defined in the global pubsub option`, 0},
		{"hub limits", chatHub, `
http://127.0.0.1:1 {
	pubsub {
		hub chat
		limits {
			topics 4
			subscribers 10
		}
	}
}
`, "subscribers 10", "its limits subscribers belongs there", 0},
		{"broker", chatHub, `
http://127.0.0.1:1 {
	pubsub {
		hub chat
		broker memory
	}
}
`, "broker memory", "its broker belongs there", 0},
		{"unknown hub setting", "\tpubsub {\n\t\thub chat {\n\t\t\theartbeat 5s\n\t\t}\n\t}", `
http://127.0.0.1:1 {
	pubsub {
		hub chat
	}
}
`, "", `unknown setting "heartbeat" of hub "chat"`, 3},
		{"endpoint limit in a hub", "\tpubsub {\n\t\thub chat {\n\t\t\tlimits {\n\t\t\t\ttopics 3\n\t\t\t}\n\t\t}\n\t}", `
http://127.0.0.1:1 {
	pubsub {
		hub chat
	}
}
`, "", "a hub takes only subscribers, per_ip, publish_wait, publish_rate and publish_burst", 3},
		{"bad history in a hub", "\tpubsub {\n\t\thub chat {\n\t\t\thistory 0 1h\n\t\t}\n\t}", `
http://127.0.0.1:1 {
	pubsub {
		hub chat
	}
}
`, "", "history: history 0 1h0m0s: a count of 0 keeps no messages", 3},
		{"hub defined twice", "\tpubsub {\n\t\thub chat\n\t\thub chat\n\t}", `
http://127.0.0.1:1 {
	pubsub
}
`, "", `hub "chat" is defined twice in the global pubsub option`, 3},
		{"unknown global sub-directive", "\tpubsub {\n\t\thistory 10\n\t}", `
http://127.0.0.1:1 {
	pubsub
}
`, "", `unknown pubsub global sub-directive "history"`, 2},
		{"two pubsub options", "\tpubsub {\n\t\thub a\n\t}\n\tpubsub {\n\t\thub b\n\t}", `
http://127.0.0.1:1 {
	pubsub
}
`, "", "the global pubsub option is given twice", 4},
	}
	for _, c := range handlerCases {
		t.Run(c.name, func(t *testing.T) {
			_, err := testserver.AdaptWith(c.globals, c.site)
			if err == nil {
				t.Fatal("adapted without error")
			}
			var at string
			if c.at != "" {
				at = fmt.Sprintf("Caddyfile:%d", lineIn(t, c.globals, c.site, c.at))
			} else {
				// The globals replace the closing line of GlobalOptions.
				at = fmt.Sprintf("Caddyfile:%d", strings.Count(testserver.GlobalOptions, "\n")-1+c.globalLine)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.HasSuffix(err.Error(), ", at "+at) {
				t.Errorf("got %q, want %q at %s", err, c.want, at)
			}
		})
	}

	// Endpoint settings, endpoint limits and another hub's settings are
	// fine in the handlers of a global hub's config.
	_, err := testserver.AdaptWith(chatHub, `
http://127.0.0.1:1 {
	pubsub /a* {
		hub chat
		heartbeat 5s
		max_message_size 1KiB
		poll_timeout 5s
		limits {
			topics 4
			batch 2
		}
	}
	pubsub /b* {
		hub other
		history 10
		presence
	}
}
`)
	if err != nil {
		t.Fatal(err)
	}
}

// The JSON form: apps.pubsub.hubs defines the hub; a JSON handler that
// sets a hub setting of it is refused, naming the hub and the setting.
func TestGlobalHubJSON(t *testing.T) {
	port := testserver.FreePort(t)
	raw, err := testserver.Adapt(fmt.Sprintf(`
http://127.0.0.1:%d {
	pubsub {
		hub chat
	}
}
`, port))
	if err != nil {
		t.Fatal(err)
	}
	withApp := func(t *testing.T, handlerExtra map[string]any) []byte {
		var cfg map[string]any
		if err := json.Unmarshal(raw, &cfg); err != nil {
			t.Fatal(err)
		}
		cfg["apps"].(map[string]any)["pubsub"] = map[string]any{
			"hubs": map[string]any{"chat": map[string]any{"history": map[string]any{"count": 1}}},
		}
		if handlerExtra != nil {
			srv := cfg["apps"].(map[string]any)["http"].(map[string]any)["servers"].(map[string]any)["srv0"].(map[string]any)
			handler := findHandler(t, srv["routes"])
			for k, v := range handlerExtra {
				handler[k] = v
			}
		}
		out, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	err = testserver.Validate(t, withApp(t, map[string]any{"queue": 8}))
	if err == nil || !strings.Contains(err.Error(), `hub "chat" is defined in the global pubsub option (the pubsub app), so its queue belongs there`) {
		t.Fatalf("JSON handler with a hub setting of a global hub: got %v", err)
	}

	if err := caddy.Load(withApp(t, nil), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
	})
	ep := fmt.Sprintf("http://127.0.0.1:%d/", port)
	testserver.Publish(t, ep, url.Values{"topic": {"j"}, "data": {"first"}})
	testserver.Publish(t, ep, url.Values{"topic": {"j"}, "data": {"second"}})
	if got := testserver.Poll(t, ep, "earliest", "j"); len(got.Messages) != 1 || got.Messages[0].Data != "second" {
		t.Fatalf("history 1 from apps.pubsub.hubs: got %+v", got)
	}
}

// A reload that changes a global hub's history applies it, and keeps the
// hub's subscribers and history.
func TestReloadChangesGlobalHub(t *testing.T) {
	site := `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		hub chat
	}
}
`
	s := testserver.StartWith(t, chatHub, site)
	ep := s.Base + "/events"
	sub := testserver.Subscribe(t, nil, ep+"?topic=k", nil)
	before := testserver.Publish(t, ep, url.Values{"topic": {"k"}, "data": {"before"}})
	if ev := sub.Next(); ev.ID != before {
		t.Fatalf("before reload got %+v", ev)
	}

	s.LoadWith(strings.Replace(chatHub, "history 2", "history 3", 1), site)
	// History from before the reload still resumes.
	code, body, _ := testserver.Request(t, "GET", ep+"?topic=k&last_id=earliest", "", "", nil)
	if code != http.StatusOK || !strings.Contains(body, before) {
		t.Fatalf("history across the reload: %d %s", code, body)
	}
	var ids []string
	for i := range 3 {
		id := testserver.Publish(t, ep, url.Values{"topic": {"k"}, "data": {fmt.Sprint(i)}})
		if ev := sub.Next(); ev.ID != id {
			t.Fatalf("subscriber from before the reload got %+v, want %s", ev, id)
		}
		ids = append(ids, id)
	}
	got := testserver.Poll(t, ep, "earliest", "k")
	if len(got.Messages) != 3 || got.Messages[0].ID != ids[0] || got.Messages[2].ID != ids[2] {
		t.Fatalf("history 3 after the reload: got %+v, want %v", got, ids)
	}
}

// Presence set on a global hub announces subscriptions on every endpoint
// of the hub, to watchers its endpoints authorise.
func TestPresenceOnGlobalHub(t *testing.T) {
	s := testserver.StartWith(t, "\tpubsub {\n\t\thub room {\n\t\t\tpresence\n\t\t}\n\t}", `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		hub room
		publish_key presence-key
	}
}
`)
	ep := s.Base + "/events"
	key := http.Header{"Authorization": {"Bearer presence-key"}}
	watcher := testserver.Subscribe(t, nil, ep+"?topic=$pubsub/subscribe&format=json", key)
	sub := testserver.Subscribe(t, nil, ep+"?topic=news", nil)
	defer sub.Close()
	ev := watcher.Next()
	var env testserver.Envelope
	if err := json.Unmarshal([]byte(ev.Data), &env); err != nil {
		t.Fatal(err)
	}
	if env.Topic != "$pubsub/subscribe" || !strings.Contains(env.Data, `"news"`) {
		t.Fatalf("presence event: got %+v", env)
	}
}

// A JSON broker is a module named by "kind"; a kind no module has, or
// settings its module refuses, fail the load with the hub's name.
func TestBrokerModuleJSON(t *testing.T) {
	raw, err := testserver.Adapt(fmt.Sprintf(`
http://127.0.0.1:%d {
	pubsub {
		hub chat
	}
}
`, testserver.FreePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ broker, want string }{
		{`{"kind":"kafka"}`, `hub "chat": broker: loading module 'kafka'`},
		{`{"kind":"redis","url":"redis://127.0.0.1:1","tls":{"cert":"/c.pem"}}`, "tls_cert takes a certificate and its key"},
		{`{"kind":"bolt","path":"/x","stream":"s"}`, `unknown field "stream"`},
	} {
		var cfg map[string]any
		if err := json.Unmarshal(raw, &cfg); err != nil {
			t.Fatal(err)
		}
		cfg["apps"].(map[string]any)["pubsub"] = map[string]any{
			"hubs": map[string]any{"chat": map[string]any{"broker": json.RawMessage(tc.broker)}},
		}
		out, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := testserver.Validate(t, out); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("broker %s: got %v, want an error with %q", tc.broker, err, tc.want)
		}
	}
}
