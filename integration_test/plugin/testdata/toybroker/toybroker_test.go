package toybroker

import (
	"bufio"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/hub/brokertest"
)

// The toy broker keeps the broker contract every hub broker keeps.
func TestContract(t *testing.T) {
	mod, err := caddy.GetModule("pubsub.brokers.toy")
	if err != nil {
		t.Fatal(err)
	}
	brokertest.Run(t, func(t *testing.T, r hub.Retention) hub.Broker {
		b, err := mod.New().(*Toy).OpenBroker("contract", r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

// A Caddyfile names the toy broker like a built-in one, and a hub runs on
// it: what is published is stored by the toy and replayed from it.
func TestHubOnTheToyBroker(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	t.Setenv("XDG_DATA_HOME", dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(`{
	admin off
	persist_config off
}
http://`+addr+` {
	pubsub /events* {
		broker toy plugged-in
	}
}
`), nil)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("adapt: %v %v", err, warnings)
	}
	if !strings.Contains(string(cfg), `"broker":{"kind":"toy","label":"plugged-in"}`) {
		t.Fatalf("adapted JSON has no toy broker: %s", cfg)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })

	base := "http://" + addr + "/events"
	resp, err := http.PostForm(base, url.Values{"topic": {"toys"}, "data": {"hello"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %s", resp.Status)
	}
	if n, ok := Stored.Load("plugged-in"); !ok || n.(*atomic.Int64).Load() != 1 {
		t.Fatalf("the toy broker stored %v messages, want 1", n)
	}

	client := &http.Client{Timeout: 10 * time.Second}
	req, _ := http.NewRequest(http.MethodGet, base+"?topic=toys&last_id=earliest", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		if lines.Text() == "data: hello" {
			return
		}
	}
	t.Fatalf("the replay ended without the message: %v", lines.Err())
}
