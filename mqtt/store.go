package mqtt

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// A QoS 1 or 2 message is acknowledged to the broker only once the hub has
// stored it: until then the broker's session keeps it. paho's handler must
// not block its reader (keep-alives and acknowledgements go through it),
// and an MQTT 3.1.1 broker sends an unacknowledged message again only when
// the client reconnects. So the handler puts each message on a bounded
// queue, and one goroutine stores them in the order received, retrying
// while the hub is unavailable, and acknowledges each when it is stored:
// acknowledgements leave in the order the messages came, as MQTT requires.
// When the queue is full, the link takes no more messages from the
// connection and does not acknowledge them; once the queued ones are
// stored it disconnects, and the broker sends the others again on the
// next connection, in their order. Reconnecting at once would do no good
// while the hub is down (the queue would fill again with the same
// messages), and disconnecting abruptly would throw away the queue's work
// and lose the last acknowledgements.

// Bounds of the queue of messages received but not yet stored.
const (
	DefaultQueue = 1000
	// DefaultQueueBytes is twice the largest max_message_size: the queue
	// holds a message's payload and its hub data, and a full-size message
	// fits.
	DefaultQueueBytes = 32 << 20
)

// Waits between attempts to store a message while the hub is unavailable.
const (
	storeMinBackoff = 100 * time.Millisecond
	storeMaxBackoff = 2 * time.Second
)

// errQueueFull is why a QoS 0 message is dropped.
var errQueueFull = errors.New("too many messages waiting for the hub")

// errRefused is why the link gives a connection up: it refused some of its
// messages, and stored those it queued.
var errRefused = errors.New("queue was full: reconnecting for the messages left with the broker")

// delivery is a received MQTT message on its way into the hub.
type delivery struct {
	mqtt paho.Message // acknowledged once stored (or dropped)
	conn *connection  // the connection it came on
	msg  hub.Message
	key  string // idempotency key of a QoS 1 or 2 message (onceKey)
	// err, when set, is why msg is not to be stored: the message is only
	// acknowledged, in its turn, so the broker does not send it again.
	err  error
	kind dropKind
	size int64 // bytes held: payload and hub data
}

// queue holds the deliveries for the store loop, in the order received.
type queue struct {
	items    chan delivery
	maxBytes int64
	bytes    atomic.Int64
}

func newQueue(n int, maxBytes int64) *queue {
	return &queue{items: make(chan delivery, n), maxBytes: maxBytes}
}

// push adds d unless that would pass a bound; a message larger than the
// byte bound is taken when the queue holds nothing else.
func (q *queue) push(d delivery) bool {
	if n := q.bytes.Add(d.size); n > q.maxBytes && n > d.size {
		q.bytes.Add(-d.size)
		return false
	}
	select {
	case q.items <- d:
		return true
	default:
		q.bytes.Add(-d.size)
		return false
	}
}

// done releases d's bytes after the store loop is through with it.
func (q *queue) done(d delivery) { q.bytes.Add(-d.size) }

// receive is paho's message handler for connection c. It never blocks:
// it maps the message and queues it for the store loop.
func (l *Link) receive(c *connection, m paho.Message) {
	l.received.Add(1)
	if m.Qos() > 0 && (c.refusing.Load() || c.ctx.Err() != nil) {
		// Queuing it after one was refused would store it out of order,
		// and one whose connection is gone could not be acknowledged:
		// the broker sends them again on the next connection.
		return
	}
	if m.Duplicate() {
		l.redelivered.Add(1)
	}
	d := delivery{mqtt: m, conn: c}
	d.msg, d.kind, d.err = l.message(m.Topic(), m.Payload(), m.Retained())
	if m.Qos() > 0 {
		d.key = l.onceKey(m)
	}
	d.size = int64(len(m.Payload()) + len(d.msg.Data))
	c.pending.Add(1)
	if l.queue.push(d) {
		return
	}
	c.pending.Add(-1)
	if m.Qos() == 0 {
		// No acknowledgement, no second delivery: a QoS 0 message that
		// does not fit is lost.
		l.dropped.Add(1)
		l.warnDrop(dropQueueFull, m.Topic(), errQueueFull)
		return
	}
	c.refusing.Store(true)
	l.log.Warn("mqtt queue full: messages left with the broker until the queued ones are stored",
		zap.Int("queue", cap(l.queue.items)), zap.Int64("queue_bytes", l.queue.maxBytes))
	if c.pending.Load() == 0 {
		c.lose(errRefused)
	}
}

// settled records that one of c's queued messages is through the store
// loop: once none is left after the queue refused one, c is given up.
// The store loop and the handler may both see the last one go; the
// connection takes the first report.
func (c *connection) settled() {
	if c.pending.Add(-1) == 0 && c.refusing.Load() {
		c.lose(errRefused)
	}
}

// store runs the store loop until ctx ends: it takes the deliveries in
// order and stores each before the next.
func (l *Link) store(ctx context.Context) {
	defer close(l.storeDone)
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-l.queue.items:
			l.storeOne(ctx, d)
			l.queue.done(d)
			d.conn.settled()
		}
	}
}

// storeOne publishes d into the hub, retrying with back-off while the hub
// is unavailable, and acknowledges it once stored. It gives a QoS 1 or 2
// message up, unacknowledged, when its connection is gone: the broker
// sends it again on the next one, ahead of anything newer.
func (l *Link) storeOne(ctx context.Context, d delivery) {
	if d.err != nil {
		l.dropped.Add(1)
		l.warnDrop(d.kind, d.mqtt.Topic(), d.err)
		d.mqtt.Ack()
		return
	}
	var gone <-chan struct{}
	if d.mqtt.Qos() > 0 {
		gone = d.conn.ctx.Done()
	}
	b := backoff{min: storeMinBackoff, max: storeMaxBackoff}
	for attempts := 1; ; attempts++ {
		select {
		case <-gone:
			return
		default:
		}
		pctx, cancel := context.WithTimeout(l.lease.fenceOf(ctx, d.conn.token), publishTimeout)
		var err error
		if d.key != "" {
			_, err = l.target.PublishOnce(pctx, d.key, d.msg)
		} else {
			_, err = l.target.Publish(pctx, d.msg)
		}
		cancel()
		switch {
		case err == nil:
			l.published.Add(1)
			d.mqtt.Ack()
			if attempts > 1 {
				l.log.Info("mqtt message stored after the hub came back", zap.Int("attempts", attempts))
			}
			return
		case ctx.Err() != nil:
			return
		case errors.Is(err, hub.ErrFenced):
			// Another instance holds the link now: it receives this
			// message from the session, unacknowledged here.
			l.lease.fence(d.conn.token)
			return
		case !transient(err):
			l.dropped.Add(1)
			l.warnDrop(dropPublish, d.mqtt.Topic(), err)
			d.mqtt.Ack()
			return
		}
		wait := b.next()
		if ok, skipped := l.retryWarn.allow(time.Now()); ok {
			l.log.Warn("mqtt message not stored: hub unavailable or behind; retrying", zap.Error(err),
				zap.Duration("retry_in", wait), zap.Int("waiting", len(l.queue.items)+1), zap.Int("similar_not_logged", skipped))
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-gone:
			t.Stop()
			return
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// transient reports whether a failed publish may succeed later: the hub's
// broker is down, the hub is being replaced by a reload (the broker keeps
// the message for the link of the next config), or its delivery is behind
// (limits publish_wait): waiting is the back-pressure the hub asks for.
func transient(err error) bool {
	return errors.Is(err, hub.ErrUnavailable) || errors.Is(err, hub.ErrHubClosed) ||
		errors.Is(err, hub.ErrShutdown) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, hub.ErrOverloaded)
}

// onceKey is the idempotency key of a QoS 1 or 2 message, from what MQTT
// 3.1.1 lets a receiver recognise a message by: its session (the link's
// lease name: broker and client ID), packet identifier, topic and payload.
// A message the broker sends again (DUP, after a reconnect or when
// another instance resumes the session) keeps its packet identifier, so
// when its first delivery reached the hub (the connection was lost before
// the acknowledgement) the hub answers the first IDs instead of storing
// it twice, within hub.IdempotencyWindow. The broker reuses a packet
// identifier once the message that had it is acknowledged, so two
// distinct messages of one session within the window with the same
// identifier, topic and payload are taken for one: after 65535 others
// with brokers that count identifiers up (mosquitto, mochi), or after the
// broker lost the session.
func (l *Link) onceKey(m paho.Message) string {
	h := sha256.New()
	var id [2]byte
	binary.BigEndian.PutUint16(id[:], m.MessageID())
	h.Write([]byte(l.lease.name))
	h.Write(id[:])
	h.Write([]byte(m.Topic()))
	h.Write([]byte{0})
	h.Write(m.Payload())
	return "mqtt:" + hex.EncodeToString(h.Sum(nil)[:20])
}
