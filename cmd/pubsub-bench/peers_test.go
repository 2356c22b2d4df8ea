package main

import (
	"bytes"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Subscriber i listens to topic i mod K; the publishers go round the
// topics, each from its own start, so K topics get equal shares.
func TestTopicAssignment(t *testing.T) {
	if got := topicName("bench/x", 0, 1); got != "bench/x" {
		t.Errorf("one topic: %q; want the base itself", got)
	}
	if got := topicName("bench/x", 7, 10); got != "bench/x/7" {
		t.Errorf("topic 7 of 10: %q", got)
	}
	for _, tc := range []struct{ n, k int }{{10, 1}, {10, 3}, {10_000, 1000}, {5, 8}} {
		counts := make([]int64, tc.k)
		for i := range tc.n {
			counts[subscriberTopic(i, tc.k)]++
		}
		var sum int64
		for k := range tc.k {
			if got := subscribersOn(k, tc.k, tc.n); got != counts[k] {
				t.Errorf("n=%d k=%d: subscribersOn(%d) = %d; %d subscribers listen to it", tc.n, tc.k, k, got, counts[k])
			}
			sum += counts[k]
		}
		if sum != int64(tc.n) {
			t.Errorf("n=%d k=%d: %d subscribers on topics", tc.n, tc.k, sum)
		}
	}
	// Three publishers, 30 messages each, to 9 topics: each publisher
	// gives every topic 3 or 4, numbered 1, 2, 3, ... per topic, starting
	// at its own topic.
	for pub := range 3 {
		st := newPubState(pub, 9)
		seen := make([]int64, 9)
		for i := range 30 {
			k, seq := st.take()
			if i == 0 && k != pub {
				t.Errorf("publisher %d starts at topic %d", pub, k)
			}
			if seq != seen[k]+1 {
				t.Fatalf("publisher %d, topic %d: number %d after %d", pub, k, seq, seen[k])
			}
			seen[k] = seq
		}
		if lo, hi := slices.Min(seen), slices.Max(seen); lo != 3 || hi != 4 {
			t.Errorf("publisher %d gave the topics %v messages; want 3 or 4 each", pub, seen)
		}
	}
	p := &publisher{topics: 3, subscribers: 7, topicAcked: make([]atomic.Int64, 3)}
	p.topicAcked[0].Add(2) // 3 subscribers
	p.topicAcked[2].Add(1) // 2 subscribers
	p.acked.Add(3)
	if got := p.expected(7); got != 8 {
		t.Errorf("expected deliveries %d; want 2×3 + 1×2 = 8", got)
	}
}

func TestSubscribeURI(t *testing.T) {
	q := url.Values{"a": {"b"}}
	for _, tc := range []struct{ peer, path, want string }{
		{peerPubsub, "/events", "/events?a=b&format=json&last_id=L&topic=bench%2Fx%2F3"},
		{peerNchan, "/", "/sub/bench.x.3"},
		{peerMercure, "/.well-known/mercure", "/.well-known/mercure?a=b&topic=bench%2Fx%2F3"},
	} {
		if got := subscribeURI(tc.peer, tc.path, q, "bench/x/3", "L", map[string]string{"format": "json"}); got != tc.want {
			t.Errorf("%s: %q; want %q", tc.peer, got, tc.want)
		}
	}
}

// The JWTs the tool signs for Mercure verify with the key and grant what
// Mercure looks for; a short key is refused.
func TestMercureTokens(t *testing.T) {
	key := strings.Repeat("k", 32)
	pub, sub, err := mercureTokens(key, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ token, claim string }{{pub, "publish"}, {sub, "subscribe"}} {
		var claims struct {
			jwt.RegisteredClaims
			Mercure map[string][]string `json:"mercure"`
		}
		if _, err := jwt.ParseWithClaims(tc.token, &claims, func(*jwt.Token) (any, error) { return []byte(key), nil },
			jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired()); err != nil {
			t.Fatalf("%s token: %v", tc.claim, err)
		}
		if !slices.Equal(claims.Mercure[tc.claim], []string{"*"}) || len(claims.Mercure) != 1 {
			t.Errorf("%s token's mercure claim %v; want {%s: [*]}", tc.claim, claims.Mercure, tc.claim)
		}
		if _, err := jwt.Parse(tc.token, func(*jwt.Token) (any, error) { return []byte(strings.Repeat("x", 32)), nil }); !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
			t.Errorf("%s token with another key: %v; want an invalid signature", tc.claim, err)
		}
	}
	if _, _, err := mercureTokens("short", time.Hour); err == nil {
		t.Error("a 5-byte HS256 key was accepted")
	}
}

// Each template renders, with and without TLS; nginx itself checks its
// configuration (nginx -t) and Caddy adapts this project's.
func TestServerTemplates(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if _, err := writeSelfSigned(cert, key); err != nil {
		t.Fatal(err)
	}
	for _, tls := range []bool{false, true} {
		c := serverConfig{Dir: dir, Port: 4321, TLS: tls, Cert: cert, Key: key, Redis: "127.0.0.1:6390", Module: nchanModule, Files: 2000, Connections: 4000}
		for name, want := range map[string][]string{
			"nginx.conf":        {"listen 127.0.0.1:4321", "nchan_subscriber eventsource websocket;", "nchan_publisher;", "worker_processes 1;"},
			"mercure.Caddyfile": {"://127.0.0.1:4321 {", "publisher_jwt {env.PUBSUB_BENCH_MERCURE_KEY} HS256", "size 1000"},
			"pubsub.Caddyfile":  {"://127.0.0.1:4321 {", "broker redis redis://127.0.0.1:6390"},
		} {
			b, err := renderTemplate(name, c)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			text := string(b)
			if tls {
				want = append(want, cert, key)
			}
			for _, w := range want {
				if !strings.Contains(text, w) {
					t.Errorf("%s (TLS %v) lacks %q:\n%s", name, tls, w, text)
				}
			}
			switch name {
			case "pubsub.Caddyfile":
				// The site block alone, as the test server adapts it.
				if _, err := testserver.Adapt(text[strings.Index(text, "\nhttp"):]); err != nil {
					t.Errorf("%s (TLS %v) does not adapt: %v", name, tls, err)
				}
			case "nginx.conf":
				checkNginxConf(t, dir, b)
			}
		}
	}
}

// checkNginxConf runs nginx -t on conf.
func checkNginxConf(t *testing.T, dir string, conf []byte) {
	t.Helper()
	nginx := testserver.NeedBinary(t, "nginx", "/usr/sbin/nginx")
	file := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(file, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(nginx, "-t", "-p", dir+"/", "-c", file, "-e", filepath.Join(dir, "error.log")).CombinedOutput()
	if err != nil {
		t.Errorf("nginx -t: %v\n%s\n%s", err, out, conf)
	}
}

func TestSideBySide(t *testing.T) {
	rs := []Report{
		{Label: "idle 10k", Peer: peerNchan, Mode: modeIdle, Server: &ServerReport{BytesPerSubscriber: 10240}},
		{Label: "idle 10k", Mode: modeIdle, Server: &ServerReport{BytesPerSubscriber: 38093}},
		{Label: "fanout 10k", Peer: peerMercure, Mode: modeFanout, Latency: Percentiles{P99MS: 307}, Server: &ServerReport{CPUSecondsPerMillionDeliveries: 35.5}},
		{Label: "10k × 30/s", Peer: peerPubsub, Mode: modeSustained, PublishPerSec: 29.9, DeliveriesPerSec: 195_000, Latency: Percentiles{P99MS: 10500}, Lost: 3, Disconnected: 2, Server: &ServerReport{CPUSecondsPerMillionDeliveries: 14.6}},
	}
	want := `| scenario | pubsub | mercure | nchan |
| --- | ---: | ---: | ---: |
| idle 10k | 37.2 KiB | — | 10.0 KiB |
| fanout 10k | — | p99 307ms / 35.5 | — |
| 10k × 30/s | 30 msg/s → 195k/s, p99 10500ms / 14.6 (2 dropped, lost 3) | — | — |
`
	if got := sideBySide(rs); got != want {
		t.Errorf("side by side:\n%s\nwant:\n%s", got, want)
	}
}

func TestParseCommandStats(t *testing.T) {
	got := parseCommandStats("# Commandstats\r\ncmdstat_xadd:calls=12,usec=40,usec_per_call=3.33,rejected_calls=0,failed_calls=0\r\ncmdstat_evalsha:calls=5,usec=9\r\nbogus\r\n")
	if len(got) != 2 || got["xadd"] != 12 || got["evalsha"] != 5 {
		t.Errorf("parsed %v; want xadd 12, evalsha 5", got)
	}
	r := &RedisReport{IdleCPUCores: 0.25}
	at := time.Now()
	r.measure(procSample{at: at}, procSample{at: at.Add(2 * time.Second), cpu: time.Second}, map[string]int64{"xadd": 2}, map[string]int64{"xadd": 12, "info": 9, "get": 20}, 10)
	if r.CPUSecondsPerMillionMessages != 1e5 || r.BusyCPUSecondsPerMillionMessages != 5e4 || r.CallsPerMessage != 3 || r.Commands["xadd"] != 1 || r.Commands["get"] != 2 || r.Commands["info"] != 0 {
		t.Errorf("measured %+v; want 1e5 CPU-s per 1M (5e4 less 0.5 s idle), 3 calls per message: xadd 1, get 2, no info", r)
	}
}

// A server's children are metered with it, as nginx's worker with its
// master.
func TestWithDescendants(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 60 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	testserver.Eventually(t, "the shell's child", func() bool { return len(withDescendants(cmd.Process.Pid)) == 2 })
	pids := withDescendants(cmd.Process.Pid)
	if pids[0] != cmd.Process.Pid {
		t.Errorf("pids %v: want the shell %d first", pids, cmd.Process.Pid)
	}
}

func TestScaleOutTable(t *testing.T) {
	rs := []Report{
		{Instances: 1, Connected: 1000, PublishPerSec: 5, DeliveriesPerSec: 5000, Latency: Percentiles{P99MS: 12.5}, Server: &ServerReport{CPUSecondsPerMillionDeliveries: 20}},
		{Instances: 2, Connected: 2000, Disconnected: 1, PublishPerSec: 5, DeliveriesPerSec: 10_000, Latency: Percentiles{P99MS: 15}, Lost: 4, Server: &ServerReport{CPUSecondsPerMillionDeliveries: 21},
			Redis: &RedisReport{CPUSecondsPerMillionMessages: 500, BusyCPUSecondsPerMillionMessages: 400, CallsPerMessage: 3, Commands: map[string]float64{"xread": 2, "evalsha": 1}}},
	}
	want := `| instances | subscribers | msg/s | deliveries/s | p99 | server CPU-s / 1M deliveries (all instances) | redis CPU-s / 1M messages (less idle) | redis commands / message | lost |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |
| 1 | 1000 | 5.0 | 5000 | 12.50ms | 20.00 | — | — | 0 |
| 2 | 1999 | 5.0 | 10k | 15.00ms | 21.00 | 500.0 (400.0) | 3.0 (xread 2.00, evalsha 1.00) | 4 |
`
	if got := scaleOutTable(rs); got != want {
		t.Errorf("scale-out table:\n%s\nwant:\n%s", got, want)
	}
}

// Flags that do not fit together are refused before anything starts.
func TestPeerFlagsRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-peer", "zeromq"}, "want pubsub, nchan or mercure"},
		{[]string{"-peer", "mercure", "-transport", "ws"}, "-peer mercure offers sse"},
		{[]string{"-peer", "nchan", "-transport", "poll"}, "-peer nchan offers sse, ws"},
		{[]string{"-peer", "nchan", "-mode", "publish"}, "-peer pubsub only"},
		{[]string{"-peer", "nchan", "-batch", "5"}, "-peer pubsub only"},
		{[]string{"-peer", "mercure", "-publish", "ws"}, "-peer pubsub only"},
		{[]string{"-publish", "grpc"}, "want json, form or ws"},
		{[]string{"-publish", "form", "-batch", "5"}, "-batch needs json or ws"},
		{[]string{"-topics", "0"}, "-topics: 1 to"},
		{[]string{"-instances", "2"}, "-instances: with -start"},
		{[]string{"-start", "-peer", "nchan", "-instances", "2"}, "-instances: with -start and -peer pubsub"},
		{[]string{"-redis"}, "-redis: with -start"},
		{[]string{"-tls"}, "-tls and -server-bin: with -start"},
		{[]string{"-own-conn"}, "-own-conn: with -http2"},
	} {
		var stdout, stderr bytes.Buffer
		if code := cli(tc.args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}

func TestSizingTable(t *testing.T) {
	rs := []Report{
		{Mode: modeIdle, Transport: "sse", Server: &ServerReport{IdleSubscribers: 10000, BytesPerSubscriber: 4300}},
		{Peer: peerNchan, Mode: modeIdle, Transport: "sse", Server: &ServerReport{IdleSubscribers: 10000, BytesPerSubscriber: 10240}},
		{Peer: peerPubsub, Mode: modeIdle, Transport: "sse", TLS: true, HTTP2: true, OwnConn: true, Server: &ServerReport{IdleSubscribers: 5000, BytesPerSubscriber: 77 << 10}},
		{Peer: peerPubsub, Mode: modeIdle, Transport: "ws", TLS: true, Server: &ServerReport{IdleSubscribers: 5000, BytesPerSubscriber: 20 << 10}},
		{Label: "one message to 10000", Mode: modeFanout, DeliveriesPerSec: 80_000, Latency: Percentiles{P99MS: 120}, Server: &ServerReport{CPUSecondsPerMillionDeliveries: 15.5}},
		{Label: "one message to 10000", Peer: peerMercure, Mode: modeFanout, Server: &ServerReport{CPUSecondsPerMillionDeliveries: 35}},
	}
	want := `| idle subscribers, measured at | RSS each | subscribers per GiB | file descriptors each |
| --- | ---: | ---: | ---: |
| SSE, HTTP/1.1, 10000 | 4.2 KiB | 250k | 1 |
| SSE, HTTP/2 over TLS, a connection each, 5000 | 77.0 KiB | 14k | 1 |
| WebSocket, HTTP/1.1 over TLS, 5000 | 20.0 KiB | 52k | 1 |

| load | server CPU per delivery | cores per 100,000 deliveries/s | deliveries/s made | p99 |
| --- | ---: | ---: | ---: | ---: |
| one message to 10000 | 15.5 µs | 1.55 | 80k | 120ms |
`
	if got := sizingTable(rs); got != want {
		t.Errorf("sizing:\n%s\nwant:\n%s", got, want)
	}
}
