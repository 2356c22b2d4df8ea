package hub

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Publishing with an idempotency key: a publisher that retries after an
// error that left it unsure (a 503 during a failover, a lost answer) sends
// the same key, and gets the first attempt's IDs instead of a second copy.

// IdempotencyWindow is how long a key is remembered after the publish
// that used it.
const IdempotencyWindow = 10 * time.Minute

// maxOnceKeys bounds the keys a hub remembers itself (for brokers that are
// not OncePublishers); past it the oldest are forgotten early.
const maxOnceKeys = 100_000

// ErrInvalidIdempotencyKey is returned for a key that is empty, longer
// than 255 bytes, or holds anything but visible ASCII.
var ErrInvalidIdempotencyKey = errors.New("invalid idempotency key: use 1 to 255 visible ASCII characters, such as a UUID")

// ValidateIdempotencyKey checks a key as PublishOnce does.
func ValidateIdempotencyKey(key string) error {
	if key == "" || len(key) > 255 {
		return ErrInvalidIdempotencyKey
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return ErrInvalidIdempotencyKey
		}
	}
	return nil
}

// OncePublisher is implemented by brokers that remember idempotency keys
// themselves, so that a retry reaching another instance sharing the broker
// is recognised too.
type OncePublisher interface {
	// PublishOnce is Publish, unless a publish with key was accepted
	// within window: then it stores nothing and returns that publish's
	// IDs, and stored false.
	PublishOnce(ctx context.Context, key string, window time.Duration, msgs []Message) (ids []string, stored bool, err error)
}

// PublishOnce is Publish with an idempotency key (ValidateIdempotencyKey):
// when a publish with the same key was accepted within IdempotencyWindow,
// it stores nothing and returns that publish's IDs. Keys belong to the
// hub, whoever sends them, so they must be unique (a UUID). A publish that
// failed does not count: its retry publishes.
func (h *Hub) PublishOnce(ctx context.Context, key string, msgs ...Message) ([]string, error) {
	if err := ValidateIdempotencyKey(key); err != nil {
		return nil, err
	}
	if op, ok := h.broker.(OncePublisher); ok {
		return h.publish(ctx, msgs, func() ([]string, bool, error) {
			return op.PublishOnce(ctx, key, IdempotencyWindow, msgs)
		})
	}
	return h.once.do(key, time.Now(), func() ([]string, error) { return h.Publish(ctx, msgs...) })
}

// onceCache is the keys a hub remembers for a broker that does not.
type onceCache struct {
	mu    sync.Mutex
	keys  map[string]*onceEntry
	order []string // keys by age, oldest first; may hold forgotten ones
}

type onceEntry struct {
	at   time.Time
	done chan struct{} // closed when the publish has returned
	ids  []string
	err  error
}

// do returns the IDs of the publish remembered under key, waiting for it
// if it runs, or runs publish and remembers its IDs if it succeeds.
func (c *onceCache) do(key string, now time.Time, publish func() ([]string, error)) ([]string, error) {
	c.mu.Lock()
	c.forget(now)
	if e, ok := c.keys[key]; ok {
		c.mu.Unlock()
		<-e.done
		return e.ids, e.err
	}
	if c.keys == nil {
		c.keys = make(map[string]*onceEntry)
	}
	e := &onceEntry{at: now, done: make(chan struct{})}
	c.keys[key] = e
	c.order = append(c.order, key)
	c.mu.Unlock()

	e.ids, e.err = publish()
	if e.err != nil {
		c.mu.Lock()
		if c.keys[key] == e {
			delete(c.keys, key)
		}
		c.mu.Unlock()
	}
	close(e.done)
	return e.ids, e.err
}

// forget drops the keys older than the window, and the oldest past
// maxOnceKeys.
func (c *onceCache) forget(now time.Time) {
	drop := 0
	for ; drop < len(c.order); drop++ {
		key := c.order[drop]
		e, ok := c.keys[key]
		if ok && now.Sub(e.at) < IdempotencyWindow && len(c.keys) < maxOnceKeys {
			break
		}
		if ok {
			select {
			case <-e.done:
				delete(c.keys, key)
			default:
				// Still publishing: keep it, and the keys after it.
				c.order = c.order[drop:]
				return
			}
		}
	}
	c.order = c.order[drop:]
	if cap(c.order) > 2*len(c.order)+64 {
		c.order = append([]string(nil), c.order...)
	}
}
