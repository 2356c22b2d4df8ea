package config_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Mistakes in the pubsub block fail `caddy adapt` with the file and line.
func TestCaddyfileErrorsNameFileAndLine(t *testing.T) {
	cases := []struct{ body, want string }{
		{"colour blue", `unknown pubsub sub-directive "colour"`},
		{"heartbeat soon", `heartbeat: time: invalid duration "soon"`},
		{"heartbeat 10ms", "shorter than 1s"},
		{"heartbeat", "wrong argument count"},
		{"history", "wrong argument count"},
		{"history lots", `history: strconv.Atoi: parsing "lots"`},
		{"history 10 forever", "history: time: invalid duration"},
		{"history -1", "out of range"},
		{"queue 0", "queue 0 out of range"},
		{"queue 1 2", "wrong argument count"},
		{"max_message_size huge", "max_message_size"},
		{"max_message_size 1GiB", "out of range"},
		{"topic chat/#", "wildcards"},
		{"topic a/{http.request.uri.path.1}/+", "wildcards"},
		{`hub "no spaces"`, "hub name"},
		{`publish_key ""`, "empty key"},
	}
	for _, c := range cases {
		t.Run(c.body, func(t *testing.T) {
			_, err := testserver.Adapt("http://127.0.0.1:1 {\n\tpubsub {\n\t\t" + c.body + "\n\t}\n}\n")
			if err == nil {
				t.Fatal("adapted without error")
			}
			// The sub-directive is on the third line after the global options.
			at := fmt.Sprintf("Caddyfile:%d", strings.Count(testserver.GlobalOptions, "\n")+3)
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), at) {
				t.Errorf("got %q, want %q at %s", err, c.want, at)
			}
		})
	}
	if _, err := testserver.Adapt("http://127.0.0.1:1 {\n\tpubsub /x extra\n}\n"); err == nil {
		t.Error("an argument after the matcher adapted without error")
	}
}

// A publish key that resolves empty stops Caddy from starting.
func TestEmptyPublishKeyIsAStartupError(t *testing.T) {
	raw, err := testserver.Adapt(`
http://127.0.0.1:1 {
	pubsub {
		publish_key {env.PUBSUB_TEST_UNSET_KEY}
	}
}
`)
	if err != nil {
		t.Fatal(err)
	}
	err = testserver.Validate(t, raw)
	if err == nil || !strings.Contains(err.Error(), "resolves to an empty value") {
		t.Fatalf("got %v", err)
	}
}
