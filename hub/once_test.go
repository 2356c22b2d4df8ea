package hub

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// A key repeated within the window returns the first publish's IDs and
// stores nothing; concurrent repeats wait for the first; a failed publish
// is not remembered; past the window the key publishes again.
func TestPublishOnceInTheHub(t *testing.T) {
	h := New(NewMemoryBroker(Retention{Count: 100}), Options{Queue: 8})
	defer h.Close()
	ctx := context.Background()
	msg := Message{Topic: "t", Data: "x"}

	var wg sync.WaitGroup
	got := make([][]string, 8)
	for i := range got {
		wg.Go(func() {
			ids, err := h.PublishOnce(ctx, "k-1", msg)
			if err != nil {
				t.Error(err)
			}
			got[i] = ids
		})
	}
	wg.Wait()
	for _, ids := range got[1:] {
		if !slices.Equal(ids, got[0]) {
			t.Fatalf("repeats of one key got %v and %v", got[0], ids)
		}
	}
	if n := h.Stats().Published; n != 1 {
		t.Fatalf("%d messages stored for one key, want 1", n)
	}
	other, err := h.PublishOnce(ctx, "k-2", msg)
	if err != nil || slices.Equal(other, got[0]) {
		t.Fatalf("another key: %v %v", other, err)
	}

	// Invalid keys fail.
	for _, key := range []string{"", "has space", strings.Repeat("k", 256), "é"} {
		if _, err := h.PublishOnce(ctx, key, msg); !errors.Is(err, ErrInvalidIdempotencyKey) {
			t.Errorf("key %q: %v", key, err)
		}
	}

	// The window, on the cache itself.
	var c onceCache
	calls := 0
	publish := func() ([]string, error) { calls++; return []string{"id"}, nil }
	fail := func() ([]string, error) { calls++; return nil, ErrUnavailable }
	now := time.Now()
	if _, err := c.do("a", now, fail); !errors.Is(err, ErrUnavailable) {
		t.Fatal(err)
	}
	c.do("a", now, publish)
	c.do("a", now.Add(IdempotencyWindow-time.Second), publish)
	if calls != 2 {
		t.Fatalf("%d publishes, want the failed one and one more", calls)
	}
	c.do("a", now.Add(IdempotencyWindow+time.Second), publish)
	if calls != 3 || len(c.keys) != 1 {
		t.Fatalf("past the window: %d publishes, %d keys; want 3 and 1", calls, len(c.keys))
	}
}
