package mqtt_test

// These stories need a hub that becomes unavailable and comes back: a hub
// kept in a real redis-server, which testserver starts. testserver imports
// the Caddy module, which imports this package, hence an external test
// package with helpers of its own.

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	redisbroker "github.com/caddy-pubsub/caddy-pubsub/broker/redis"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/internal/mqtttest"
	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
	"github.com/caddy-pubsub/caddy-pubsub/mqtt"
)

// More QoS 1 messages arrive while the hub is down than the link's queue
// holds: the link takes no more from the connection and does not
// acknowledge them. Once the hub is back and the queued ones are stored,
// it reconnects, and the broker sends the others again. Every message is
// stored, none dropped, in the order published (mosquitto; the embedded
// broker resends in any order). A message may be stored twice: MQTT 3.1.1
// QoS 1 is at least once.
func TestQueueFullLeavesMessagesWithTheBroker(t *testing.T) {
	for _, kind := range []string{"embedded", "mosquitto"} {
		t.Run(kind, func(t *testing.T) {
			b := newBroker(t, kind)
			h, redis := newRedisHub(t)
			sub := subscribeAll(t, h)
			l, logs := startLink(t, b, h, "queue-full", 1, 4)
			waitLog(t, logs, "mqtt connected", 1)

			redis.Kill()
			var want []string
			for i := range 12 {
				want = append(want, fmt.Sprintf("m%02d", i))
				b.Publish("q/1", []byte(want[i]), 1, false)
			}
			e := waitLog(t, logs, "mqtt queue full: messages left with the broker until the queued ones are stored", 1)
			if e.Level != zapcore.WarnLevel || e.ContextMap()["queue"] != int64(4) {
				t.Errorf("log entry %+v", e)
			}
			if st := l.State(); st.Status != mqtt.StatusConnected {
				t.Errorf("state %+v: the link gave the connection up while the hub was down", st)
			}
			redis.Start()

			var first []string // each message as it first arrives
			seen := map[string]bool{}
			for len(first) < len(want) {
				m := next(t, sub)
				if !seen[m.Data] {
					seen[m.Data] = true
					first = append(first, m.Data)
				}
			}
			if kind == "embedded" {
				slices.Sort(first)
			}
			if fmt.Sprint(first) != fmt.Sprint(want) {
				t.Fatalf("stored %q, want %q", first, want)
			}
			waitLog(t, logs, "mqtt queue drained: reconnecting for the messages left with the broker", 1)
			st := l.State()
			if st.Dropped != 0 {
				t.Errorf("state %+v: messages dropped", st)
			}
			t.Logf("%d messages received (with those sent again) over %d connections", st.Received, st.Connects)
		})
	}
}

// QoS 0 messages have no acknowledgement and are never sent again: those
// that find the queue full are dropped, counted and logged, and the link
// stays connected; the ones queued are stored once the hub is back, in
// order.
func TestQueueFullDropsQoS0(t *testing.T) {
	b := newBroker(t, "embedded")
	h, redis := newRedisHub(t)
	sub := subscribeAll(t, h)
	l, logs := startLink(t, b, h, "queue-qos0", 0, 2)
	waitLog(t, logs, "mqtt connected", 1)

	redis.Kill()
	for i := range 6 {
		b.Publish("q/1", []byte(fmt.Sprint(i)), 0, false)
	}
	e := waitLog(t, logs, "mqtt message dropped: QoS 0 and too many messages waiting for the hub", 1)
	if e.Level != zapcore.WarnLevel {
		t.Errorf("log entry %+v", e)
	}
	st := waitState(t, l, func(st mqtt.State) bool { return st.Received == 6 })
	// The store loop holds one message and the queue two more; it may
	// have taken the first one out before the third arrived or after.
	if st.Dropped < 3 || st.Dropped > 4 {
		t.Fatalf("state %+v, want 3 or 4 dropped", st)
	}
	redis.Start()
	prev := -1
	for range 6 - st.Dropped {
		var n int
		m := next(t, sub)
		if _, err := fmt.Sscan(m.Data, &n); err != nil || n <= prev {
			t.Fatalf("got %q after %d", m.Data, prev)
		}
		prev = n
	}
	b.Publish("q/1", []byte("sentinel"), 0, false)
	if m := next(t, sub); m.Data != "sentinel" {
		t.Fatalf("got %q, want the sentinel", m.Data)
	}
	if st := l.State(); st.Connects != 1 {
		t.Errorf("state %+v: want the first connection kept", st)
	}
}

// newBroker starts an MQTT broker of kind "embedded" or "mosquitto" (skipped
// when not installed, failed under PUBSUB_REQUIRE_SERVICES=1).
func newBroker(t *testing.T, kind string) *mqtttest.Broker {
	t.Helper()
	if kind == "mosquitto" {
		return mqtttest.Mosquitto(t, testserver.NeedBinary(t, "mosquitto"), mqtttest.Options{})
	}
	return mqtttest.Embedded(t, mqtttest.Options{})
}

// newRedisHub returns a running hub kept in a redis-server of its own,
// which the test kills and starts again to make the hub unavailable.
func newRedisHub(t *testing.T) (*hub.Hub, *testserver.Redis) {
	t.Helper()
	srv := testserver.StartRedis(t)
	r := hub.Retention{Count: 100}
	b, err := redisbroker.New(redisbroker.Config{URL: srv.URL, Stream: "mqtt-test", DialTimeout: time.Second}, r)
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New(b, hub.Options{Queue: 100, Retention: r})
	t.Cleanup(func() { _ = h.Close() })
	return h, srv
}

// subscribeAll subscribes to every topic of h from now on.
func subscribeAll(t *testing.T, h *hub.Hub) *hub.Subscriber {
	t.Helper()
	s, _, _, err := h.Subscribe(context.Background(), []string{"#"}, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// next returns the next message of s.
func next(t *testing.T, s *hub.Subscriber) *hub.Message {
	t.Helper()
	timeout := time.After(2 * testserver.Wait)
	for {
		if m, ok := s.Next(); ok {
			return m
		}
		select {
		case <-s.Ready():
		case <-s.Done():
			t.Fatalf("subscription ended: %v", s.Err())
		case <-timeout:
			t.Fatal("no hub message within", 2*testserver.Wait)
		}
	}
}

// startLink starts a link from b's q/# at qos into h with a queue of
// queue messages, and short back-off; its logs go to the observer.
func startLink(t *testing.T, b *mqtttest.Broker, h *hub.Hub, id string, qos byte, queue int) (*mqtt.Link, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	cfg := mqtt.Config{URL: b.URL(), ClientID: id, Subscribe: []mqtt.Subscription{{Filter: "q/#", QoS: qos}}}
	l, err := mqtt.New(cfg, h, mqtt.Options{
		Logger:     zap.New(core),
		MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
		Queue:      queue,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	l.Start()
	return l, logs
}

// waitLog waits until logs hold n entries with message msg and returns
// the last; the observer offers no event to wait on, so it is polled.
func waitLog(t *testing.T, logs *observer.ObservedLogs, msg string, n int) observer.LoggedEntry {
	t.Helper()
	deadline := time.Now().Add(2 * testserver.Wait)
	for {
		if found := logs.FilterMessage(msg).All(); len(found) >= n {
			return found[n-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("log %q not %d times within %s; logs: %v", msg, n, 2*testserver.Wait, logs.All())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitState polls the link's state until ok holds: the link offers no
// event to wait on.
func waitState(t *testing.T, l *mqtt.Link, ok func(mqtt.State) bool) mqtt.State {
	t.Helper()
	deadline := time.Now().Add(testserver.Wait)
	for {
		st := l.State()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("link state %+v after %s", st, testserver.Wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
