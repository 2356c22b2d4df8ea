package hub

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
)

// SetFilters switches at the hub's head: what was queued before stays,
// later messages follow the new filters, none is lost or repeated.
func TestSetFiltersSwitchesAtHead(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 16, Retention: Retention{Count: 100}})
	s := subscribe(t, h, "a")
	a1 := publish(t, h, "a", "a1")
	publish(t, h, "b", "b0") // not matched yet

	head, queued, err := s.SetFilters([]string{"a", "b"})
	if err != nil || head != h.Head() || queued != 1 {
		t.Fatalf("SetFilters: head %q queued %d err %v; want head %q, 1 queued", head, queued, err, h.Head())
	}
	b1 := publish(t, h, "b", "b1")
	a2 := publish(t, h, "a", "a2")
	var got []string
	for range 3 {
		got = append(got, recv(t, s).ID)
	}
	if want := []string{a1, b1, a2}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	assertNoMessage(t, s)
	if !slices.Equal(s.Filters(), []string{"a", "b"}) {
		t.Fatalf("Filters() = %q", s.Filters())
	}
}

// Overlapping new filters still queue a message once; removed ones stop
// matching, and Close prunes what SetFilters added.
func TestSetFiltersOverlapAndRemoval(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 16})
	s := subscribe(t, h, "x")
	if _, _, err := s.SetFilters([]string{"a", "a/#", "+", "#"}); err != nil {
		t.Fatal(err)
	}
	id := publish(t, h, "a", "once")
	if m := recv(t, s); m.ID != id {
		t.Fatalf("got %s, want %s", m.ID, id)
	}
	assertNoMessage(t, s)

	if _, _, err := s.SetFilters([]string{"b"}); err != nil {
		t.Fatal(err)
	}
	publish(t, h, "a", "gone")
	publish(t, h, "x", "gone too")
	assertNoMessage(t, s)
	s.Close()
	assertIndexEmpty(t, h)
}

func TestSetFiltersRejects(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 4})
	s := subscribe(t, h, "a")
	for _, filters := range [][]string{nil, {"a/#/b"}, {"ok", "a+"}} {
		if _, _, err := s.SetFilters(filters); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("SetFilters(%q) = %v, want ErrInvalidTopic", filters, err)
		}
	}
	if !slices.Equal(s.Filters(), []string{"a"}) {
		t.Fatalf("a rejected change altered the filters: %q", s.Filters())
	}
	s.Close()
	if _, _, err := s.SetFilters([]string{"b"}); err == nil {
		t.Fatal("SetFilters after Close succeeded")
	}
	assertIndexEmpty(t, h)
}

// A topic kept while the filters change under concurrent publishing gets
// every one of its messages exactly once, in order.
func TestSetFiltersUnderConcurrentPublish(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 4096})
	s := subscribe(t, h, "keep")
	const n = 2000
	ids := make([]string, n)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range ids {
			got, err := h.Publish(context.Background(), Message{Topic: "keep", Data: strconv.Itoa(i)})
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = got[0]
		}
	})
	wg.Go(func() {
		sets := [][]string{{"keep", "keep/#", "other"}, {"keep"}, {"#"}, {"+", "keep"}}
		for i := range 500 {
			if _, _, err := s.SetFilters(sets[i%len(sets)]); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	var got []string
	for range n {
		got = append(got, recv(t, s).ID)
	}
	assertNoMessage(t, s)
	if !slices.Equal(got, ids) {
		t.Fatalf("kept topic got %s, want %s", abbreviate(got), abbreviate(ids))
	}
}

// History reads the broker's retained messages between two IDs, with a
// gap for an ID it no longer covers.
func TestHistory(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 4, Retention: Retention{Count: 1}})
	id1 := publish(t, h, "a", "1")
	id2 := publish(t, h, "b", "2")
	id3 := publish(t, h, "a", "3")

	page, err := h.History(context.Background(), all(id2, id3))
	msgs, gap := page.Messages, page.Gap
	if err != nil || gap != nil || !slices.Equal(ids(msgs), []string{id3}) {
		t.Fatalf("History(%s, %s) = %v, %+v, %v", id2, id3, ids(msgs), gap, err)
	}
	page, err = h.History(context.Background(), all(id1, id3))
	msgs, gap = page.Messages, page.Gap
	want := &Gap{LastID: id1, FirstID: id3}
	if err != nil || !equalGap(gap, want) || !slices.Equal(ids(msgs), []string{id3}) {
		t.Fatalf("History(%s, %s) = %v, %+v, %v; want [%s] and gap %+v", id1, id3, ids(msgs), gap, err, id3, *want)
	}
}
