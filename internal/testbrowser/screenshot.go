package testbrowser

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// ScreenshotsEnv, set to 1, makes Screenshot write the documentation's
// screenshots; otherwise it only checks that the page renders.
const ScreenshotsEnv = "PUBSUB_SCREENSHOTS"

// imagesDir is docs/images in the repository, found from this file.
var imagesDir = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "docs", "images")
}()

// Screenshot captures the page of tab at width×height CSS pixels and checks
// that it rendered: a PNG of that size that is not one flat colour. With
// PUBSUB_SCREENSHOTS=1 it writes it to docs/images/name; otherwise it checks
// that docs/images/name is there, a PNG, for the docs that show it.
func Screenshot(t *testing.T, tab context.Context, name string, width, height int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, testserver.Wait)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, height)); err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot of %s: %v", name, err)
	}
	if b := img.Bounds(); int64(b.Dx()) != width || int64(b.Dy()) != height {
		t.Fatalf("screenshot of %s: %v, want %dx%d", name, b, width, height)
	}
	if flat(img) {
		t.Fatalf("screenshot of %s is one flat colour: the page did not render", name)
	}
	path := filepath.Join(imagesDir, name)
	if os.Getenv(ScreenshotsEnv) == "1" {
		if err := os.WriteFile(path, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
		return
	}
	committed, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v: run the test with %s=1 to make it", err, ScreenshotsEnv)
	}
	if _, err := png.Decode(bytes.NewReader(committed)); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// flat reports whether every pixel of img has the same colour.
func flat(img image.Image) bool {
	b := img.Bounds()
	first := img.At(b.Min.X, b.Min.Y)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if img.At(x, y) != first {
				return false
			}
		}
	}
	return true
}
