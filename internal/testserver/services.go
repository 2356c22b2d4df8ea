package testserver

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RequireServicesEnv, set to 1 (as CI does), turns a missing outside
// service from a skip into a failure.
const RequireServicesEnv = "PUBSUB_REQUIRE_SERVICES"

// NeedBinary returns the path of an outside program a test needs
// (redis-server, mosquitto, chromium). When it is not installed the test
// skips with a clear message, or fails under PUBSUB_REQUIRE_SERVICES=1.
func NeedBinary(t testing.TB, names ...string) string {
	t.Helper()
	for _, name := range names {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv(RequireServicesEnv) == "1" {
		t.Fatalf("%v not installed, and %s=1 requires it", names, RequireServicesEnv)
	}
	t.Skipf("%v not installed: skipping (install it, e.g. apt-get install %s)", names, names[0])
	return ""
}

// BuildCaddy builds ./cmd/caddy into the test's temporary directory, for
// tests that need Caddy as a separate process (the build cache makes it
// quick after the first time).
func BuildCaddy(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "caddy")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/caddy-pubsub/caddy-pubsub/cmd/caddy").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/caddy: %v\n%s", err, out)
	}
	return bin
}
