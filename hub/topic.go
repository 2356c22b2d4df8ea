package hub

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Topic limits. They keep the subscriber index and every match walk small
// whatever a client sends.
const (
	MaxTopicLength = 256 // bytes
	MaxTopicDepth  = 16  // levels
)

// ErrInvalidTopic wraps every topic and filter validation error.
var ErrInvalidTopic = errors.New("invalid topic")

// ValidateTopic checks a topic that a message is published to: UTF-8 levels
// separated by "/", no wildcards, no control characters.
func ValidateTopic(topic string) error {
	return validate(topic, false)
}

// ValidateFilter checks a subscription filter: a topic whose levels may be
// "+" (exactly one level) or, as the last level only, "#" (all the rest).
func ValidateFilter(filter string) error {
	return validate(filter, true)
}

func validate(s string, wildcards bool) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", ErrInvalidTopic)
	case len(s) > MaxTopicLength:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidTopic, MaxTopicLength)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidTopic)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return fmt.Errorf("%w: %q has a control character", ErrInvalidTopic, s)
	}
	if strings.Count(s, "/") >= MaxTopicDepth {
		return fmt.Errorf("%w: %q is deeper than %d levels", ErrInvalidTopic, s, MaxTopicDepth)
	}
	if !strings.ContainsAny(s, "+#") {
		return nil
	}
	for rest, more := s, true; more; {
		var level string
		level, rest, more = strings.Cut(rest, "/")
		if !strings.ContainsAny(level, "+#") {
			continue
		}
		if !wildcards {
			return fmt.Errorf("%w: %q: wildcards + and # are for subscriptions, not for publishing", ErrInvalidTopic, s)
		}
		switch {
		case level == "+":
		case level == "#" && !more:
		case level == "#":
			return fmt.Errorf("%w: %q: # must be the last level", ErrInvalidTopic, s)
		default:
			return fmt.Errorf("%w: %q: a wildcard must be a whole level", ErrInvalidTopic, s)
		}
	}
	return nil
}

// Match reports whether topic matches filter with MQTT rules: "+" matches
// one level, a trailing "#" matches the parent level and everything below
// it, and a wildcard in the first level never matches a topic starting with
// "$" (the hub's own events).
func Match(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return true
		}
		t, trest, tmore := strings.Cut(topic, "/")
		if f != "+" && f != t {
			return false
		}
		switch {
		case fmore && tmore:
			filter, topic = frest, trest
		case !fmore && !tmore:
			return true
		case fmore && !tmore:
			return frest == "#"
		default:
			return false
		}
	}
}
