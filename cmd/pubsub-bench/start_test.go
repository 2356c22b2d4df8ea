package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Many topics: subscriber i on topic i mod 7, publishes round the 7
// topics; each message reaches its topic's 3 subscribers, once.
func TestTopics(t *testing.T) {
	endpoint := startServer(t) + "/events"
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"sustained over sse", []string{"-mode", "sustained", "-rate", "70", "-duration", "1s"}},
		{"fanout over ws in two processes", []string{"-mode", "fanout", "-transport", "ws", "-count", "7", "-interval", "50ms", "-procs", "2"}},
		{"batches", []string{"-mode", "sustained", "-rate", "140", "-batch", "5", "-duration", "1s"}},
		{"form publishes", []string{"-mode", "sustained", "-rate", "70", "-duration", "1s", "-publish", "form"}},
		{"publish frames on WebSockets", []string{"-mode", "sustained", "-rate", "70", "-duration", "1s", "-publish", "ws", "-publishers", "3"}},
		{"batches in publish frames", []string{"-mode", "sustained", "-rate", "140", "-batch", "5", "-duration", "1s", "-publish", "ws"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bench(t, endpoint, append([]string{"-n", "21", "-topics", "7"}, tc.args...)...)
			checkDeliveryTo(t, r, 21, 3)
			if r.Topics != 7 {
				t.Errorf("report's topics %d; want 7", r.Topics)
			}
		})
	}
}

// peerRuns are the tiny scenarios every peer runs in its tests: each
// transport it offers, TLS over HTTP/1.1 and HTTP/2, and many topics.
func peerRuns(peer string) [][]string {
	runs := [][]string{
		{"-mode", "fanout", "-count", "5", "-interval", "50ms"},
		{"-mode", "sustained", "-rate", "40", "-duration", "1s", "-topics", "4"},
		{"-mode", "fanout", "-count", "5", "-interval", "50ms", "-tls"},
		{"-mode", "fanout", "-count", "5", "-interval", "50ms", "-tls", "-http2", "-own-conn"},
	}
	if slices.Contains(peerTransports[peer], "ws") {
		runs = append(runs,
			[]string{"-mode", "fanout", "-count", "5", "-interval", "50ms", "-transport", "ws"},
			[]string{"-mode", "fanout", "-count", "5", "-interval", "50ms", "-transport", "ws", "-tls"})
	}
	return runs
}

// runPeer runs peerRuns against servers of peer that the tool starts from
// bin: 20 subscribers, nothing lost, the server (all its processes)
// metered.
func runPeer(t *testing.T, peer, bin string) {
	for _, args := range peerRuns(peer) {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := bench(t, "", append([]string{"-peer", peer, "-start", "-server-bin", bin, "-n", "20"}, args...)...)
			perMessage := int64(20)
			if slices.Contains(args, "-topics") {
				perMessage = 5
			}
			checkDeliveryTo(t, r, 20, perMessage)
			if r.Peer != peer || r.TLS != slices.Contains(args, "-tls") {
				t.Errorf("report's peer %q, TLS %v", r.Peer, r.TLS)
			}
		})
	}
}

// nginx + nchan from Debian's packages, started by the tool as this user
// with a configuration rendered from peers/nginx.conf.tmpl.
func TestNchan(t *testing.T) {
	runPeer(t, peerNchan, testserver.NeedBinary(t, "nginx", "/usr/sbin/nginx"))
}

// This project's Caddy as a separate process, started by the tool: over
// TLS, and two instances sharing a hub through redis-server, each holding
// half of the subscribers.
func TestStartPubsub(t *testing.T) {
	testserver.NeedBinary(t, "redis-server", "/usr/sbin/redis-server")
	bin := testserver.BuildCaddy(t)
	runPeer(t, peerPubsub, bin)
	t.Run("scale-out over 2 instances", func(t *testing.T) {
		r := bench(t, "", "-start", "-server-bin", bin, "-instances", "2", "-n", "10", "-mode", "sustained", "-rate", "20", "-duration", "1s")
		checkDelivery(t, r, 10)
		if want := []int64{r.Published * 5, r.Published * 5}; !slices.Equal(r.DeliveredPerInstance, want) {
			t.Errorf("deliveries per instance %v; want %v", r.DeliveredPerInstance, want)
		}
		if len(r.Server.PIDs) != 2 || r.Instances != 2 {
			t.Errorf("metered servers %v of %d instances; want 2", r.Server.PIDs, r.Instances)
		}
		if rd := r.Redis; rd == nil || rd.CallsPerMessage < 1 || rd.Commands["evalsha"]+rd.Commands["eval"] < 0.9 || rd.PID <= 0 {
			t.Errorf("redis figures %+v; want at least one script call per message", r.Redis)
		}
		t.Logf("redis: %.2f CPU-s per 1M messages, %.2f commands per message %s", r.Redis.CPUSecondsPerMillionMessages, r.Redis.CallsPerMessage, commandsText(r.Redis.Commands))
	})
}
