package config_test

import (
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// chatHub is a global pubsub option defining the hub chat with a short
// history.
const chatHub = `	pubsub {
		hub chat {
			history 2
			queue 64
		}
	}`

// lineIn returns the Caddyfile line of the first line of site that
// contains needle, as testserver.AdaptWith and StartWith lay out globals
// and site.
func lineIn(t *testing.T, globals, site, needle string) int {
	t.Helper()
	before, _, ok := strings.Cut(site, needle)
	if !ok {
		t.Fatalf("%q not in the site", needle)
	}
	return strings.Count(testserver.GlobalOptions, "\n") + strings.Count(globals, "\n") + 2 + strings.Count(before, "\n")
}

// findHandler returns the pubsub handler in a server's routes (the
// Caddyfile adapter wraps it in a subroute).
func findHandler(t *testing.T, routes any) map[string]any {
	t.Helper()
	for _, r := range routes.([]any) {
		for _, h := range r.(map[string]any)["handle"].([]any) {
			h := h.(map[string]any)
			if h["handler"] == "pubsub" {
				return h
			}
			if sub, ok := h["routes"]; ok {
				if found := findHandler(t, sub); found != nil {
					return found
				}
			}
		}
	}
	return nil
}

// basicSite is a plain endpoint with a short heartbeat and an hour of
// history.
const basicSite = `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		heartbeat 1s
		history 100 1h
	}
}
`
