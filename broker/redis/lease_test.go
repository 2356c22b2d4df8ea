package redis_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/broker/redis"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// One instance at a time holds a lease; each acquisition has a greater
// token; a holder whose lease was taken over can neither renew it nor
// publish (fencing), also with an idempotency key, while the new holder
// publishes; a release wakes a waiting instance at once. On every shape
// of Redis: on a Cluster the lease keys share the stream's slot.
func TestLeaseFencing(t *testing.T) {
	for _, deployment := range deployments {
		t.Run(deployment.name, func(t *testing.T) {
			cfg := withStream(deployment.start(t))
			open := func() *redis.Broker {
				b, err := redis.New(cfg, hub.Retention{Count: 100})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = b.Close() })
				return b
			}
			leaseFencing(t, open(), open())
		})
	}
}

func leaseFencing(t *testing.T, a, b *redis.Broker) {
	ctx := context.Background()
	const ttl = 300 * time.Millisecond
	la, err := a.AcquireLease(ctx, "link1", "instance-a", ttl)
	if err != nil || la.Holder != "instance-a" || la.Token == 0 {
		t.Fatalf("first acquisition: %+v, %v", la, err)
	}
	lb, err := b.AcquireLease(ctx, "link1", "instance-b", ttl)
	if err != nil || lb.Holder != "instance-a" || lb.Token != la.Token || lb.Expires.IsZero() {
		t.Fatalf("acquisition while a holds it: %+v, %v; want a's lease seen", lb, err)
	}
	fenceA := hub.WithFence(ctx, hub.Fence{Lease: "link1", Token: la.Token})
	if _, err := a.Publish(fenceA, []hub.Message{{Topic: "t", Data: "from a, holding"}}); err != nil {
		t.Fatalf("holder's publish: %v", err)
	}

	// a is paused past its lease; b takes it over.
	testserver.Eventually(t, "b acquires the expired lease", func() bool {
		lb, err = b.AcquireLease(ctx, "link1", "instance-b", time.Minute)
		return err == nil && lb.Holder == "instance-b"
	})
	if lb.Token <= la.Token {
		t.Fatalf("token of the takeover %d, not above the first %d", lb.Token, la.Token)
	}
	if ok, err := a.RenewLease(ctx, la, ttl); ok || err != nil {
		t.Fatalf("old holder renewed: %v, %v", ok, err)
	}
	_, err = a.Publish(fenceA, []hub.Message{{Topic: "t", Data: "from a, woken up"}})
	if !errors.Is(err, hub.ErrFenced) {
		t.Fatalf("old holder's publish: %v, want ErrFenced", err)
	}
	_, _, err = a.PublishOnce(fenceA, "key-1", time.Minute, []hub.Message{{Topic: "t", Data: "from a, with a key"}})
	if !errors.Is(err, hub.ErrFenced) {
		t.Fatalf("old holder's publish with a key: %v, want ErrFenced", err)
	}
	fenceB := hub.WithFence(ctx, hub.Fence{Lease: "link1", Token: lb.Token})
	ids, _, err := b.PublishOnce(fenceB, "key-1", time.Minute, []hub.Message{{Topic: "t", Data: "from b"}})
	if err != nil {
		t.Fatalf("new holder's publish: %v", err)
	}
	page, err := b.Since(ctx, hub.Query{After: hub.Earliest, Upto: ids[0]})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range page.Messages {
		got = append(got, m.Data)
	}
	if len(got) != 2 || got[0] != "from a, holding" || got[1] != "from b" {
		t.Fatalf("stream holds %q, want the holder's message and the new holder's only", got)
	}

	// A release wakes a waiting instance at once, which then acquires.
	waited := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		_ = a.AwaitLease(ctx, "link1", 20*time.Second)
		waited <- time.Since(start)
	}()
	time.Sleep(100 * time.Millisecond) // let the wait begin; an early release only makes it return at once
	if err := b.ReleaseLease(ctx, lb); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-waited:
		t.Logf("waiting instance woke %s after the release began", d)
	case <-time.After(5 * time.Second):
		t.Fatal("release did not wake the waiting instance")
	}
	la2, err := a.AcquireLease(ctx, "link1", "instance-a", ttl)
	if err != nil || la2.Holder != "instance-a" || la2.Token <= lb.Token {
		t.Fatalf("acquisition after the release: %+v, %v", la2, err)
	}
	if _, err := a.Publish(fenceB, []hub.Message{{Topic: "t", Data: "from b, released"}}); !errors.Is(err, hub.ErrFenced) {
		t.Fatalf("publish under a released lease: %v, want ErrFenced", err)
	}
}
