// Package testbrowser starts the headless Chromium that end-to-end tests
// drive with chromedp: Debian's chromium, a fresh profile per test, no
// network beyond loopback.
package testbrowser

import (
	"context"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// New starts a headless Chromium with a fresh profile and stops it when
// the test ends; it skips the test when Chromium is not installed (fails
// under PUBSUB_REQUIRE_SERVICES=1).
func New(t *testing.T) context.Context {
	t.Helper()
	path := testserver.NeedBinary(t, "chromium", "chromium-browser")
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-proxy-server", true), // loopback only, whatever the environment says
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancel()
		cancelAlloc() // waits for the browser to exit
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser for the test's lifetime
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx
}
