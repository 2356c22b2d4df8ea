package testserver

import (
	"os"
	"os/exec"
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
