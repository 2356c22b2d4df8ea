package mqtt_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/chromedp/chromedp"

	"github.com/caddy-pubsub/caddy-pubsub/internal/mqtttest"
	"github.com/caddy-pubsub/caddy-pubsub/internal/testbrowser"
	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// The README's MQTT demo as a person sees it: examples/mqtt/Caddyfile
// runs against a broker that already holds a retained reading; the
// dashboard in a real browser shows it flagged "retained", then updates
// as sensors publish, binary payloads included.
func TestMQTTDashboard(t *testing.T) {
	s, b := startDashboard(t)
	browser := testbrowser.New(t)
	do(t, browser, chromedp.Navigate(s.Base+"/"))
	card := func(topic, part string) string {
		return `document.querySelector('[data-topic=` + js(topic) + `] .` + part + `')?.textContent`
	}
	waitJS(t, browser, "retained reading shown", card("mqtt/sensors/kitchen/temp", "value")+` === "21.5" && `+
		card("mqtt/sensors/kitchen/temp", "meta span:last-child")+` === "retained"`)
	waitJS(t, browser, "status live", `document.querySelector("#status").textContent === "live"`)

	b.Publish("sensors/kitchen/temp", []byte("22.5"), 1, false)
	waitJS(t, browser, "live update shown", card("mqtt/sensors/kitchen/temp", "value")+` === "22.5" && `+
		card("mqtt/sensors/kitchen/temp", "meta span:last-child")+` === ""`)
	b.Publish("sensors/door/raw", []byte{0xff, 0x00, 0x10}, 1, false)
	b.Publish("sensors/hall/temp", []byte("<img src=x onerror=alert(1)>"), 1, false)
	waitJS(t, browser, "binary reading shown", card("mqtt/sensors/door/raw", "value")+` === "3 bytes: ff 00 10"`)
	waitJS(t, browser, "markup shown as text", card("mqtt/sensors/hall/temp", "value")+` === "<img src=x onerror=alert(1)>" && !document.querySelector("img")`)
	waitJS(t, browser, "cards sorted by topic", `[...document.querySelectorAll(".card")].map((c) => c.dataset.topic).join() === `+
		js("mqtt/sensors/door/raw,mqtt/sensors/hall/temp,mqtt/sensors/kitchen/temp"))
}

// The dashboard as the docs show it, fed by the sensors of the example
// broker (docs/images/mqtt-dashboard.png; PUBSUB_SCREENSHOTS=1 rewrites it).
func TestMQTTDashboardScreenshot(t *testing.T) {
	s, b := startDashboard(t)
	browser := testbrowser.New(t)
	do(t, browser, chromedp.Navigate(s.Base+"/"))
	// The retained reading shown: the link to the broker is up.
	waitJS(t, browser, "first reading shown", `document.querySelectorAll(".card").length === 1`)
	for i := range 12 {
		x := float64(i)
		for topic, v := range map[string]float64{
			"sensors/kitchen/temp":      21 + 1.5*math.Sin(x/3),
			"sensors/bedroom/temp":      18.5 + math.Cos(x/4),
			"sensors/bathroom/humidity": 55 + 12*math.Sin(x/2),
		} {
			b.Publish(topic, []byte(strconv.FormatFloat(v, 'f', 1, 64)), 1, true)
		}
	}
	waitJS(t, browser, "every reading shown", `document.querySelectorAll(".card").length === 3 && [...document.querySelectorAll("polyline")].every((l) => l.getAttribute("points")?.split(" ").length >= 12)`)
	waitJS(t, browser, "status live", `document.querySelector("#status").textContent === "live"`)
	waitJS(t, browser, "highlights faded", `document.getAnimations().length === 0`)
	testbrowser.Screenshot(t, browser, "mqtt-dashboard.png", 800, 260)
}

// dashboard is examples/mqtt/Caddyfile running on a loopback port against
// an embedded broker.
type dashboard struct {
	*testserver.Server
	site string // the Caddyfile text it runs, for restarts
}

// startDashboard starts an embedded MQTT broker holding a retained reading
// and Caddy with examples/mqtt/Caddyfile, its addresses moved to free
// loopback ports.
func startDashboard(t *testing.T) (*dashboard, *mqtttest.Broker) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	t.Chdir(filepath.Join(filepath.Dir(file), "..", "..")) // the example's root is relative to the repository
	page, err := os.ReadFile(filepath.Join("examples", "mqtt", "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(page), "innerHTML") {
		t.Fatal("the dashboard must not write payloads as HTML")
	}
	example, err := os.ReadFile(filepath.Join("examples", "mqtt", "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	b := mqtttest.Embedded(t, mqtttest.Options{})
	b.Publish("sensors/kitchen/temp", []byte("21.5"), 1, true)
	site := string(example)
	for from, to := range map[string]string{"http://localhost:8083 {": "http://127.0.0.1:{PORT} {", "tcp://127.0.0.1:1883": b.URL()} {
		if !strings.Contains(site, from) {
			t.Fatalf("examples/mqtt/Caddyfile has no %q", from)
		}
		site = strings.Replace(site, from, to, 1)
	}
	return &dashboard{Server: testserver.Start(t, site), site: site}, b
}

// do runs actions within testserver.Wait.
func do(t *testing.T, browser context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(browser, testserver.Wait)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}

// waitJS waits until the JavaScript expression cond is true; on timeout it
// fails with the cards the page shows.
func waitJS(t *testing.T, browser context.Context, what, cond string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(browser, testserver.Wait+time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](cond,
		chromedp.WithPollingTimeout(testserver.Wait), chromedp.WithPollingInterval(20*time.Millisecond)))
	if err == nil {
		return
	}
	cards, _ := chromedp.Run(browser, chromedp.Evaluate[[]string](`[...document.querySelectorAll(".card")].map((c) => c.textContent)`))
	status, _ := chromedp.Run(browser, chromedp.Evaluate[string](`document.querySelector("#status").textContent`))
	t.Fatalf("%s: %v\nstatus: %q\ncards: %q", what, err, status, cards)
}

// js encodes v as a JavaScript literal.
func js(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// When the stream cannot be reopened (Caddy is gone), the dashboard says
// it is offline and why, instead of "reconnecting…" for ever; it goes live
// again when Caddy is back.
func TestMQTTDashboardErrorState(t *testing.T) {
	s, _ := startDashboard(t)
	browser := testbrowser.New(t)
	do(t, browser, chromedp.Navigate(s.Base+"/"))
	waitJS(t, browser, "status live", `document.querySelector("#status").textContent === "live"`)

	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	waitJS(t, browser, "error state shown", `document.querySelector("#status").classList.contains("down") && document.querySelector("#status").textContent.startsWith("offline")`)
	s.Load(s.site) // a new hub: the history the page would resume from is gone
	waitJS(t, browser, "live again", `document.querySelector("#status").textContent === "live (some older readings were no longer kept)"`)
}
