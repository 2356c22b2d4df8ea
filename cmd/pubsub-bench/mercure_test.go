//go:build peers

package main

import (
	"os"
	"testing"
)

// mercureBinEnv names a Caddy built with Mercure (xcaddy); see
// docs/development.md for the build.
const mercureBinEnv = "PUBSUB_BENCH_MERCURE_BIN"

// Mercure on Caddy, built with xcaddy: its build takes minutes, so this
// test runs only with the build tag peers:
//
//	go test -tags peers -run Mercure ./cmd/pubsub-bench/
func TestMercure(t *testing.T) {
	bin := os.Getenv(mercureBinEnv)
	if bin == "" {
		bin = defaultServerBin[peerMercure]
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("Mercure's Caddy: %v; build it as docs/development.md says, or name it with $%s", err, mercureBinEnv)
	}
	runPeer(t, peerMercure, bin)
}
