package hub

import (
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestIndexMatchesLikeMatch checks the trie against the brute-force rule:
// every filter registered once, by its own subscriber, is visited exactly
// when Match says so, and exactly once.
func TestIndexMatchesLikeMatch(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var ix index
	filterOf := make(map[*Subscriber]string)
	for range 500 {
		f := randomFilter(r)
		if err := ValidateFilter(f); err != nil {
			t.Fatalf("generated invalid filter %q: %v", f, err)
		}
		s := &Subscriber{}
		filterOf[s] = f
		ix.add(f, s)
	}
	var matches, dollarMatches, misses int
	for range 2000 {
		topic := randomTopic(r)
		visits := make(map[*Subscriber]int)
		ix.match(topic, func(s *Subscriber) { visits[s]++ })
		for s, f := range filterOf {
			want := 0
			if Match(f, topic) {
				want = 1
				matches++
				if strings.HasPrefix(topic, "$") {
					dollarMatches++
				}
			} else {
				misses++
			}
			if visits[s] != want {
				t.Fatalf("topic %q, filter %q: index visited %d times, Match says %v", topic, f, visits[s], want == 1)
			}
		}
	}
	// Guard against a generator that makes the property vacuous.
	if matches < 10_000 || dollarMatches < 100 || misses < 10_000 {
		t.Fatalf("weak sample: %d matches (%d on $ topics), %d misses", matches, dollarMatches, misses)
	}
}

// TestHubDeliversWhatMatchSays is the property test through the Hub: many
// subscribers with one to three random filters each, many random topics,
// and each message reaches exactly the subscribers with a matching filter,
// once.
func TestHubDeliversWhatMatchSays(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	h, _ := newTestHub(t, Options{Queue: 4})
	var subs []*Subscriber
	for range 300 {
		filters := make([]string, 1+r.IntN(3))
		for i := range filters {
			filters[i] = randomFilter(r)
		}
		subs = append(subs, subscribe(t, h, filters...))
	}
	for i := range 1000 {
		topic := randomTopic(r)
		if err := ValidateTopic(topic); err != nil {
			t.Fatalf("generated invalid topic %q: %v", topic, err)
		}
		id := publish(t, h, topic, "")
		h.Head() // fans out what the broker handed over
		for _, s := range subs {
			want := slices.ContainsFunc(s.Filters(), func(f string) bool { return Match(f, topic) })
			got := 0
		drain:
			for {
				m, ok := s.Next()
				if !ok {
					break drain
				}
				if m.ID != id {
					t.Fatalf("publish %d (%q): subscriber %q got %s, want %s", i, topic, s.Filters(), m.ID, id)
				}
				got++
			}
			if want && got != 1 || !want && got != 0 {
				t.Fatalf("publish %d (%q): subscriber %q received it %d times, Match says %v", i, topic, s.Filters(), got, want)
			}
		}
	}
	if n := h.Subscribers(); n != len(subs) {
		t.Fatalf("Subscribers() = %d after the run, want %d: someone overflowed", n, len(subs))
	}
}

func TestOverlappingFiltersDeliverOnce(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 16})
	s := subscribe(t, h, "a/#", "a/b", "+/b", "#", "a/+")

	for _, topic := range []string{"a/b", "a", "a/c", "x/b", "z"} {
		id := publish(t, h, topic, "")
		if m := recv(t, s); m.ID != id {
			t.Fatalf("topic %q: got %s, want %s", topic, m.ID, id)
		}
		assertNoMessage(t, s)
	}
	// None of the filters reaches a "$" topic.
	publish(t, h, "$x/b", "")
	assertNoMessage(t, s)
}

func TestDuplicateFilterDeliversOnceAndRemoves(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 4})
	s := subscribe(t, h, "a", "a")
	id := publish(t, h, "a", "")
	if m := recv(t, s); m.ID != id {
		t.Fatalf("got %s, want %s", m.ID, id)
	}
	assertNoMessage(t, s)
	if n := h.Subscribers(); n != 1 {
		t.Fatalf("Subscribers() = %d, want 1", n)
	}
	s.Close()
	if n := h.Subscribers(); n != 0 {
		t.Fatalf("Subscribers() after Close = %d, want 0", n)
	}
	assertIndexEmpty(t, h)
}

// TestIndexPrunes checks that ending subscriptions, whichever way, leaves
// no empty branch behind.
func TestIndexPrunes(t *testing.T) {
	end := map[string]func(h *Hub, subs []*Subscriber){
		"Subscriber.Close": func(_ *Hub, subs []*Subscriber) {
			for _, s := range subs {
				s.Close()
			}
		},
		"Disconnect": func(h *Hub, _ []*Subscriber) { h.Disconnect(ErrShutdown) },
		"Hub.Close":  func(h *Hub, _ []*Subscriber) { _ = h.Close() },
	}
	for name, endAll := range end {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(5, 6))
			h, _ := newTestHub(t, Options{Queue: 4})
			var subs []*Subscriber
			for range 200 {
				subs = append(subs, subscribe(t, h, randomFilter(r), randomFilter(r)))
			}
			endAll(h, subs)
			if n := h.Subscribers(); n != 0 {
				t.Fatalf("Subscribers() = %d, want 0", n)
			}
			assertIndexEmpty(t, h)
		})
	}
}

func TestIndexPrunesOnlyEmptyBranches(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 4})
	deep := subscribe(t, h, "a/b/c")
	short := subscribe(t, h, "a/d")
	mid := subscribe(t, h, "a/b")

	deep.Close()
	h.mu.Lock()
	a := h.index.root.children["a"]
	got := slices.Sorted(maps.Keys(a.children))
	b := a.children["b"]
	h.mu.Unlock()
	if !slices.Equal(got, []string{"b", "d"}) {
		t.Fatalf("children of a = %q, want [b d]", got)
	}
	if len(b.children) != 0 {
		t.Fatalf("a/b still has children %q after its only deeper filter went", slices.Sorted(maps.Keys(b.children)))
	}

	// The remaining filters still deliver.
	publish(t, h, "a/b/c", "")
	assertNoMessage(t, deep)
	publish(t, h, "a/b", "")
	recv(t, mid)
	publish(t, h, "a/d", "")
	recv(t, short)

	mid.Close()
	short.Close()
	assertIndexEmpty(t, h)
}

// BenchmarkIndexMatch measures one publish's walk of an index holding 10k
// filters, a realistic mix of literal topics and wildcards.
func BenchmarkIndexMatch(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 8))
	var ix index
	for i := range 10_000 {
		var f string
		switch i % 10 {
		case 0:
			f = "room/+/messages"
		case 1:
			f = "user/" + strconv.Itoa(r.IntN(5000)) + "/#"
		default:
			f = "room/" + strconv.Itoa(r.IntN(1000)) + "/messages"
		}
		ix.add(f, &Subscriber{})
	}
	topics := make([]string, 256)
	for i := range topics {
		topics[i] = "room/" + strconv.Itoa(r.IntN(1000)) + "/messages"
	}
	visits := 0
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ix.match(topics[i%len(topics)], func(*Subscriber) { visits++ })
	}
	if visits == 0 {
		b.Fatal("no subscriber matched")
	}
}
