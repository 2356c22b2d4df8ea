package pubsub

// Checks of single configuration values, shared by the Caddyfile parser
// (whose errors carry file:line) and Validate (for JSON configs), and the
// bounds they enforce.

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/handlers"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// Bounds that keep a configuration from exhausting memory by mistake.
const (
	maxHistoryCount   = 1_000_000
	maxQueue          = 1_000_000
	maxMessageSizeCap = 16 << 20
	minHeartbeat      = time.Second
	minPollTimeout    = time.Second
	maxPollTimeout    = 10 * time.Minute
)

var hubName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// Values of Handler.AnonymousPublish.
const (
	anonymousLoopback = "loopback"
	anonymousOff      = "off"
)

func checkAnonymousPublish(v string) error {
	switch v {
	case "", anonymousLoopback, anonymousOff:
		return nil
	}
	return fmt.Errorf("anonymous_publish %q: use loopback or off", v)
}

func checkHubName(name string) error {
	if !hubName.MatchString(name) {
		return fmt.Errorf("hub name %q: use 1 to 64 letters, digits, '_', '.', '-'", name)
	}
	return nil
}

func checkHistory(count int, age time.Duration) error {
	if count < 0 || count > maxHistoryCount {
		return fmt.Errorf("history count %d out of range 0..%d", count, maxHistoryCount)
	}
	if age < 0 {
		return fmt.Errorf("history age %s is negative", age)
	}
	// An age only drops messages a count keeps: with a count of 0 it would
	// suggest a history that is not there.
	if count == 0 && age > 0 {
		return fmt.Errorf("history 0 %s: a count of 0 keeps no messages, so the age has no effect; write history 0 for none, or a count above 0", age)
	}
	return nil
}

const (
	// maxRetainTopics bounds retain_topics: the topics one rule tracks
	// all stay in memory.
	maxRetainTopics = 1_000_000
	// maxRetainRules bounds the retain rules of a hub: every publish
	// matches its topic against them in turn.
	maxRetainRules = 1000
)

func checkRetainTopics(n int) error {
	if n < 1 || n > maxRetainTopics {
		return fmt.Errorf("retain_topics %d out of range 1..%d", n, maxRetainTopics)
	}
	return nil
}

func checkHeartbeat(d time.Duration) error {
	if d < minHeartbeat {
		return fmt.Errorf("heartbeat %s is shorter than %s", d, minHeartbeat)
	}
	return nil
}

func checkQueue(n int) error {
	if n < 1 || n > maxQueue {
		return fmt.Errorf("queue %d out of range 1..%d", n, maxQueue)
	}
	return nil
}

func checkPollTimeout(d time.Duration) error {
	if d < minPollTimeout || d > maxPollTimeout {
		return fmt.Errorf("poll_timeout %s out of range %s..%s", d, minPollTimeout, maxPollTimeout)
	}
	return nil
}

func checkOrigins(list []string) error {
	var errs []error
	for _, o := range list {
		if _, err := handlers.NormalizeOrigin(o); err != nil {
			errs = append(errs, fmt.Errorf("cors: %w", err))
		}
	}
	return errors.Join(errs...)
}

// origins returns the checked cors list as browsers send origins.
func origins(list []string) []string {
	out := make([]string, 0, len(list))
	for _, o := range list {
		n, _ := handlers.NormalizeOrigin(o) // checked in check
		out = append(out, n)
	}
	return out
}

func checkMaxMessageSize(n int64) error {
	if n < 1 || n > maxMessageSizeCap {
		return fmt.Errorf("max_message_size %d out of range 1..%d bytes", n, maxMessageSizeCap)
	}
	return nil
}

// checkTopicTemplate checks a default topic with each placeholder standing
// for one literal level.
func checkTopicTemplate(tmpl string) error {
	if tmpl == "" {
		return nil
	}
	literal := placeholder.ReplaceAllString(tmpl, "x")
	if err := hub.ValidateTopic(literal); err != nil {
		return fmt.Errorf("topic %q: %w", tmpl, err)
	}
	return nil
}

var placeholder = regexp.MustCompile(`\{[^{}]+\}`)
