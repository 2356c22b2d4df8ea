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
		{"rules", `{"retain":[{"pattern":"metrics/+","count":1},{"pattern":"logs/#","count":50,"max_age":60000000000}],"retain_topics":20}`,
			"pubsub {\n retain metrics/+ 1\n retain logs/# 50 1m\n retain_topics 20\n}", hub.Retention{
				Count: DefaultHistoryCount, MaxAge: DefaultHistoryAge, RuleTopics: 20,
				Rules: []hub.RetentionRule{{Pattern: "metrics/+", Count: 1}, {Pattern: "logs/#", Count: 50, MaxAge: time.Minute}},
			}},
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
				if got := cfg.options().Retention; !got.Equal(c.want) {
					t.Errorf("%s: retention %+v, want %+v", name, got, c.want)
				}
			}
		})
	}
}

// A retain rule that cannot be kept is refused with its file and line.
func TestRetainSettingErrors(t *testing.T) {
	for input, want := range map[string]string{
		"pubsub {\n\tretain metrics/#/x 1\n}":        "# must be the last level",
		"pubsub {\n\tretain metrics/a+ 1\n}":         "a wildcard must be a whole level",
		"pubsub {\n\tretain metrics/+ many\n}":       `count "many" is not a number`,
		"pubsub {\n\tretain metrics/+ -1\n}":         "count -1 is negative",
		"pubsub {\n\tretain metrics/+ 1 soon\n}":     `age "soon"`,
		"pubsub {\n\tretain metrics/+ 1 -1m\n}":      "age -1m0s is negative",
		"pubsub {\n\tretain metrics/+ 0 1m\n}":       "a count of 0 keeps no messages",
		"pubsub {\n\tretain metrics/+\n}":            "wrong argument count",
		"pubsub {\n\tretain a 1\n\tretain a 2\n}":    "a is given twice, at Testfile:3",
		"pubsub {\n\tretain_topics 0\n}":             "retain_topics 0 out of range",
		"pubsub {\n\tretain metrics/+ 1 1m extra\n}": "wrong argument count",
		"pubsub {\n\tretain metrics/+ 2000000\n}":    "out of range",
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "Testfile:") {
			t.Errorf("%q: %v, want %q at its line", input, err, want)
		}
	}
	if err := (&HubConfig{Retain: []*RetainRule{{Pattern: "a/#/b", Count: 1}}}).check(); err == nil {
		t.Error("a JSON retain rule with a bad pattern passes check")
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
