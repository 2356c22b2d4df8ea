package pubsub

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// Whatever a Caddyfile holds, the pubsub directive's parser never panics:
// it fails with an error, or gives a handler that survives Caddy's JSON
// round trip (the Caddyfile adapter's output is JSON) unchanged.
func FuzzUnmarshalCaddyfile(f *testing.F) {
	for _, seed := range []string{
		"pubsub",
		"pubsub {\n\thub chat\n\thistory 100 1h\n\theartbeat 5s\n\tqueue 64\n\tmax_message_size 1MiB\n}",
		"pubsub {\n\ttopic chat/{http.request.uri.path.1}\n\tpublish_key {env.KEY}\n\tpoll_timeout 20s\n\tcors https://a.example *\n\tpresence\n}",
		"pubsub {\n\tlimits {\n\t\ttopics 8\n\t\tsubscribers 10\n\t\tper_ip 2\n\t\tbatch 5\n\t\tpoll_batch 7\n\t}\n}",
		"pubsub {\n\tlimits {\n\t\ttopics 8\n\t\ttopics 9\n\t}\n\tlimits\n}",
		"pubsub {\n\tlimits 1 {\n\t}\n}",
		"pubsub {\n\tbroker redis redis://127.0.0.1:6379/0 {\n\t\tstream s\n\t\tdial_timeout 2s\n\t}\n}",
		"pubsub {\n\tbroker bolt /tmp/x.db\n}",
		"pubsub {\n\tbroker memory extra\n}",
		"pubsub {\n\tjwt {\n\t\tsecret {env.JWT}\n\t\tcookie tok\n\t\tleeway 30s\n\t}\n}",
		"pubsub {\n\tmqtt tcp://127.0.0.1:1883 {\n\t\tclient_id caddy\n\t\tsubscribe sensors/# 1\n\t\tprefix mqtt/\n\t}\n}",
		"pubsub {\n\tmqtt\n}",
		"pubsub {\n\thistory -1\n\tqueue 99999999999999999999\n}",
		"pubsub {\n\tmax_message_size 18446744073709551615EiB\n}",
		"pubsub {\n\t{\n}",
		"pubsub {\n\tlimits {\n\t\tlimits {\n\t\t}\n\t}\n}",
		"pubsub /x extra",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		// NewTestDispenser exits the process on a tokenizer error, so the
		// tokens come from Tokenize, as in Caddy.
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil {
			return
		}
		var h Handler
		if h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)) != nil {
			return
		}
		raw, err := json.Marshal(&h)
		if err != nil {
			t.Fatalf("handler from %q does not marshal: %v", input, err)
		}
		var back Handler
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatalf("handler JSON %s does not unmarshal: %v", raw, err)
		}
		again, _ := json.Marshal(&back)
		if !reflect.DeepEqual(raw, again) {
			t.Fatalf("JSON round trip changed %s to %s", raw, again)
		}
	})
}
