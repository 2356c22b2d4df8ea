package mqtt_test

import (
	"context"
	"strings"
	"testing"
	"time"

	redisbroker "github.com/caddy-pubsub/caddy-pubsub/broker/redis"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/mqtt"
)

// A holder whose lease another instance took without its noticing yet
// (its next renewal is far off) cannot store the next message: Redis
// refuses it for its old fencing token. The link then gives the link up
// at once, leaving the message unacknowledged in the session for the new
// holder.
func TestFencedLinkStopsPublishing(t *testing.T) {
	b := newBroker(t, "mosquitto")
	h, srv := newRedisHub(t)
	leaser, ok := h.Leaser()
	if !ok {
		t.Fatal("a hub on Redis has no Leaser")
	}
	sub := subscribeAll(t, h)
	cfg := mqtt.Config{URL: b.URL(), ClientID: "fenced", Subscribe: []mqtt.Subscription{{Filter: "q/#", QoS: 1}}, Lease: mqtt.Duration(mqtt.MaxLease)}
	l, err := mqtt.New(cfg, h, mqtt.Options{Leaser: leaser, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	l.Start()
	st := waitState(t, l, func(st mqtt.State) bool { return st.Lease.Holding && st.Status == mqtt.StatusConnected })

	// Another instance takes the lease over: the link renews only every
	// 100 s, so it still believes it holds it.
	thief, err := redisbroker.New(redisbroker.Config{URL: srv.URL, Stream: "mqtt-test"}, hub.Retention{Count: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = thief.Close() })
	ctx := context.Background()
	held := hub.Lease{Name: st.Lease.Name, Holder: st.Lease.Holder, Token: st.Lease.Token}
	if err := thief.ReleaseLease(ctx, held); err != nil {
		t.Fatal(err)
	}
	if taken, err := thief.AcquireLease(ctx, st.Lease.Name, "thief", time.Minute); err != nil || taken.Holder != "thief" {
		t.Fatalf("taking the lease over: %+v, %v", taken, err)
	}

	b.Publish("q/1", []byte("under an old token"), 1, false)
	st = waitState(t, l, func(st mqtt.State) bool { return st.Lease.Lost == 1 && !st.Lease.Holding })
	if !strings.Contains(st.LastError, "publish refused") || st.Published != 0 {
		t.Errorf("state %+v: want the lease lost to a refused publish, nothing published", st)
	}
	if _, err := h.Publish(ctx, hub.Message{Topic: "marker", Data: "first"}); err != nil {
		t.Fatal(err)
	}
	if m := next(t, sub); m.Data != "first" {
		t.Fatalf("hub got %q from a holder whose lease was taken", m.Data)
	}
}
