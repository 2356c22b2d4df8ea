package hub

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// chatOnly is the allow function of a client granted chat/# only.
func chatOnly(topic string) bool { return Match("chat/#", topic) }

// Allow keeps a wildcard subscription to the allowed topics, live and in
// the history Subscribe returns.
func TestAllowFiltersLiveAndHistory(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 16, Retention: Retention{Count: 100}})
	publish(t, h, "chat/a", "old chat")
	publish(t, h, "secret/a", "old secret")
	s, backlog, _, err := h.Subscribe(context.Background(), []string{"#"}, Earliest, Allow(chatOnly))
	if err != nil {
		t.Fatal(err)
	}
	if len(backlog) != 1 || backlog[0].Topic != "chat/a" {
		t.Fatalf("backlog %v, want chat/a only", topicsOf(backlog))
	}
	open := subscribe(t, h, "#")

	publish(t, h, "secret/b", "live secret")
	id := publish(t, h, "chat/b", "live chat")
	if m := recv(t, s); m.ID != id {
		t.Fatalf("got %s on %q, want %s on chat/b", m.ID, m.Topic, id)
	}
	assertNoMessage(t, s)
	// The check belongs to s alone.
	if got := []string{recv(t, open).Topic, recv(t, open).Topic}; !slices.Equal(got, []string{"secret/b", "chat/b"}) {
		t.Fatalf("unrestricted subscriber got %v", got)
	}
}

// SetFilters keeps the check unless given a new one; Allow(nil) removes it.
func TestAllowAcrossSetFilters(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 16})
	s, _, _, err := h.Subscribe(context.Background(), []string{"chat/#"}, "", Allow(chatOnly))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SetFilters([]string{"chat/#", "+/x"}); err != nil {
		t.Fatal(err)
	}
	publish(t, h, "news/x", "not allowed")
	assertNoMessage(t, s)

	if _, _, err := s.SetFilters([]string{"chat/#", "+/x"}, Allow(nil)); err != nil {
		t.Fatal(err)
	}
	publish(t, h, "news/x", "allowed now")
	if m := recv(t, s); m.Topic != "news/x" {
		t.Fatalf("got %q", m.Topic)
	}
}

func topicsOf(msgs []*Message) string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Topic)
	}
	return strings.Join(out, ",")
}
