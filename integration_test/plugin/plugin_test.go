// Package plugin_test checks that a broker written outside this module
// plugs in as a Caddy module: testdata/toybroker is a Go module of its own,
// as a third party's would be, which registers pubsub.brokers.toy and
// tests it against the broker contract and in a Caddy loaded from a
// Caddyfile. Its go.mod replaces this module with the working tree, as
// xcaddy --with MODULE=./ does.
package plugin_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

func TestBrokerFromAnotherModule(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	args := []string{"test", "-count=1", "-v"}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command(goBin, append(args, "./...")...)
	cmd.Dir = filepath.Join("testdata", "toybroker")
	// The module's go.sum is committed: nothing is resolved anew.
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go test in %s: %v\n%s", cmd.Dir, err, out)
	}
	t.Logf("%s", out)
}
