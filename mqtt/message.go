package mqtt

import (
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

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
	dropQueueFull
	dropKinds
)

// warnEvery bounds the drop warnings: at most one per kind this often,
// with the count of those left out in between.
const warnEvery = 10 * time.Second

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
	dropTooLarge:  "mqtt message dropped: too large",
	dropBadTopic:  "mqtt message dropped: topic",
	dropPublish:   "mqtt message dropped: hub publish failed",
	dropQueueFull: "mqtt message dropped: QoS 0 and too many messages waiting for the hub",
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
