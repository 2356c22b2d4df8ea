package hub

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// ageBacklog moves the hub's clock forward by d for the rest of the test.
func ageBacklog(t *testing.T, d time.Duration) {
	real := clock
	clock = func() time.Duration { return real() + d }
	t.Cleanup(func() { clock = real })
}

// A publish meeting a backlog older than PublishWait waits at most
// PublishWait and fails with ErrOverloaded, storing nothing; once the
// fan-out catches up, a waiting publish goes through without waiting for
// its deadline, and every message stored is delivered in order.
func TestPublishWaitsForBacklog(t *testing.T) {
	const wait = 200 * time.Millisecond
	h, _ := newTestHub(t, Options{Queue: 100, PublishWait: wait})
	s := subscribe(t, h, "stall")
	entered, release := stallFanOut(t, h)
	publish(t, h, "stall", "1")
	<-entered
	publish(t, h, "stall", "2") // the fan-out is stuck: this one waits in pending
	ageBacklog(t, time.Hour)

	start := time.Now()
	_, err := h.Publish(context.Background(), Message{Topic: "stall", Data: "refused"})
	took := time.Since(start)
	var re *RetryError
	if !errors.Is(err, ErrOverloaded) || !errors.As(err, &re) || re.After < time.Second {
		t.Fatalf("publish over an old backlog: %v, want ErrOverloaded with a retry of at least 1s", err)
	}
	if took < wait || took > wait+time.Second {
		t.Fatalf("refused after %v, want after PublishWait (%v) and soon after", took, wait)
	}
	if n := h.obs.overloaded.Load(); n != 1 {
		t.Fatalf("%d messages counted overloaded, want 1", n)
	}

	// SetOptions would wait for the stuck fan-out (presence takes h.mu).
	h.publishWait.Store(int64(time.Minute))
	done := make(chan error, 1)
	go func() {
		_, err := h.Publish(context.Background(), Message{Topic: "stall", Data: "3"})
		done <- err
	}()
	release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("publish waiting while the fan-out catches up: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("a publish waiting for the backlog was not let through when it drained")
	}
	for _, want := range []string{"1", "2", "3"} {
		if m := recv(t, s); m.Data != want {
			t.Fatalf("got %q, want %q: the refused publish must not be stored", m.Data, want)
		}
	}
}

// A negative PublishWait leaves the backlog unbounded in age.
func TestPublishWaitOff(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 100, PublishWait: -1})
	entered, _ := stallFanOut(t, h)
	publish(t, h, "stall", "1")
	<-entered
	publish(t, h, "stall", "2")
	ageBacklog(t, time.Hour)
	publish(t, h, "stall", "3")
}

// Each publisher has its own bucket: one over its rate is refused with a
// retry time while another publishes; a batch counts each message; a
// publish naming no publisher is not limited.
func TestPublishRate(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 100, PublishRate: 1, PublishBurst: 3})
	heavy := WithPublisher(context.Background(), "heavy")
	light := WithPublisher(context.Background(), "light")
	msg := Message{Topic: "a", Data: "x"}
	if _, err := h.Publish(heavy, msg, msg, msg); err != nil {
		t.Fatalf("a batch of the burst: %v", err)
	}
	_, err := h.Publish(heavy, msg)
	var re *RetryError
	if !errors.Is(err, ErrRateLimited) || !errors.As(err, &re) || re.After <= 0 || re.After > time.Second {
		t.Fatalf("over the rate: %v, want ErrRateLimited with a retry within 1s", err)
	}
	if st := h.Stats(); st.RateLimited != 1 || st.Overloaded != 0 {
		t.Fatalf("Stats: rate limited %d, overloaded %d; want 1, 0", st.RateLimited, st.Overloaded)
	}
	if _, err := h.Publish(light, msg); err != nil {
		t.Fatalf("another publisher: %v", err)
	}
	for range 10 {
		if _, err := h.Publish(context.Background(), msg); err != nil {
			t.Fatalf("no publisher named: %v", err)
		}
	}
}

// The table of publishers stays bounded, and a publisher dropped from it
// loses nothing but its debt.
func TestPublishRateTableBounded(t *testing.T) {
	var r rates
	r.setLimits(Options{PublishRate: 1, PublishBurst: 1})
	now := time.Now()
	for i := range maxPublishers + 100 {
		if _, ok := r.take(fmt.Sprint(i), 1, now); !ok {
			t.Fatalf("publisher %d refused its first message", i)
		}
	}
	if n := len(r.buckets); n > maxPublishers {
		t.Fatalf("%d publishers tracked, want at most %d", n, maxPublishers)
	}
	later := now.Add(2 * time.Second)
	if _, ok := r.take("new", 1, later); !ok {
		t.Fatal("a new publisher was refused")
	}
	if n := len(r.buckets); n != 1 {
		t.Fatalf("after every bucket refilled: %d tracked, want only the new one", n)
	}
}
