package client_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// nodeSecret signs the tokens of the node tests' /auth/ endpoint.
const nodeSecret = "node-test-secret-node-test-secret-0123456789"

// The client's node test suite (node --test, no npm packages), against a
// real Caddy: the package's parts agree, long-poll with fallback, getToken,
// subscription changes, timeouts and close(). Node has no EventSource and,
// without a flag, no WebSocket; Chromium tests those (integration_test/browser).
func TestNodeSuite(t *testing.T) {
	node := testserver.NeedBinary(t, "node", "nodejs")
	t.Setenv("PUBSUB_TEST_SECRET", nodeSecret)
	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub /open/* {
		history 100 1h
	}
	pubsub /auth/* {
		hub private
		history 100 1h
		jwt {
			secret {env.PUBSUB_TEST_SECRET}
		}
	}
}
`)
	files, err := filepath.Glob(filepath.Join(clientDir, "test", "*.test.js"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no node tests in client/test: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{"--test", "--test-reporter=tap"}, files...)...)
	cmd.Env = append(cmd.Environ(), "PUBSUB_TEST_URL="+s.Base)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatalf("node --test: %v", err)
	}
	// Every test ran: those needing the server are skipped only without one.
	for _, count := range []string{"pass", "skipped", "todo", "cancelled", "fail"} {
		m := regexp.MustCompile(`(?m)^# ` + count + ` (\d+)$`).FindSubmatch(out)
		switch {
		case m == nil:
			t.Fatalf("node --test printed no %q count", count)
		case count == "pass" && string(m[1]) == "0":
			t.Fatal("node --test passed no test")
		case count != "pass" && string(m[1]) != "0":
			t.Fatalf("node --test: %s %s", count, m[1])
		}
	}
}

// The declarations type-check a use of the whole API, and refuse misuses
// (client/test/usage.ts), with TypeScript's strict checks. .ci/run installs
// tsc.
func TestTypeScriptDeclarations(t *testing.T) {
	tsc := testserver.NeedBinary(t, "tsc")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tsc, "--noEmit", "--strict", "--target", "es2022", "--module", "esnext",
		"--moduleResolution", "bundler", "--lib", "es2022,dom", filepath.Join(clientDir, "test", "usage.ts"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tsc: %v\n%s", err, out)
	}
}
