package mqtt_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/mqtt"
)

// cutAfterStore is a hub whose first publish is stored, then held until
// the test has cut the link's connection: the acknowledgement never
// reaches the broker, which sends the message again, with DUP, once the
// link is back (as it does to the instance that takes a link over).
type cutAfterStore struct {
	*hub.Hub
	first  atomic.Bool
	stored chan struct{}
	cut    chan struct{}
}

func (c *cutAfterStore) hold() {
	if c.first.CompareAndSwap(false, true) {
		c.stored <- struct{}{}
		<-c.cut
	}
}

func (c *cutAfterStore) Publish(ctx context.Context, msgs ...hub.Message) ([]string, error) {
	ids, err := c.Hub.Publish(ctx, msgs...)
	c.hold()
	return ids, err
}

func (c *cutAfterStore) PublishOnce(ctx context.Context, key string, msgs ...hub.Message) ([]string, error) {
	ids, err := c.Hub.PublishOnce(ctx, key, msgs...)
	c.hold()
	return ids, err
}

// A QoS 1 message the hub stored but the broker did not see acknowledged
// comes again with DUP after the reconnect; the link recognises it (its
// packet ID, topic and payload) and the hub keeps it once.
func TestRedeliveryOfAStoredMessageIsSuppressed(t *testing.T) {
	for _, kind := range []string{"embedded", "mosquitto"} {
		t.Run(kind, func(t *testing.T) {
			b := newBroker(t, kind)
			r := hub.Retention{Count: 100}
			h := hub.New(hub.NewMemoryBroker(r), hub.Options{Queue: 100, Retention: r})
			t.Cleanup(func() { _ = h.Close() })
			sub := subscribeAll(t, h)
			target := &cutAfterStore{Hub: h, stored: make(chan struct{}), cut: make(chan struct{})}
			cfg := mqtt.Config{URL: b.URL(), ClientID: "redelivery", Subscribe: []mqtt.Subscription{{Filter: "a", QoS: 1}}}
			l, err := mqtt.New(cfg, target, mqtt.Options{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = l.Close() })
			l.Start()
			status := func(s mqtt.Status) { waitState(t, l, func(st mqtt.State) bool { return st.Status == s }) }
			status(mqtt.StatusConnected)
			b.Publish("a", []byte("once"), 1, false)
			<-target.stored
			b.Down()
			close(target.cut)
			status(mqtt.StatusReconnecting)
			b.Up()
			status(mqtt.StatusConnected)
			b.Publish("a", []byte("after"), 1, false)
			for _, want := range []string{"once", "after"} {
				if m := next(t, sub); m.Data != want {
					t.Fatalf("hub got %q, want %q (a redelivery stored twice?)", m.Data, want)
				}
			}
			st := l.State()
			if st.Redelivered == 0 {
				t.Fatalf("state %+v: the broker did not send the message again, the test proves nothing", st)
			}
			t.Logf("received %d, redelivered %d, published %d", st.Received, st.Redelivered, st.Published)
		})
	}
}
