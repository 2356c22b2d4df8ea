package auth

import (
	"fmt"
	"strings"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// Grant is a token's list of topic patterns, with the hub's wildcards:
// "+" one level, a trailing "#" the rest. As for subscriptions, a wildcard
// in the first level does not reach topics starting with "$": those need
// a pattern that names them ("$pubsub/#").
type Grant []string

func newGrant(patterns []string) (Grant, error) {
	if len(patterns) > MaxPatterns {
		return nil, fmt.Errorf("more than %d patterns", MaxPatterns)
	}
	for _, p := range patterns {
		if err := hub.ValidateFilter(p); err != nil {
			return nil, err
		}
	}
	return Grant(patterns), nil
}

// Allows reports whether topic matches one of the patterns.
func (g Grant) Allows(topic string) bool {
	for _, p := range g {
		if hub.Match(p, topic) {
			return true
		}
	}
	return false
}

// Coverage is how much of a subscription filter a grant allows.
type Coverage int

const (
	// Denied: no topic the filter matches is allowed.
	Denied Coverage = iota
	// Partial: some topics the filter matches are allowed, others not;
	// each message must be checked with Allows.
	Partial
	// Covered: every topic the filter matches is allowed.
	Covered
)

// Coverage tells how much of filter (a valid subscription filter) g
// allows.
func (g Grant) Coverage(filter string) Coverage {
	c := Denied
	for _, p := range g {
		switch {
		case Covers(p, filter):
			return Covered
		case Overlaps(p, filter):
			c = Partial
		}
	}
	return c
}

// filterShape is a valid filter split into its levels before an optional
// trailing "#", which matches the parent level and any levels below it.
// It always has a level: "#" alone matches what "+/#" matches (every topic
// not starting with "$"), so it is shaped as that.
type filterShape struct {
	levels []string
	hash   bool
}

func shape(filter string) filterShape {
	if filter == "#" {
		return filterShape{levels: []string{"+"}, hash: true}
	}
	levels := strings.Split(filter, "/")
	if levels[len(levels)-1] == "#" {
		return filterShape{levels: levels[:len(levels)-1], hash: true}
	}
	return filterShape{levels: levels}
}

// firstWildcard reports whether the first level is a wildcard, which
// keeps the filter off "$" topics.
func (s filterShape) firstWildcard() bool { return s.levels[0] == "+" }

// dollar reports whether every topic the filter matches starts with "$".
func (s filterShape) dollar() bool { return strings.HasPrefix(s.levels[0], "$") }

// Covers reports whether every topic that filter matches also matches
// pattern (both valid filters).
func Covers(pattern, filter string) bool {
	p, f := shape(pattern), shape(filter)
	if p.firstWildcard() && f.dollar() {
		return false
	}
	if p.hash {
		// f's shortest topics have len(f.levels) levels.
		if len(f.levels) < len(p.levels) {
			return false
		}
	} else if f.hash || len(f.levels) != len(p.levels) {
		return false
	}
	for i, pl := range p.levels {
		if pl != "+" && (f.levels[i] == "+" || f.levels[i] != pl) {
			return false
		}
	}
	return true
}

// Overlaps reports whether some topic matches both a and b (valid
// filters).
func Overlaps(a, b string) bool {
	x, y := shape(a), shape(b)
	if (x.firstWildcard() && y.dollar()) || (y.firstWildcard() && x.dollar()) {
		return false
	}
	n := min(len(x.levels), len(y.levels))
	for i := range n {
		xl, yl := x.levels[i], y.levels[i]
		if xl != "+" && yl != "+" && xl != yl {
			return false
		}
	}
	switch {
	case len(x.levels) < len(y.levels):
		return x.hash
	case len(y.levels) < len(x.levels):
		return y.hash
	}
	return true
}
