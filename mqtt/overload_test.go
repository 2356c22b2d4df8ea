package mqtt

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/internal/mqtttest"
)

// behindOnce is a hub whose delivery is behind for the first publish: it
// refuses it as a hub past its publish_wait does.
type behindOnce struct {
	*hub.Hub
	refused atomic.Bool
}

func (b *behindOnce) Publish(ctx context.Context, msgs ...hub.Message) ([]string, error) {
	if b.refused.CompareAndSwap(false, true) {
		return nil, &hub.RetryError{Err: hub.ErrOverloaded, After: time.Second}
	}
	return b.Hub.Publish(ctx, msgs...)
}

func (b *behindOnce) PublishOnce(ctx context.Context, key string, msgs ...hub.Message) ([]string, error) {
	if b.refused.CompareAndSwap(false, true) {
		return nil, &hub.RetryError{Err: hub.ErrOverloaded, After: time.Second}
	}
	return b.Hub.PublishOnce(ctx, key, msgs...)
}

// A hub whose delivery is behind slows the link down instead of losing
// the message: the link retries it, as for a hub that is unavailable.
func TestLinkRetriesWhileHubIsBehind(t *testing.T) {
	b := mqtttest.Embedded(t, mqtttest.Options{})
	h := newHub(t)
	sub := subscribe(t, h, "#")
	l, logs := startLink(t, Config{URL: b.URL(), ClientID: "behind", Subscribe: []Subscription{{Filter: "a", QoS: 1}}}, &behindOnce{Hub: h}, 1024)
	waitStatus(t, l, StatusConnected)
	b.Publish("a", []byte("kept"), 1, false)
	e := waitLog(t, logs, "mqtt message not stored: hub unavailable or behind; retrying")
	if !strings.Contains(fmt.Sprint(e.ContextMap()["error"]), "delivery is behind") {
		t.Errorf("log entry %+v", e)
	}
	if m := next(t, sub); m.Data != "kept" {
		t.Fatalf("hub got %+v, want the message the link retried", m)
	}
	if st := l.State(); st.Dropped != 0 {
		t.Errorf("link dropped %d messages", st.Dropped)
	}
}
