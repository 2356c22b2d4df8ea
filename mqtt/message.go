package mqtt

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	paho "github.com/eclipse/paho.mqtt.golang"
	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// Event names a link gives hub messages. A UTF-8 payload is the data as
// is; any other payload is base64 (standard alphabet, padded). Retained
// messages (the broker's current value of a topic, sent when the link
// subscribes) are flagged so a dashboard can tell them from live updates.
const (
	EventBase64         = "base64"
	EventRetained       = "retained"
	EventRetainedBase64 = "retained-base64"
)

// reservedLevel is the first topic level of the hub's own events, which an
// MQTT topic must not reach.
const reservedLevel = "$pubsub"

// Why a message was dropped; each kind has its own rate-limited warning.
type dropKind int

const (
	dropTooLarge dropKind = iota
	dropBadTopic
	dropPublish
	dropKinds
)

// warnEvery bounds the drop warnings: at most one per kind this often,
// with the count of those left out in between.
const warnEvery = 10 * time.Second

// receive is paho's message handler: it publishes m into the hub. paho
// acknowledges a QoS 1 message after this returns.
func (l *Link) receive(_ paho.Client, m paho.Message) {
	l.received.Add(1)
	msg, kind, err := l.message(m.Topic(), m.Payload(), m.Retained())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
		_, err = l.target.Publish(ctx, msg)
		cancel()
		kind = dropPublish
	}
	if err != nil {
		l.dropped.Add(1)
		l.warnDrop(kind, m.Topic(), err)
		return
	}
	l.published.Add(1)
}

// message maps an MQTT message to a hub message.
func (l *Link) message(topic string, payload []byte, retained bool) (hub.Message, dropKind, error) {
	t := l.cfg.Prefix + topic
	if err := hub.ValidateTopic(t); err != nil {
		return hub.Message{}, dropBadTopic, fmt.Errorf("not a valid hub topic: %w", err)
	}
	if first, _, _ := strings.Cut(t, "/"); first == reservedLevel {
		return hub.Message{}, dropBadTopic, fmt.Errorf("topic level %s is reserved for the hub's own events", reservedLevel)
	}
	text := utf8.Valid(payload)
	size := int64(len(payload))
	if !text {
		size = int64(base64.StdEncoding.EncodedLen(len(payload)))
	}
	if limit := l.opts.MaxMessageSize; limit > 0 && size > limit {
		return hub.Message{}, dropTooLarge, fmt.Errorf("%d bytes, larger than max_message_size (%d bytes)", size, limit)
	}
	msg := hub.Message{Topic: t}
	switch {
	case text && retained:
		msg.Data, msg.Event = string(payload), EventRetained
	case text:
		msg.Data = string(payload)
	case retained:
		msg.Data, msg.Event = base64.StdEncoding.EncodeToString(payload), EventRetainedBase64
	default:
		msg.Data, msg.Event = base64.StdEncoding.EncodeToString(payload), EventBase64
	}
	return msg, 0, nil
}

var dropMessages = [dropKinds]string{
	dropTooLarge: "mqtt message dropped: too large",
	dropBadTopic: "mqtt message dropped: topic",
	dropPublish:  "mqtt message dropped: hub publish failed",
}

// warnDrop logs a dropped message, at most once per kind per warnEvery.
func (l *Link) warnDrop(kind dropKind, topic string, err error) {
	ok, skipped := l.warnings[kind].allow(time.Now())
	if !ok {
		return
	}
	if len(topic) > 128 {
		topic = strings.ToValidUTF8(topic[:128], "") + "…"
	}
	l.log.Warn(dropMessages[kind], zap.String("mqtt_topic", topic), zap.Error(err), zap.Int("similar_not_logged", skipped))
}

// warnLimiter lets one warning through per warnEvery and counts the rest.
type warnLimiter struct {
	mu      sync.Mutex
	next    time.Time
	skipped int
}

// allow reports whether to log now, and how many were held back since
// the last one that was.
func (w *warnLimiter) allow(now time.Time) (bool, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if now.Before(w.next) {
		w.skipped++
		return false, 0
	}
	skipped := w.skipped
	w.next, w.skipped = now.Add(warnEvery), 0
	return true, skipped
}
