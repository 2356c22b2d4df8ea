package hub

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// Back-pressure on publishers. Two mechanisms, both checked before the
// broker stores anything, so a refused publish left no message behind and
// may be sent again as it was:
//
//   - the backlog bound: once the oldest message waiting for the fan-out is
//     older than Options.PublishWait, a publish waits for the fan-out to
//     catch up, at most PublishWait, then fails with ErrOverloaded. The
//     fan-out's delay, not the count of messages behind it, is what
//     subscribers feel, so that is what is bounded;
//   - the publisher rate: each publisher (WithPublisher) has a token bucket
//     of Options.PublishRate messages a second; over it a publish fails at
//     once with ErrRateLimited. One publisher that floods spends its own
//     tokens and, as its publishes are refused before they wait, holds no
//     place in the backlog the others need.

// Reasons a publish is refused for back-pressure; both come wrapped in a
// *RetryError saying when to try again.
var (
	ErrOverloaded  = errors.New("delivery is behind")
	ErrRateLimited = errors.New("publish rate exceeded")
)

// RetryError is a publish refused for back-pressure: Err is ErrOverloaded
// or ErrRateLimited, After the time to wait before trying again.
type RetryError struct {
	Err   error
	After time.Duration
}

func (e *RetryError) Error() string {
	return fmt.Sprintf("%v: retry in %v", e.Err, e.After.Round(time.Millisecond))
}

func (e *RetryError) Unwrap() error { return e.Err }

// Bounds of the publisher table: past maxPublishers tracked, publishers
// whose bucket has refilled (idle ones, which lose nothing by being
// forgotten) are dropped, and if none has, an arbitrary one is.
const maxPublishers = 10_000

type publisherKey struct{}

// WithPublisher returns ctx naming the publisher of the publishes made
// with it, for Options.PublishRate: a key's name, a token's subject, a
// client address. A publish without one is not rate-limited.
func WithPublisher(ctx context.Context, publisher string) context.Context {
	return context.WithValue(ctx, publisherKey{}, publisher)
}

// rates holds a token bucket per publisher.
type rates struct {
	mu      sync.Mutex
	rate    float64 // tokens a second; 0: no limit
	burst   float64
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time // when tokens was last brought up to date
}

func (r *rates) setLimits(opts Options) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rate = opts.PublishRate
	r.burst = float64(max(1, opts.PublishBurst))
	if r.rate == 0 {
		r.buckets = nil
	}
}

// take takes n tokens from publisher's bucket at now, or reports how long
// until there are enough. A batch larger than the burst costs the burst: it
// waits for a full bucket rather than never passing.
func (r *rates) take(publisher string, n int, now time.Time) (wait time.Duration, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rate == 0 || publisher == "" {
		return 0, true
	}
	cost := min(float64(n), r.burst)
	b := r.buckets[publisher]
	if b == nil {
		if r.buckets == nil {
			r.buckets = make(map[string]*bucket)
		}
		if len(r.buckets) >= maxPublishers {
			r.evict(now)
		}
		b = &bucket{tokens: r.burst, at: now}
		r.buckets[publisher] = b
	}
	b.tokens = min(r.burst, b.tokens+now.Sub(b.at).Seconds()*r.rate)
	b.at = now
	if b.tokens < cost {
		return time.Duration(math.Ceil((cost - b.tokens) / r.rate * float64(time.Second))), false
	}
	b.tokens -= cost
	return 0, true
}

// evict makes room in a full table: it drops every bucket that has refilled
// by now, or, if none has, one bucket. r.mu is held.
func (r *rates) evict(now time.Time) {
	for k, b := range r.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*r.rate >= r.burst {
			delete(r.buckets, k)
		}
	}
	for k := range r.buckets {
		if len(r.buckets) < maxPublishers {
			return
		}
		delete(r.buckets, k)
	}
}

// admitPublish applies the publisher's rate, then the backlog bound, to a
// publish of n messages.
func (h *Hub) admitPublish(ctx context.Context, n int) error {
	publisher, _ := ctx.Value(publisherKey{}).(string)
	if wait, ok := h.rates.take(publisher, n, time.Now()); !ok {
		h.obs.rateLimited.Add(uint64(n))
		return &RetryError{Err: ErrRateLimited, After: wait}
	}
	err := h.waitBacklog(ctx)
	if errors.Is(err, ErrOverloaded) {
		h.obs.overloaded.Add(uint64(n))
	}
	return err
}

// waitBacklog returns once the oldest message waiting for the fan-out is
// at most PublishWait old, or fails with ErrOverloaded when it still is
// after waiting PublishWait.
func (h *Hub) waitBacklog(ctx context.Context) error {
	limit := time.Duration(h.publishWait.Load())
	if limit <= 0 {
		return nil
	}
	f := &h.fan
	var deadline <-chan time.Time
	for {
		f.mu.Lock()
		age := f.backlogAge(clock())
		if age <= limit || f.stopped {
			f.mu.Unlock()
			return nil
		}
		if f.room == nil {
			f.room = make(chan struct{})
		}
		room := f.room
		f.mu.Unlock()
		if deadline == nil {
			t := time.NewTimer(limit)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-room:
		case <-deadline:
			return &RetryError{Err: ErrOverloaded, After: max(time.Second, age-limit)}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// epoch is what clock counts from: time.Since reads the monotonic clock,
// which wall-clock steps do not move.
var epoch = time.Now()

// clock is the monotonic time now, as a count a Message can keep in 8
// bytes. A variable, so that a test can age the backlog without waiting.
var clock = func() time.Duration { return time.Since(epoch) }

// DefaultPublishWait is the default of Options.PublishWait.
const DefaultPublishWait = 2 * time.Second

// publishWaitOf is the PublishWait a hub applies.
func publishWaitOf(opts Options) time.Duration {
	if opts.PublishWait == 0 {
		return DefaultPublishWait
	}
	return opts.PublishWait
}
