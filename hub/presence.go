package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"
)

// Presence topics: with Options.Presence the hub publishes an event to
// them whenever a subscription begins, grows, shrinks or ends. Being "$"
// topics, no first-level wildcard matches them: watchers subscribe to them
// by name ("$pubsub/#").
const (
	PresenceSubscribe   = "$pubsub/subscribe"
	PresenceUnsubscribe = "$pubsub/unsubscribe"
)

const (
	// presenceQueue bounds the events waiting to be published; beyond it
	// they are dropped (and counted), never slowing subscribers down.
	presenceQueue = 1024
	// presenceBatch caps the events published in one broker call.
	presenceBatch = 100
	// presenceTimeout bounds one publish of events.
	presenceTimeout = 5 * time.Second
)

// PresenceEvent is the data of a presence message, as JSON.
type PresenceEvent struct {
	// ID names the subscription (one connection's subscription: a
	// WebSocket that drops all its topics and subscribes again gets a new
	// one). It carries no address or token.
	ID        string   `json:"id"`
	Transport string   `json:"transport"`
	Topics    []string `json:"topics"`
}

// presence publishes a hub's subscription events from its own goroutine:
// the hub queues them with its lock held, where it cannot publish (a
// broker may be delivering under that same lock).
type presence struct {
	events chan Message
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// setPresence starts or stops publishing presence events.
func (h *Hub) setPresence(on bool) {
	h.mu.Lock()
	old := h.obs.presence
	if on == (old != nil) || (on && h.closed) {
		h.mu.Unlock()
		return
	}
	h.obs.presence = nil
	if on {
		if h.obs.idPrefix == "" {
			var b [4]byte
			_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
			h.obs.idPrefix = hex.EncodeToString(b[:])
		}
		ctx, cancel := context.WithCancel(context.Background())
		p := &presence{events: make(chan Message, presenceQueue), ctx: ctx, cancel: cancel, done: make(chan struct{})}
		h.obs.presence = p
		go p.run(h)
	}
	h.mu.Unlock()
	old.stop()
}

// stopPresence stops publishing presence events; called by Close.
func (h *Hub) stopPresence() {
	h.mu.Lock()
	p := h.obs.presence
	h.obs.presence = nil
	h.mu.Unlock()
	p.stop()
}

// stop ends the goroutine and waits for it; events still queued are
// dropped. The caller must not hold the hub's lock.
func (p *presence) stop() {
	if p == nil {
		return
	}
	p.cancel()
	<-p.done
}

// announce queues a presence event for s on topic about filters, leaving
// out "$" filters (watchers do not announce themselves). h.mu is held.
func (h *Hub) announce(s *Subscriber, topic string, filters []string) {
	p := h.obs.presence
	if p == nil || s.client.Quiet {
		return
	}
	var topics []string
	for _, f := range filters {
		if !strings.HasPrefix(f, "$") {
			topics = append(topics, f)
		}
	}
	if len(topics) == 0 {
		return
	}
	data, _ := json.Marshal(PresenceEvent{ID: h.subscriptionID(s), Transport: s.client.Transport, Topics: topics})
	select {
	case p.events <- Message{Topic: topic, Data: string(data)}:
	default:
		h.obs.presenceDropped.Add(1)
	}
}

// run publishes queued events, in order, in batches, until stopped.
func (p *presence) run(h *Hub) {
	defer close(p.done)
	batch := make([]Message, 0, presenceBatch)
	for {
		batch = batch[:0]
		select {
		case <-p.ctx.Done():
			return
		case m := <-p.events:
			batch = append(batch, m)
		}
	more:
		for len(batch) < presenceBatch {
			select {
			case m := <-p.events:
				batch = append(batch, m)
			default:
				break more
			}
		}
		ctx, cancel := context.WithTimeout(p.ctx, presenceTimeout)
		if _, err := h.Publish(ctx, batch...); err != nil {
			h.obs.presenceDropped.Add(uint64(len(batch)))
		}
		cancel()
	}
}
