package pubsub

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// A hub's settings mean the same in JSON as in the Caddyfile: what one
// leaves out takes the default the other gives.
func TestHubDefaultsAgreeInJSONAndCaddyfile(t *testing.T) {
	cases := []struct {
		name, json, caddyfile string
		want                  hub.Retention
	}{
		{"nothing", `{}`, "pubsub", hub.Retention{Count: DefaultHistoryCount, MaxAge: DefaultHistoryAge}},
		{"a count", `{"history":{"count":5}}`, "pubsub {\n history 5\n}", hub.Retention{Count: 5}},
		{"an age", `{"history":{"max_age":60000000000}}`, "pubsub {\n history 1000 1m\n}", hub.Retention{Count: DefaultHistoryCount, MaxAge: time.Minute}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var fromJSON Handler
			if err := json.Unmarshal([]byte(c.json), &fromJSON); err != nil {
				t.Fatal(err)
			}
			var fromCaddyfile Handler
			if err := fromCaddyfile.UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.caddyfile)); err != nil {
				t.Fatal(err)
			}
			for name, h := range map[string]*Handler{"JSON": &fromJSON, "Caddyfile": &fromCaddyfile} {
				cfg := h.HubConfig.withDefaults()
				if err := cfg.check(); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if got := cfg.options().Retention; got != c.want {
					t.Errorf("%s: retention %+v, want %+v", name, got, c.want)
				}
			}
		})
	}
}

// caddy_events without names feeds the documented set; names must be
// Caddy's event names, given once, with the error at their line.
func TestCaddyEventsSetting(t *testing.T) {
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("pubsub {\n\tcaddy_events\n}")); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(h.CaddyEvents, defaultCaddyEvents) {
		t.Fatalf("caddy_events alone: %v, want %v", h.CaddyEvents, defaultCaddyEvents)
	}
	for input, want := range map[string]string{
		"pubsub {\n\tcaddy_events cert-obtained\n}":                    `"cert-obtained" is no event name`,
		"pubsub {\n\tcaddy_events started\n\tcaddy_events stopping\n}": "caddy_events given twice, at Testfile:3",
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "Testfile:") {
			t.Errorf("%q: %v, want %q at a line", input, err, want)
		}
	}
	if err := (&HubConfig{CaddyEvents: []string{"Bad Name"}}).check(); err == nil {
		t.Error("JSON caddy_events with a bad name passes check")
	}
}
