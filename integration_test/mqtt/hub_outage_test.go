package mqtt_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/mqtttest"
	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// The hub keeps its messages in Redis, and Redis goes down while QoS 1
// messages come in from the MQTT broker: the link cannot store them, so it
// does not acknowledge them and keeps trying. Redis comes back empty (no
// persistence): the subscriber, connected throughout, has its stream ended
// because the stream lost what it saw, resumes, is told with a gap, and
// gets all of them in the order they were published.
func TestMQTTHubOutageKeepsQoS1Messages(t *testing.T) {
	eachBroker(t, func(t *testing.T, newBroker newBrokerFunc) {
		b := newBroker(mqtttest.Options{})
		redis := testserver.StartRedis(t)
		_, ep, logs := startSite(t, withRedis(mqttBlock(b.URL(), "it-hub-outage", "subscribe q/# 1", "prefix mqtt/"), redis.URL))
		logs.wait(t, "mqtt connected", 1)
		sse := testserver.Subscribe(t, nil, ep+"?topic=mqtt/%23&format=json", nil)
		b.Publish("q/1", []byte("before"), 1, false)
		before := envelopeWithin(t, sse, testserver.Wait)
		if before.Data != "before" {
			t.Fatalf("got %+v", before)
		}

		redis.Kill()
		var want []string
		for i := range 10 {
			want = append(want, fmt.Sprintf("during %d", i))
			b.Publish("q/1", []byte(want[i]), 1, false)
		}
		// The link has met the outage before Redis comes back.
		logs.wait(t, "mqtt message not stored: hub unavailable or behind; retrying", 1)
		redis.Start()
		if ended := sse.ExpectEnd(); !slices.ContainsFunc(ended, func(c string) bool { return strings.Contains(c, "the broker lost messages") }) {
			t.Fatalf("the stream ended with %q, want the loss said", ended)
		}
		sse = testserver.Subscribe(t, nil, ep+"?topic=mqtt/%23&format=json", http.Header{"Last-Event-Id": {before.ID}})
		if ev := sse.Next(); ev.Event != "gap" {
			t.Fatalf("resume after the loss: %+v, want a gap", ev)
		}

		var got []string
		defer func() {
			if t.Failed() {
				t.Logf("received after the outage: %q", got)
			}
		}()
		for len(got) < len(want) {
			// At least once: Redis may have stored "before" and died
			// before its answer reached the link, which then stores it
			// again.
			if e := envelopeWithin(t, sse, 3*testserver.Wait); e.Data != "before" {
				got = append(got, e.Data)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("after Redis came back got %q, want %q", got, want)
		}
		logs.wait(t, "mqtt message stored after the hub came back", 1)
		if n := logs.count(t, "mqtt message dropped: hub publish failed"); n != 0 {
			t.Errorf("%d messages dropped", n)
		}
	})
}
