package pubsub

import (
	"encoding/json"
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
