package redis_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Two Caddy instances on a Sentinel-watched master. When the master dies,
// Sentinel promotes the replica; publishing answers 503 meanwhile and
// resumes by itself, subscribers on both instances keep their streams, and
// every message acknowledged and replicated before the kill is delivered
// once, with no ID repeated.
func TestSentinelFailover(t *testing.T) {
	s := testserver.StartRedisSentinel(t)
	site := redisSite(s.URL, "chat", "")
	a := testserver.Start(t, site)
	b := startChild(t, site)
	epA, epB := a.Base+"/events", b.Base+"/events"
	onA := testserver.Subscribe(t, nil, epA+"?topic=t", nil)
	onB := testserver.Subscribe(t, nil, epB+"?topic=t", nil)

	var ids, data []string
	for i := range 5 {
		d := fmt.Sprint("before ", i)
		ids, data = append(ids, testserver.Publish(t, epA, url.Values{"topic": {"t"}, "data": {d}})), append(data, d)
	}
	expect(t, onA, ids, data)
	expect(t, onB, ids, data)
	testserver.Eventually(t, "b finds the stream on the master", func() bool { return linkOf(t, b.Admin, "chat").Server == s.Master.Addr })
	if l := linkOf(t, b.Admin, "chat"); l.Failovers != 0 {
		t.Fatalf("before the kill: %+v, want no failover", l)
	}
	// Acknowledged is not replicated: wait until the replica has it all.
	master := goredis.NewClient(&goredis.Options{Addr: s.Master.Addr})
	defer master.Close()
	if n, err := master.Wait(context.Background(), 1, testserver.Wait).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT for the replica: %d, %v", n, err)
	}

	killed := time.Now()
	s.Master.Kill()
	code, body, _ := testserver.Request(t, "POST", epB, "application/x-www-form-urlencoded", "topic=t&data=lost", nil)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("publish with the master dead: %d %s; want 503", code, body)
	}
	testserver.Eventually(t, "Sentinel promotes the replica", func() bool { return s.MasterAddr(t) == s.Replica.Addr })

	after := publishWhenUp(t, epB, "t", "after")
	t.Logf("publishing came back %s after the master was killed", time.Since(killed).Round(time.Millisecond))
	if slices.Contains(ids, after) {
		t.Fatalf("the new master re-used ID %s", after)
	}
	// Both streams go on where they were: nothing repeated, nothing
	// lost that was replicated, and the new message.
	expect(t, onA, []string{after}, []string{"after"})
	expect(t, onB, []string{after}, []string{"after"})
	// b saw one failover (not a mere reconnect) and no loss.
	testserver.Eventually(t, "b finds the stream on the new master", func() bool { return linkOf(t, b.Admin, "chat").Server == s.Replica.Addr })
	if l := linkOf(t, b.Admin, "chat"); l.Failovers != 1 || l.Losses != 0 || l.Gaps != 0 {
		t.Fatalf("after the failover: %+v, want 1 failover, no loss, no gap", l)
	}

	// A client that saw the first message resumes on the other instance
	// from the new master's copy of the stream.
	resumed := testserver.Subscribe(t, nil, epA+"?topic=t", lastEventID(ids[0]))
	expect(t, resumed, append(ids[1:], after), append(data[1:], "after"))
}

// A Redis Cluster of three masters: hubs land on different shards (their
// keys carry a hash tag), and two instances share each hub, fan-out and
// resume alike.
func TestClusterSpreadsHubs(t *testing.T) {
	c := testserver.StartRedisCluster(t, 3)
	hubs := []string{"h0", "h1", "h2", "h3", "h4", "h5", "h6", "h7"}
	var site strings.Builder
	site.WriteString("http://127.0.0.1:{PORT} {\n")
	for _, h := range hubs {
		fmt.Fprintf(&site, "\tpubsub /%s* {\n\t\thub %s\n\t\tbroker redis %s {\n\t\t\tcluster\n\t\t}\n\t}\n", h, h, c.URL)
	}
	site.WriteString("}\n")
	a := testserver.Start(t, site.String())
	b := startChild(t, site.String())

	for _, h := range hubs {
		onB := testserver.Subscribe(t, nil, b.Base+"/"+h+"?topic=t", nil)
		first := testserver.Publish(t, a.Base+"/"+h, url.Values{"topic": {"t"}, "data": {h + " 1"}})
		second := testserver.Publish(t, b.Base+"/"+h, url.Values{"topic": {"t"}, "data": {h + " 2"}})
		expect(t, onB, []string{first, second}, []string{h + " 1", h + " 2"})
		resumed := testserver.Subscribe(t, nil, a.Base+"/"+h+"?topic=t", lastEventID(first))
		expect(t, resumed, []string{second}, []string{h + " 2"})
	}

	holding := 0
	holder := make(map[string]string) // hub: the node with its keys
	for _, n := range c.Nodes {
		node := goredis.NewClient(&goredis.Options{Addr: n.Addr})
		keys, err := node.Keys(context.Background(), "pubsub:{h*}").Result()
		node.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if !strings.HasPrefix(k, "pubsub:{h") {
				t.Fatalf("key %q has no hash tag", k)
			}
			holder[strings.SplitN(k[len("pubsub:{"):], "}", 2)[0]] = n.Addr
		}
		if len(keys) > 0 {
			holding++
		}
	}
	if holding < 2 {
		t.Fatalf("the hubs' keys are on %d of %d nodes; want them spread", holding, len(c.Nodes))
	}
	// The stats name the master each hub's stream is on.
	for _, h := range hubs {
		if l := linkOf(t, b.Admin, h); l.Server != holder[h] || l.Failovers != 0 {
			t.Errorf("hub %s: link %+v, want on %s with no failover", h, l, holder[h])
		}
	}
}

// The replica is cut off (frozen, its link dropped) while the master
// acknowledges two messages, then the master dies and Sentinel promotes the replica without them.
// The next publish finds the loss: the stream goes on in a new epoch (no
// ID repeats one a client saw), the live subscriber's stream ends with the
// reason, and its resume is told with a gap, never silence.
func TestSentinelFailoverLosingATail(t *testing.T) {
	s := testserver.StartRedisSentinel(t)
	a := testserver.Start(t, redisSite(s.URL, "chat", ""))
	ep := a.Base + "/events"
	sub := testserver.Subscribe(t, nil, ep+"?topic=t", nil)
	master := goredis.NewClient(&goredis.Options{Addr: s.Master.Addr})
	defer master.Close()

	kept := []string{testserver.Publish(t, ep, url.Values{"topic": {"t"}, "data": {"kept"}})}
	if n, err := master.Wait(context.Background(), 1, testserver.Wait).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT for the replica: %d, %v", n, err)
	}
	// The replica stops, and the master drops its link (what the master
	// sent before stays in the frozen replica's socket, not after).
	s.Replica.Pause()
	if err := master.ClientKillByFilter(context.Background(), "TYPE", "replica").Err(); err != nil {
		t.Fatal(err)
	}
	lost := []string{
		testserver.Publish(t, ep, url.Values{"topic": {"t"}, "data": {"lost 1"}}),
		testserver.Publish(t, ep, url.Values{"topic": {"t"}, "data": {"lost 2"}}),
	}
	expect(t, sub, append(kept, lost...), []string{"kept", "lost 1", "lost 2"})
	s.Master.Kill()
	s.Replica.Resume()
	testserver.Eventually(t, "Sentinel promotes the replica", func() bool { return s.MasterAddr(t) == s.Replica.Addr })

	after := publishWhenUp(t, ep, "t", "after")
	if epoch := strings.SplitN(after, "-", 2)[0]; strings.HasPrefix(lost[1], epoch+"-") {
		t.Fatalf("after losing messages the stream went on in the same epoch: %s after %s", after, lost[1])
	}
	expectClosed(t, sub, "the broker lost messages")
	resumed := testserver.Subscribe(t, nil, ep+"?topic=t", lastEventID(lost[1]))
	ev := resumed.Next()
	if ev.Event != "gap" {
		t.Fatalf("resume after the loss: got %+v, want a gap", ev)
	}
	// What follows the gap is retained history, then the new message: an
	// ID seen before names the same message, never another.
	seen := map[string]string{kept[0]: "kept", lost[0]: "lost 1", lost[1]: "lost 2"}
	for {
		ev := resumed.Next()
		if data, ok := seen[ev.ID]; ok && data != ev.Data {
			t.Fatalf("ID %s named %q, now %q", ev.ID, data, ev.Data)
		}
		if ev.ID == after {
			return
		}
	}
}
