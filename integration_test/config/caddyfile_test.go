package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"

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

// Every Caddyfile the user reads, each caddyfile block of README.md and
// each Caddyfile in examples/, adapts.
func TestDocumentedCaddyfilesAdapt(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for i, block := range strings.Split(string(readme), "```caddyfile\n")[1:] {
		body, _, ok := strings.Cut(block, "```")
		if !ok {
			t.Fatalf("README caddyfile block %d is not closed", i+1)
		}
		// A block whose first line is no site address (no ':') nor the
		// global options is a snippet of a site block.
		if first, _, _ := strings.Cut(strings.TrimSpace(body), "\n"); !strings.Contains(first, ":") && !strings.HasPrefix(first, "{") {
			body = "http://127.0.0.1:1 {\n" + body + "}\n"
		}
		files[fmt.Sprintf("README.md block %d", i+1)] = body
	}
	examples, err := filepath.Glob(filepath.Join("..", "..", "examples", "*", "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range append(examples, filepath.Join("..", "..", "examples", "Caddyfile")) {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(b)
	}
	if len(files) < 4 {
		t.Fatalf("found only %d Caddyfiles", len(files))
	}
	for name, body := range files {
		t.Run(name, func(t *testing.T) {
			if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(body), map[string]any{"filename": "Caddyfile"}); err != nil {
				t.Errorf("%v\n%s", err, body)
			}
		})
	}
}
