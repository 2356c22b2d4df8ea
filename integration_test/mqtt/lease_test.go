package mqtt_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/internal/mqtttest"
	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// leaseTTL is the lease of the mqtt blocks of these stories, short so a
// takeover after a kill is quick.
const leaseTTL = 2 * time.Second

// leaseBlock is an mqtt block without client_id (the default, one per
// link) and with a short lease.
func leaseBlock(url string) string {
	return fmt.Sprintf("mqtt %s {\n\t\t\tsubscribe sensors/# 1\n\t\t\tprefix mqtt/\n\t\t\tlease %s\n\t\t}", url, leaseTTL)
}

// linkLease is an MQTT link in GET /pubsub/stats.
type linkLease struct {
	Status      string  `json:"status"`
	LastError   string  `json:"last_error"`
	Redelivered *uint64 `json:"redelivered"`
	Lease       *struct {
		Shared   bool      `json:"shared"`
		Holding  bool      `json:"holding"`
		Holder   string    `json:"holder"`
		Token    uint64    `json:"token"`
		Expires  time.Time `json:"expires"`
		Acquired uint64    `json:"acquired"`
		Lost     uint64    `json:"lost"`
	} `json:"lease"`
}

// mqttLink returns the one MQTT link of c's stats.
func mqttLink(t *testing.T, c *testserver.Child) linkLease {
	t.Helper()
	l, body := mqttLinkOf(t, c)
	if l == nil {
		t.Fatalf("stats %s: want one mqtt link with its lease", body)
	}
	return *l
}

// mqttLinkOf returns the one MQTT link of c's stats, nil while c has no
// hub yet (its admin endpoint answers before the config's apps have
// started), and the stats.
func mqttLinkOf(t *testing.T, c *testserver.Child) (*linkLease, string) {
	t.Helper()
	code, body, _ := testserver.Request(t, "GET", c.Admin+"/pubsub/stats", "", "", nil)
	if code != http.StatusOK {
		t.Fatalf("stats: %d %s", code, body)
	}
	var answer struct {
		Hubs map[string]struct {
			Links []struct {
				Kind string `json:"kind"`
				linkLease
			} `json:"links"`
		} `json:"hubs"`
	}
	if err := json.Unmarshal([]byte(body), &answer); err != nil {
		t.Fatalf("stats %s: %v", body, err)
	}
	var found []linkLease
	for _, h := range answer.Hubs {
		for _, l := range h.Links {
			if l.Kind == "mqtt" {
				found = append(found, l.linkLease)
			}
		}
	}
	if len(answer.Hubs) == 0 {
		return nil, body
	}
	if len(found) != 1 || found[0].Lease == nil || found[0].Redelivered == nil {
		t.Fatalf("stats %s: want one mqtt link with its lease", body)
	}
	return &found[0], body
}

// holders returns the instances of cs whose stats say they hold the link,
// and whether every instance has its link yet (none still starting).
func holders(t *testing.T, cs []*testserver.Child) (out []*testserver.Child, started bool) {
	t.Helper()
	started = true
	for _, c := range cs {
		l, _ := mqttLinkOf(t, c)
		switch {
		case l == nil:
			started = false
		case l.Lease.Holding:
			out = append(out, c)
		}
	}
	return out, started
}

// awaitHolder waits until every one of cs has started and exactly one
// holds the link, connected, and returns it with how long that took.
func awaitHolder(t *testing.T, cs []*testserver.Child, within time.Duration) (*testserver.Child, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		if h, started := holders(t, cs); started && len(h) == 1 && mqttLink(t, h[0]).Status == "connected" {
			return h[0], time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("no single connected holder within %s", within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var leaderMetric = regexp.MustCompile(`(?m)^caddy_pubsub_mqtt_link_leader\{[^}]*\} (\d)$`)

// leaderGauge returns c's caddy_pubsub_mqtt_link_leader.
func leaderGauge(t *testing.T, c *testserver.Child) string {
	t.Helper()
	code, body, _ := testserver.Request(t, "GET", c.Admin+"/metrics", "", "", nil)
	m := leaderMetric.FindStringSubmatch(body)
	if code != http.StatusOK || m == nil {
		t.Fatalf("metrics: %d, no caddy_pubsub_mqtt_link_leader in:\n%.2000s", code, body)
	}
	return m[1]
}

// collect reads data events from subs until each has seen marker, and
// returns how many times each payload arrived on each.
func collect(t *testing.T, subs []*testserver.SSEStream, marker string) []map[string]int {
	t.Helper()
	out := make([]map[string]int, len(subs))
	for i, s := range subs {
		out[i] = make(map[string]int)
		for {
			e := s.Next()
			if e.Data == marker {
				break
			}
			out[i][e.Data]++
		}
	}
	return out
}

// Three Caddy processes run the same mqtt block on one Redis hub: one of
// them holds the link, and each upstream message reaches the subscribers
// of every instance once. Killed (SIGKILL, no release), the holder's link
// moves to another instance within twice the lease, which resumes the
// session: the QoS 1 messages sent meanwhile all arrive. Stopped
// gracefully, the holder releases the lease and the last instance takes
// over at once.
func TestOneHolderAmongThreeInstances(t *testing.T) {
	b := mqtttest.Mosquitto(t, testserver.NeedBinary(t, "mosquitto"), mqtttest.Options{})
	srv := testserver.StartRedis(t)
	bin := testserver.BuildCaddy(t)
	site := withRedis(leaseBlock(b.URL()), srv.URL)
	var cs []*testserver.Child
	for range 3 {
		cs = append(cs, testserver.StartChild(t, bin, "", site))
	}
	holder, _ := awaitHolder(t, cs, 2*testserver.Wait)
	hl := mqttLink(t, holder).Lease
	if hl.Token == 0 || time.Until(hl.Expires) <= 0 || time.Until(hl.Expires) > leaseTTL {
		t.Errorf("holder's lease %+v: want a token and an expiry within the lease", hl)
	}
	var subs []*testserver.SSEStream
	for _, c := range cs {
		if c != holder {
			if l := mqttLink(t, c); l.Lease.Holder != hl.Holder || l.Status != "following" {
				t.Errorf("follower sees %+v (status %s), want holder %s", l.Lease, l.Status, hl.Holder)
			}
		}
		want := map[bool]string{true: "1", false: "0"}[c == holder]
		if got := leaderGauge(t, c); got != want {
			t.Errorf("caddy_pubsub_mqtt_link_leader %s on an instance, want %s", got, want)
		}
		subs = append(subs, testserver.Subscribe(t, nil, c.Base+"/events?topic=mqtt/%23", nil))
	}

	// Normal case: each message once on every instance.
	for i := range 10 {
		b.Publish("sensors/t", fmt.Appendf(nil, "normal-%d", i), 1, false)
	}
	b.Publish("sensors/t", []byte("marker-1"), 1, false)
	for i, got := range collect(t, subs, "marker-1") {
		for j := range 10 {
			if n := got[fmt.Sprintf("normal-%d", j)]; n != 1 {
				t.Errorf("instance %d got normal-%d %d times, want once; all: %v", i, j, n, got)
			}
		}
		if len(got) != 10 {
			t.Errorf("instance %d got %v, want normal-0…9 once each", i, got)
		}
	}

	// The holder dies without releasing the lease; QoS 1 messages are
	// published during the handover.
	var rest []*testserver.Child
	var restSubs []*testserver.SSEStream
	for i, c := range cs {
		if c != holder {
			rest, restSubs = append(rest, c), append(restSubs, subs[i])
		}
	}
	killed := time.Now()
	holder.Kill()
	for i := range 10 {
		b.Publish("sensors/t", fmt.Appendf(nil, "handover-%d", i), 1, false)
	}
	next, _ := awaitHolder(t, rest, 3*leaseTTL)
	took := time.Since(killed)
	nl := mqttLink(t, next)
	t.Logf("takeover after SIGKILL: %s (lease %s); token %d -> %d", took.Round(time.Millisecond), leaseTTL, hl.Token, nl.Lease.Token)
	if took > 2*leaseTTL {
		t.Errorf("takeover took %s, more than twice the lease", took)
	}
	if nl.Lease.Token <= hl.Token {
		t.Errorf("new holder's token %d not above the old one's %d", nl.Lease.Token, hl.Token)
	}
	b.Publish("sensors/t", []byte("marker-2"), 1, false)
	for i, got := range collect(t, restSubs, "marker-2") {
		dups := 0
		for j := range 10 {
			n := got[fmt.Sprintf("handover-%d", j)]
			if n == 0 {
				t.Errorf("instance %d never got handover-%d; got %v", i, j, got)
			}
			dups += max(n-1, 0)
		}
		t.Logf("instance %d: 10 handover messages, %d duplicates; new holder's redelivered: %d", i, dups, *mqttLink(t, next).Redelivered)
	}

	// The new holder stops gracefully: it releases the lease, and the last
	// instance takes over far sooner than the lease would expire.
	var last *testserver.Child
	var lastSub *testserver.SSEStream
	for i, c := range rest {
		if c != next {
			last, lastSub = c, restSubs[i]
		}
	}
	stopped := time.Now()
	next.Stop(t)
	_, _ = awaitHolder(t, []*testserver.Child{last}, 3*leaseTTL)
	took = time.Since(stopped)
	t.Logf("takeover after a graceful stop: %s (lease %s)", took.Round(time.Millisecond), leaseTTL)
	if took >= leaseTTL {
		t.Errorf("takeover after a graceful stop took %s, not less than the lease: was it released?", took)
	}
	b.Publish("sensors/t", []byte("after-stop"), 1, false)
	b.Publish("sensors/t", []byte("marker-3"), 1, false)
	if got := collect(t, []*testserver.SSEStream{lastSub}, "marker-3")[0]; got["after-stop"] != 1 || len(got) != 1 {
		t.Errorf("last instance got %v, want after-stop once", got)
	}
	if out := last.Output(); strings.Contains(out, "panic") {
		t.Errorf("last instance's output:\n%s", out)
	}
}

// A hub in memory is one instance's: its link, with lease set, is held by
// that instance and connects as before.
func TestLeaseOnAMemoryHub(t *testing.T) {
	b := mqtttest.Mosquitto(t, testserver.NeedBinary(t, "mosquitto"), mqtttest.Options{})
	c := testserver.StartChild(t, testserver.BuildCaddy(t), "", withMQTT(leaseBlock(b.URL())))
	h, _ := awaitHolder(t, []*testserver.Child{c}, testserver.Wait)
	if l := mqttLink(t, h).Lease; l.Shared || l.Token != 0 {
		t.Errorf("lease %+v: want held, not shared", l)
	}
	if got := leaderGauge(t, c); got != "1" {
		t.Errorf("caddy_pubsub_mqtt_link_leader %s, want 1", got)
	}
	sub := testserver.Subscribe(t, nil, c.Base+"/events?topic=mqtt/%23", nil)
	b.Publish("sensors/t", []byte("alone"), 1, false)
	if e := sub.Next(); e.Data != "alone" {
		t.Fatalf("got %+v", e)
	}
}

// A reload that changes an mqtt block on a Redis hub, with the same
// client_id, hands the link over in this process: the old link releases
// its lease and the new one takes it at once, well before the lease (the
// default 10 s) would expire.
func TestReloadHandsTheLeaseOver(t *testing.T) {
	b := mqtttest.Mosquitto(t, testserver.NeedBinary(t, "mosquitto"), mqtttest.Options{})
	srv := testserver.StartRedis(t)
	block := func(prefix string) string {
		return withRedis(mqttBlock(b.URL(), "it-reload-lease", "subscribe a/# 1", "prefix "+prefix), srv.URL)
	}
	s, ep, logs := startSite(t, block("old/"))
	logs.wait(t, "mqtt link lease acquired: this instance connects", 1)
	sse := testserver.Subscribe(t, nil, ep+"?topic=%23&format=json", nil)

	reloaded := time.Now()
	s.Load(block("new/"))
	logs.wait(t, "mqtt link lease released", 1)
	logs.wait(t, "mqtt link lease acquired: this instance connects", 2)
	took := time.Since(reloaded)
	t.Logf("lease handed over %s after the reload began", took.Round(time.Millisecond))
	if took >= 5*time.Second {
		t.Errorf("handover took %s: the lease expired rather than being released", took)
	}
	b.Publish("a/1", []byte("after"), 1, false)
	if e := envelope(t, sse); e.Topic != "new/a/1" || e.Data != "after" {
		t.Fatalf("got %+v, want after on new/a/1", e)
	}
	if n := logs.count(t, "mqtt link lease lost: disconnected"); n != 0 {
		t.Errorf("%d leases lost in a reload", n)
	}
}

// A holder that cannot renew its lease (Redis stops answering) disconnects
// from the MQTT broker when the lease ends, not later: another instance
// may hold the link by then. When Redis answers again, it takes the lease
// again and the messages published meanwhile arrive from the session.
func TestHolderCutOffFromRedisDisconnects(t *testing.T) {
	b := mqtttest.Mosquitto(t, testserver.NeedBinary(t, "mosquitto"), mqtttest.Options{})
	srv := testserver.StartRedis(t)
	_, ep, logs := startSite(t, withRedis(leaseBlock(b.URL()), srv.URL))
	logs.wait(t, "mqtt link lease acquired: this instance connects", 1)
	sse := testserver.Subscribe(t, nil, ep+"?topic=mqtt/%23&format=json", nil)

	paused := time.Now()
	srv.Pause()
	e := logs.wait(t, "mqtt link lease lost: disconnected", 1)
	took := time.Since(paused)
	t.Logf("disconnected %s after Redis stopped answering (lease %s): %v", took.Round(time.Millisecond), leaseTTL, e["error"])
	if took > leaseTTL+time.Second {
		t.Errorf("disconnected %s after Redis stopped answering, lease %s", took, leaseTTL)
	}
	logs.wait(t, "mqtt disconnected", 1)
	b.Publish("sensors/t", []byte("while cut off"), 1, false)
	srv.Resume()
	logs.wait(t, "mqtt link lease acquired: this instance connects", 2)
	if e := envelope(t, sse); e.Data != "while cut off" {
		t.Fatalf("got %+v", e)
	}
}

// A holder paused past its lease (SIGSTOP, as a long GC pause or a frozen
// VM) loses the link to the other instance, which resumes the session:
// the QoS 1 messages the broker had sent to the paused holder come again
// (DUP) to the new one, and every message arrives once. Woken up, the old
// holder finds its lease ended by its own clock and disconnects; a
// publish of its that raced that check would carry its old fencing token,
// which Redis refuses (TestLeaseFencing in broker/redis).
func TestPausedHolderLosesTheLink(t *testing.T) {
	b := mqtttest.Mosquitto(t, testserver.NeedBinary(t, "mosquitto"), mqtttest.Options{})
	srv := testserver.StartRedis(t)
	bin := testserver.BuildCaddy(t)
	site := withRedis(leaseBlock(b.URL()), srv.URL)
	cs := []*testserver.Child{testserver.StartChild(t, bin, "", site), testserver.StartChild(t, bin, "", site)}
	holder, _ := awaitHolder(t, cs, 2*testserver.Wait)
	other := cs[0]
	if other == holder {
		other = cs[1]
	}
	sub := testserver.Subscribe(t, nil, other.Base+"/events?topic=mqtt/%23", nil)

	holder.Pause()
	for i := range 5 {
		b.Publish("sensors/t", fmt.Appendf(nil, "paused-%d", i), 1, false)
	}
	if _, took := awaitHolder(t, []*testserver.Child{other}, 3*leaseTTL); took > 2*leaseTTL {
		t.Errorf("takeover from a paused holder took %s", took)
	}
	holder.Resume()
	// The old holder's lease state moves once it has noticed; by then
	// anything it read from its socket was tried.
	testserver.Eventually(t, "the old holder counts its lease lost", func() bool {
		l := mqttLink(t, holder)
		return l.Lease.Lost == 1 && !l.Lease.Holding
	})
	b.Publish("sensors/t", []byte("marker"), 1, false)
	got := collect(t, []*testserver.SSEStream{sub}, "marker")[0]
	for i := range 5 {
		if n := got[fmt.Sprintf("paused-%d", i)]; n != 1 {
			t.Errorf("paused-%d arrived %d times, want once; all: %v", i, n, got)
		}
	}
	old, next := mqttLink(t, holder), mqttLink(t, other)
	t.Logf("new holder: redelivered %d; old holder: status %s, lost its lease: %s", *next.Redelivered, old.Status, old.LastError)
	if *next.Redelivered == 0 {
		t.Errorf("the broker sent the new holder nothing again: the paused holder had no messages in flight")
	}
}
