package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// Signals (presence events) travel on a Redis pub/sub channel beside the
// stream, not in it: they take no room in the stream or in history, and
// every instance subscribed at the time gets them. Pub/sub channels are
// shared by all of a server's databases, so the channel names the
// database as well as the stream.
const (
	// maxSignalPayload bounds one signal read from the channel; larger
	// ones (not written by this broker) are dropped unread.
	maxSignalPayload = 64 << 10
	// signalBuffer is how many received signals may wait for the hub.
	signalBuffer = 256
)

// signals is the broker's pub/sub subscription.
type signals struct {
	mu     sync.Mutex
	ps     *goredis.PubSub
	cancel context.CancelFunc // ends the first subscribe, when Close comes first
	done   chan struct{}      // closed when the listener has returned
}

// signalEntry is a signal on the channel, as JSON, versioned as stream
// entries are (format.go).
type signalEntry struct {
	V     uint64 `json:"v"` // format version; 0 (missing): 1
	Topic string `json:"topic"`
	Event string `json:"event,omitempty"`
	Data  string `json:"data"`
	Time  int64  `json:"time"` // Unix milliseconds
}

// signalChannel is the pub/sub channel of the broker's signals.
func (b *Broker) signalChannel() string {
	return b.stream + ":signals:" + strconv.Itoa(b.client.db)
}

// subscribeWait bounds how long StartSignals waits for Redis to confirm
// the subscription.
const subscribeWait = 2 * time.Second

// StartSignals implements hub.Signaler: it subscribes to the channel and
// hands what arrives to signal. It waits for Redis to confirm the
// subscription, so the signals sent after it returns reach this instance
// too (with Cluster, the channel's node may be another than the one a
// signal is published on), but no longer than subscribeWait: while Redis
// is out of reach go-redis connects, and subscribes again after an outage,
// on its own.
func (b *Broker) StartSignals(signal func(*hub.Message)) error {
	b.sig.mu.Lock()
	defer b.sig.mu.Unlock()
	if b.sig.done != nil {
		return errors.New("redis broker: signals started twice")
	}
	ctx, cancel := context.WithCancel(context.Background())
	subscribe := b.client.Subscribe
	if b.client.cluster {
		subscribe = b.client.SSubscribe
	}
	ps := subscribe(ctx, b.signalChannel())
	wait, stop := context.WithTimeout(ctx, subscribeWait)
	if _, err := ps.Receive(wait); err != nil {
		b.logger.Debug("subscribing to the signal channel", zap.Error(err))
	}
	stop()
	b.sig.ps, b.sig.cancel = ps, cancel
	b.sig.done = make(chan struct{})
	go b.listen(ps, signal)
	return nil
}

// listen hands each valid signal to signal until ps is closed.
func (b *Broker) listen(ps *goredis.PubSub, signal func(*hub.Message)) {
	defer close(b.sig.done)
	for msg := range ps.Channel(goredis.WithChannelSize(signalBuffer)) {
		m, version, ok := decodeSignal(msg.Payload)
		b.newerFormat("signals", version)
		if ok {
			signal(m)
		}
	}
}

// decodeSignal decodes one signal; ok is false for anything this broker
// would not have written and for signals of a format version newer than
// formatVersion. version is the signal's format version, 0 when it has
// none that parses.
func decodeSignal(payload string) (m *hub.Message, version uint64, ok bool) {
	if len(payload) > maxSignalPayload {
		return nil, 0, false
	}
	var e signalEntry
	if err := json.Unmarshal([]byte(payload), &e); err != nil {
		// A newer format may give a member another type: say which
		// version it is rather than calling it invalid.
		var head struct {
			V uint64 `json:"v"`
		}
		if json.Unmarshal([]byte(payload), &head) == nil && head.V > formatVersion && head.V <= maxVersion {
			return nil, head.V, false
		}
		return nil, 0, false
	}
	if e.V > maxVersion {
		return nil, 0, false
	}
	version = max(e.V, 1)
	if version > formatVersion || hub.ValidateTopic(e.Topic) != nil || e.Time < 0 {
		return nil, version, false
	}
	return &hub.Message{Topic: e.Topic, Event: e.Event, Data: e.Data, Time: time.UnixMilli(e.Time)}, version, true
}

// Signal implements hub.Signaler: one PUBLISH per message, in one round
// trip, in order.
func (b *Broker) Signal(ctx context.Context, msgs []hub.Message) error {
	pipe := b.client.Pipeline()
	channel := b.signalChannel()
	for _, m := range msgs {
		payload, _ := json.Marshal(signalEntry{V: textVersion, Topic: m.Topic, Event: m.Event, Data: m.Data, Time: m.Time.UnixMilli()})
		if len(payload) > maxSignalPayload {
			return fmt.Errorf("redis broker: signal on %s: %d bytes, more than %d", m.Topic, len(payload), maxSignalPayload)
		}
		if b.client.cluster {
			pipe.SPublish(ctx, channel, payload)
		} else {
			pipe.Publish(ctx, channel, payload)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("redis broker: signalling on %s: %w", channel, err)
		}
		return fmt.Errorf("redis broker: signalling on %s: %w: %v", channel, hub.ErrUnavailable, err)
	}
	return nil
}

// stopSignals closes the subscription and waits for the listener.
func (b *Broker) stopSignals() {
	b.sig.mu.Lock()
	ps, cancel, done := b.sig.ps, b.sig.cancel, b.sig.done
	b.sig.mu.Unlock()
	if ps == nil {
		return
	}
	cancel()
	_ = ps.Close()
	<-done
}
