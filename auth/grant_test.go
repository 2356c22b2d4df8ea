package auth

import (
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

func TestCoversAndOverlaps(t *testing.T) {
	tests := []struct {
		pattern, filter string
		covers, overlap bool
	}{
		{"#", "#", true, true},
		{"#", "chat/+", true, true},
		{"chat/#", "chat", true, true},
		{"chat/#", "chat/#", true, true},
		{"chat/#", "chat/+/x", true, true},
		{"chat/#", "#", false, true},
		{"chat/#", "+/room", false, true},
		{"chat/#", "news/#", false, false},
		{"chat/+", "chat/a", true, true},
		{"chat/+", "chat/+", true, true},
		{"chat/+", "chat/#", false, true},
		{"chat/+", "chat", false, false},
		{"chat/+", "chat/a/b", false, false},
		{"chat/a", "chat/+", false, true},
		{"chat/a", "chat/b", false, false},
		{"+/a", "b/+", false, true},
		{"a/#", "a/b/#", true, true},
		{"a/b/#", "a/#", false, true},
		{"a/b/#", "a", false, false},
		// "$" topics need a pattern that names them.
		{"#", "$pubsub/stats", false, false},
		{"#", "$pubsub/#", false, false},
		{"+/stats", "$pubsub/stats", false, false},
		{"$pubsub/#", "$pubsub/stats", true, true},
		{"$pubsub/#", "#", false, false},
		{"$pubsub/#", "+/stats", false, false},
		{"$pubsub/+", "$pubsub/#", false, true},
	}
	for _, tt := range tests {
		if got := Covers(tt.pattern, tt.filter); got != tt.covers {
			t.Errorf("Covers(%q, %q) = %v, want %v", tt.pattern, tt.filter, got, tt.covers)
		}
		if got := Overlaps(tt.pattern, tt.filter); got != tt.overlap {
			t.Errorf("Overlaps(%q, %q) = %v, want %v", tt.pattern, tt.filter, got, tt.overlap)
		}
		if got := Overlaps(tt.filter, tt.pattern); got != tt.overlap {
			t.Errorf("Overlaps(%q, %q) = %v, want %v (symmetry)", tt.filter, tt.pattern, got, tt.overlap)
		}
	}
}

// Covers and Overlaps agree with hub.Match on every topic of a universe
// rich enough to hold a witness for each answer: filters over {a, $x, +}
// up to three levels, optionally ending in "#"; topics over {a, b, $x, $y}
// up to four levels.
func TestCoverageAgreesWithMatch(t *testing.T) {
	filters := words([]string{"a", "$x", "+"}, 3)
	for _, f := range filters[:len(filters):len(filters)] {
		filters = append(filters, f+"/#")
	}
	filters = append(filters, "#")
	topics := words([]string{"a", "b", "$x", "$y"}, 4)

	for _, p := range filters {
		for _, f := range filters {
			covered, overlap := true, false
			for _, topic := range topics {
				inF, inP := hub.Match(f, topic), hub.Match(p, topic)
				if inF && !inP {
					covered = false
				}
				if inF && inP {
					overlap = true
				}
			}
			if got := Covers(p, f); got != covered {
				t.Errorf("Covers(%q, %q) = %v, brute force says %v", p, f, got, covered)
			}
			if got := Overlaps(p, f); got != overlap {
				t.Errorf("Overlaps(%q, %q) = %v, brute force says %v", p, f, got, overlap)
			}
		}
	}
}

// words returns every "/"-joined sequence of 1 to n levels from alphabet.
func words(alphabet []string, n int) []string {
	out := []string{""}
	var all []string
	for range n {
		var next []string
		for _, prefix := range out {
			for _, l := range alphabet {
				w := l
				if prefix != "" {
					w = prefix + "/" + l
				}
				next = append(next, w)
			}
		}
		all = append(all, next...)
		out = next
	}
	return all
}

func TestGrantCoverage(t *testing.T) {
	g := Grant{"chat/#", "news/+", "$pubsub/presence/chat/#"}
	tests := []struct {
		filter string
		want   Coverage
	}{
		{"chat/room1", Covered},
		{"chat/#", Covered},
		{"news/today", Covered},
		{"news/#", Partial},
		{"#", Partial},
		{"+/room1", Partial},
		{"sport/#", Denied},
		{"$pubsub/#", Partial},
		{"$pubsub/presence/chat/x", Covered},
		{"$pubsub/stats", Denied},
	}
	for _, tt := range tests {
		if got := g.Coverage(tt.filter); got != tt.want {
			t.Errorf("Coverage(%q) = %v, want %v", tt.filter, got, tt.want)
		}
	}
	for topic, want := range map[string]bool{
		"chat":                  true,
		"chat/a/b":              true,
		"news/a":                true,
		"news/a/b":              false,
		"sport":                 false,
		"$pubsub/stats":         false,
		"$pubsub/presence/chat": true,
	} {
		if got := g.Allows(topic); got != want {
			t.Errorf("Allows(%q) = %v, want %v", topic, got, want)
		}
	}
	if (Grant{}).Coverage("#") != Denied || (Grant(nil)).Allows("a") {
		t.Error("an empty grant allows something")
	}
}

func TestNewGrantRejectsBadPatterns(t *testing.T) {
	for _, p := range []string{"", "a/#/b", "a+", strings.Repeat("a/", 20) + "a"} {
		if _, err := newGrant([]string{p}); err == nil {
			t.Errorf("newGrant(%q) accepted it", p)
		}
	}
}
