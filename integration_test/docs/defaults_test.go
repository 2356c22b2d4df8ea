package docs_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dustin/go-humanize"

	pubsub "github.com/caddy-pubsub/caddy-pubsub"
)

// docs/caddyfile.md states each default as the code has it.
func TestDocumentedDefaultsAreTheCodes(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root, "docs", "caddyfile.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	// A bullet is "- **name** ... Default: `value`", over several lines.
	bullets := map[string]string{}
	for _, b := range strings.Split(doc, "\n- **")[1:] {
		name, rest, _ := strings.Cut(b, "**")
		if m := regexp.MustCompile("Default: `([^`]+)`").FindStringSubmatch(strings.Join(strings.Fields(rest), " ")); m != nil {
			bullets[name] = m[1]
		}
	}
	// A limits table row is "| what | `default` | `limits { NAME N }` ...".
	rows := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| [^|]+ \\| `([^`]+)` \\| `(?:limits \\{ )?(\\w+)").FindAllStringSubmatch(doc, -1) {
		rows[m[2]] = m[1]
	}
	for _, c := range []struct {
		where map[string]string
		name  string
		want  string
	}{
		{bullets, "hub", pubsub.DefaultHub},
		{bullets, "heartbeat", duration(pubsub.DefaultHeartbeat)},
		{bullets, "poll_timeout", duration(pubsub.DefaultPollTimeout)},
		{bullets, "max_message_size", strings.ReplaceAll(humanize.IBytes(pubsub.DefaultMaxMessageSize), " ", "")},
		{bullets, "history", fmt.Sprintf("%d %s", pubsub.DefaultHistoryCount, duration(pubsub.DefaultHistoryAge))},
		{bullets, "queue", fmt.Sprint(pubsub.DefaultQueue)},
		{bullets, "anonymous_publish", "loopback"},
		{rows, "max_message_size", strings.ReplaceAll(humanize.IBytes(pubsub.DefaultMaxMessageSize), " ", "")},
		{rows, "topics", fmt.Sprint(pubsub.DefaultLimitTopics)},
		{rows, "subscribers", fmt.Sprint(pubsub.DefaultLimitSubscribers)},
		{rows, "batch", fmt.Sprint(pubsub.DefaultLimitBatch)},
		{rows, "poll_batch", fmt.Sprint(pubsub.DefaultLimitPollBatch)},
		{rows, "publish_wait", duration(pubsub.DefaultLimitPublishWait)},
		{rows, "queue", fmt.Sprint(pubsub.DefaultQueue)},
	} {
		if got, ok := c.where[c.name]; !ok || got != c.want {
			t.Errorf("docs/caddyfile.md gives %s the default %q (found: %v), the code %q", c.name, got, ok, c.want)
		}
	}
}

// duration writes d as the docs do: 15s, 1h, 30s.
func duration(d time.Duration) string {
	s := d.String()
	for _, zero := range []string{"m0s", "h0m"} {
		s = strings.ReplaceAll(s, zero, strings.TrimSuffix(zero[:1], "0"))
	}
	return s
}

// Adapting a documented Caddyfile writes only the settings it gives: a
// setting it leaves out is absent from the JSON, so it gets the same
// default as a JSON config that leaves it out (checked against the
// documented ones above, and in integration_test/config).
func TestDocumentedCaddyfilesWriteNoDefaults(t *testing.T) {
	checked := 0
	for name, body := range documentedCaddyfiles(t) {
		out, err := adapt(body)
		if err != nil {
			continue // TestDocumentedCaddyfilesAdapt reports it
		}
		var cfg any
		if err := json.Unmarshal(out, &cfg); err != nil {
			t.Fatal(err)
		}
		for _, obj := range pubsubObjects(cfg) {
			checked++
			for key, val := range obj {
				switch key {
				case "handler", "location":
					continue
				case "limits":
					for limit := range val.(map[string]any) {
						if !gives(body, limit) {
							t.Errorf("%s: the JSON has limits %s, which the Caddyfile does not give:\n%s", name, limit, body)
						}
					}
				}
				if !gives(body, key) {
					t.Errorf("%s: the JSON has %s: %v, which the Caddyfile does not give:\n%s", name, key, val, body)
				}
			}
		}
	}
	if checked < 20 {
		t.Fatalf("checked only %d pubsub handlers and hubs", checked)
	}
}

// gives reports whether the Caddyfile has a line starting with setting.
func gives(caddyfile, setting string) bool {
	return regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(setting) + `(\s|$)`).MatchString(caddyfile)
}

// pubsubObjects returns the pubsub handlers of an adapted config, and the
// hubs of its pubsub app.
func pubsubObjects(v any) []map[string]any {
	var out []map[string]any
	switch v := v.(type) {
	case map[string]any:
		if v["handler"] == "pubsub" {
			return []map[string]any{v}
		}
		for key, sub := range v {
			if app, ok := sub.(map[string]any); key == "pubsub" && ok {
				if hubs, ok := app["hubs"].(map[string]any); ok {
					for _, h := range hubs {
						out = append(out, h.(map[string]any))
					}
					continue
				}
			}
			out = append(out, pubsubObjects(sub)...)
		}
	case []any:
		for _, sub := range v {
			out = append(out, pubsubObjects(sub)...)
		}
	}
	return out
}
