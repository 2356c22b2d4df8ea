package redis_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-pubsub/caddy-pubsub/broker/redis"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// copyOf is what a replica that lagged holds of a hub's keys: their dumps
// at one moment.
type copyOf map[string]string

func dumpKeys(t *testing.T, c *goredis.Client, keys ...string) copyOf {
	t.Helper()
	out := copyOf{}
	for _, k := range keys {
		v, err := c.Dump(context.Background(), k).Result()
		if err != nil {
			t.Fatalf("DUMP %s: %v", k, err)
		}
		out[k] = v
	}
	return out
}

// restore puts the copy back in place of the keys, as a failover to the
// replica that holds it would.
func (cp copyOf) restore(t *testing.T, c *goredis.Client) {
	t.Helper()
	for k, v := range cp {
		if err := c.RestoreReplace(context.Background(), k, 0, v).Err(); err != nil {
			t.Fatalf("RESTORE %s: %v", k, err)
		}
	}
}

// Redis loses the newest appends (a failover to a replica that lagged) and
// goes on, its IDs from the clock already past the lost ones. Two
// instances: A published and saw the lost messages, B had read only what
// survived. The next publish finds the loss: the stream goes on in a new
// epoch, so no ID repeats one a client saw; each instance tells its hub
// (OnLoss) before delivering the new epoch, and a resume from a lost ID or
// from one B delivered gets a gap.
func TestLostTailIsFoundAndTold(t *testing.T) {
	srv := testserver.StartRedis(t)
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer raw.Close()
	key := streamKey()

	type instance struct {
		b    *redis.Broker
		s    *sinkWithLoss
		name string
	}
	start := func(name string) instance {
		b := newBroker(t, srv.URL, key, hub.Retention{Count: 100})
		s := newSinkWithLoss()
		b.OnLoss(s.onLoss)
		if err := b.Start(s.deliver); err != nil {
			t.Fatal(err)
		}
		return instance{b, s, name}
	}
	a := start("A")
	kept := publish(t, a.b, "1", "2", "3")
	a.s.waitIDs(t, kept)
	b := start("B")
	replica := dumpKeys(t, raw, key, key+":epoch", key+":seq")

	lost := publish(t, a.b, "4", "5")
	a.s.waitIDs(t, append(slices.Clone(kept), lost...))
	replica.restore(t, raw)

	after := publish(t, a.b, "6")
	if epoch(after[0]) == epoch(kept[0]) {
		t.Fatalf("the stream went on in epoch %s after losing messages: IDs could repeat", epoch(after[0]))
	}
	for _, in := range []instance{a, b} {
		select {
		case <-in.s.lost:
		case <-time.After(testserver.Wait):
			t.Fatalf("instance %s was not told of the loss", in.name)
		}
		testserver.Eventually(t, "instance "+in.name+" delivers the new epoch", func() bool {
			return slices.Contains(in.s.ids(), after[0])
		})
		if got, want := in.s.lostAt(), slices.Index(in.s.ids(), after[0]); got != want {
			t.Fatalf("instance %s was told after %d deliveries, want %d: before the new epoch's first", in.name, got, want)
		}
	}

	// Resuming from a lost ID, or from one every instance delivered: the
	// store may no longer hold what came after, so both get a gap.
	for _, from := range []string{lost[1], kept[2]} {
		if _, gap := since(t, a.b, from, after[0]); gap == nil {
			t.Errorf("resume from %s after the loss: no gap", from)
		}
	}
	// A store that lost nothing is not suspected: later publishes keep
	// the epoch.
	again := publish(t, b.b, "7")
	if epoch(again[0]) != epoch(after[0]) {
		t.Fatalf("epoch renewed again without a loss: %s, then %s", after[0], again[0])
	}
}

// A reader back from an outage asks whether Redis kept what it saw, and
// tells its hub of a loss at once, with nobody publishing.
func TestLossFoundAfterAnOutage(t *testing.T) {
	srv := testserver.StartRedis(t)
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer raw.Close()
	link := newProxy(t, srv.Addr)
	key := streamKey()
	b := newBroker(t, "redis://"+link.addr, key, hub.Retention{Count: 100})
	s := newSinkWithLoss()
	b.OnLoss(s.onLoss)
	if err := b.Start(s.deliver); err != nil {
		t.Fatal(err)
	}
	kept := publish(t, b, "1")
	replica := dumpKeys(t, raw, key, key+":epoch", key+":seq")
	all := append(kept, publish(t, b, "2", "3")...)
	s.waitIDs(t, all)

	link.Cut()
	replica.restore(t, raw)
	link.Restore()
	select {
	case <-s.lost:
	case <-time.After(testserver.Wait):
		t.Fatal("the reader did not find the loss after the outage")
	}
	next := publish(t, b, "4")
	if epoch(next[0]) == epoch(all[0]) {
		t.Fatal("the epoch was not renewed")
	}
	s.waitIDs(t, append(all, next...))
	// Metrics and stats show the outage and the loss.
	if st := b.LinkState(); st.Kind != "redis" || !st.Up || st.Reconnects != 1 || st.Losses != 1 || st.LastError == "" {
		t.Fatalf("link state %+v, want up after 1 reconnect, 1 loss and the outage's error", st)
	}
}

// startReplicated starts a master and a replica of it, in sync.
func startReplicated(t testing.TB) (master, replica *testserver.Redis) {
	t.Helper()
	master = testserver.StartRedis(t)
	replica = testserver.StartRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	raw := goredis.NewClient(&goredis.Options{Addr: master.Addr})
	defer raw.Close()
	testserver.Eventually(t, "the replica in sync", func() bool {
		info, _ := raw.Info(context.Background(), "replication").Result()
		return strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online")
	})
	return master, replica
}

// sinkWithLoss is a sink that also records when the broker reported a
// loss: lost is closed then, and at holds the deliveries before it.
type sinkWithLoss struct {
	*sink
	lost chan struct{}
	at   int
}

func newSinkWithLoss() *sinkWithLoss {
	return &sinkWithLoss{sink: newSink(), lost: make(chan struct{})}
}

func (s *sinkWithLoss) onLoss() {
	s.mu.Lock()
	s.at = len(s.got)
	s.mu.Unlock()
	close(s.lost)
}

// lostAt is how many deliveries came before the loss was reported; call
// it once lost is closed.
func (s *sinkWithLoss) lostAt() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.at
}

func (s *sink) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.got))
	for i, m := range s.got {
		out[i] = m.ID
	}
	return out
}

// With Replicas, a publish is answered once a replica has it; a replica
// that does not get it in time makes the publish fail (503), saying it
// was stored.
func TestPublishWaitsForReplicas(t *testing.T) {
	master, replica := startReplicated(t)
	b, err := redis.New(redis.Config{URL: master.URL, Stream: streamKey(), Replicas: 1, ReplicaTimeout: 2 * time.Second}, hub.Retention{Count: 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if err := b.Start(func(*hub.Message) {}); err != nil {
		t.Fatal(err)
	}
	publish(t, b, "replicated")

	replica.Pause()
	defer replica.Resume()
	_, err = b.Publish(context.Background(), []hub.Message{{Topic: "t", Data: "not replicated"}})
	if !errors.Is(err, hub.ErrUnavailable) || !strings.Contains(err.Error(), "stored, but 0 of 1 replicas had it after 2s") {
		t.Fatalf("publish with the replica frozen: %v", err)
	}
}

// An idempotency key is kept in Redis: a retry on another instance of the
// stream gets the first attempt's IDs and stores nothing; another key, or
// the same one on another stream, publishes.
func TestPublishOnceAcrossInstances(t *testing.T) {
	srv := testserver.StartRedis(t)
	key := streamKey()
	a, sa := started(t, srv.URL, key, hub.Retention{Count: 100})
	b, _ := started(t, srv.URL, key, hub.Retention{Count: 100})
	msgs := []hub.Message{{Topic: "t", Data: "1"}, {Topic: "t", Data: "2"}}
	first, stored, err := a.PublishOnce(context.Background(), "order-17", time.Minute, msgs)
	if err != nil || !stored {
		t.Fatalf("first: %v %v", stored, err)
	}
	again, stored, err := b.PublishOnce(context.Background(), "order-17", time.Minute, msgs)
	if err != nil || stored || !slices.Equal(again, first) {
		t.Fatalf("retry on another instance: %v stored=%v %v; want %v, not stored", again, stored, err, first)
	}
	other, stored, err := b.PublishOnce(context.Background(), "order-18", time.Minute, msgs[:1])
	if err != nil || !stored {
		t.Fatalf("another key: %v %v", stored, err)
	}
	sa.waitIDs(t, append(first, other...))
}
