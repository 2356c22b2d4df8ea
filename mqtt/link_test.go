package mqtt

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/internal/mqtttest"
)

// Messages on subscribed filters reach the hub under prefix + MQTT topic,
// in order; others do not; binary payloads arrive as base64.
func TestLinkPublishesIntoHub(t *testing.T) {
	b := mqtttest.Embedded(t, mqtttest.Options{})
	h := newHub(t)
	sub := subscribe(t, h, "mqtt/#")
	l, logs := startLink(t, Config{
		URL:       b.URL(),
		ClientID:  "link-test",
		Prefix:    "mqtt/",
		Subscribe: []Subscription{{Filter: "sensors/+/temp", QoS: 1}, {Filter: "alerts/#", QoS: 0}},
	}, h, 1024)
	waitStatus(t, l, StatusConnected)
	waitLog(t, logs, "mqtt connected")

	b.Publish("sensors/kitchen/temp", []byte("21.5"), 1, false)
	b.Publish("sensors/kitchen/humidity", []byte("40"), 1, false) // not subscribed
	b.Publish("alerts/fire/floor1", []byte{0xde, 0xad, 0xbe, 0xef}, 0, false)
	b.Publish("sensors/hall/temp", []byte("19"), 1, false)

	for _, want := range []string{
		"mqtt/sensors/kitchen/temp  21.5",
		"mqtt/alerts/fire/floor1 base64 3q2+7w==",
		"mqtt/sensors/hall/temp  19",
	} {
		m := next(t, sub)
		if got := m.Topic + " " + m.Event + " " + m.Data; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	waitState(t, l, "3 received and published, 1 connect", func(st State) bool {
		return st.Connects == 1 && st.Received == 3 && st.Published == 3 && st.Dropped == 0
	})
}

// The broker's retained value of a topic is sent on subscribe: it enters
// the hub's history flagged "retained", so a subscriber that asks for
// history (last_id=earliest) gets the current value.
func TestLinkRetainedBecomesHistory(t *testing.T) {
	b := mqtttest.Embedded(t, mqtttest.Options{})
	b.Publish("sensors/kitchen/temp", []byte("21.5"), 1, true)
	b.Publish("sensors/hall/temp", []byte{0x80}, 1, true)
	h := newHub(t)
	l, _ := startLink(t, Config{URL: b.URL(), ClientID: "retained-test", Subscribe: []Subscription{{Filter: "sensors/#", QoS: 1}}}, h, 1024)
	waitStatus(t, l, StatusConnected)

	// Wait until both retained messages went through, then read them back
	// from history as a newcomer would.
	waitState(t, l, "2 published", func(st State) bool { return st.Published == 2 })
	s, backlog, gap, err := h.Subscribe(context.Background(), []string{"sensors/#"}, hub.Earliest)
	if err != nil || gap != nil {
		t.Fatal(err, gap)
	}
	defer s.Close()
	got := map[string]string{}
	for _, m := range backlog {
		got[m.Topic] = m.Event + " " + m.Data
	}
	want := map[string]string{"sensors/kitchen/temp": "retained 21.5", "sensors/hall/temp": "retained-base64 gA=="}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("history %v, want %v", got, want)
	}

	// A live update of a retained topic is a plain message.
	b.Publish("sensors/kitchen/temp", []byte("22"), 1, true)
	if m := next(t, s); m.Event != "" || m.Data != "22" {
		t.Fatalf("live update %+v", m)
	}
}

// Caddy starts while the broker is down: Start returns at once, the link
// retries with back-off and connects when the broker comes up.
func TestLinkBrokerDownAtStart(t *testing.T) {
	b := mqtttest.Embedded(t, mqtttest.Options{Down: true})
	h := newHub(t)
	sub := subscribe(t, h, "#")
	l, logs := startLink(t, Config{URL: b.URL(), ClientID: "down-test", Subscribe: []Subscription{{Filter: "a", QoS: 1}}}, h, 1024)
	waitLog(t, logs, "mqtt connect failed; retrying")
	if st := l.State(); st.Status != StatusConnecting || !strings.Contains(st.LastError, "connection refused") {
		t.Fatalf("state while the broker is down: %+v", st)
	}
	b.Up()
	waitStatus(t, l, StatusConnected)
	b.Publish("a", []byte("up"), 1, false)
	if m := next(t, sub); m.Data != "up" {
		t.Fatalf("got %+v", m)
	}
}

// The link is cut off mid-stream; QoS 1 messages published meanwhile are
// kept in the persistent session and arrive after the link reconnects by
// itself. (The embedded broker resends a session's queued messages in no
// particular order; the end-to-end suite checks the order with mosquitto.)
func TestLinkOutageKeepsQoS1Messages(t *testing.T) {
	b := mqtttest.Embedded(t, mqtttest.Options{})
	h := newHub(t)
	sub := subscribe(t, h, "#")
	l, logs := startLink(t, Config{URL: b.URL(), ClientID: "outage-test", Subscribe: []Subscription{{Filter: "q/#", QoS: 1}}}, h, 1024)
	waitStatus(t, l, StatusConnected)
	b.Publish("q/1", []byte("before"), 1, false)
	if m := next(t, sub); m.Data != "before" {
		t.Fatalf("got %+v", m)
	}

	b.Down()
	waitLog(t, logs, "mqtt connection lost; reconnecting")
	waitStatus(t, l, StatusReconnecting)
	want := map[string]bool{}
	for i := range 3 {
		data := fmt.Sprintf("during %d", i)
		want[data] = true
		b.Publish("q/1", []byte(data), 1, false)
	}
	b.Up()
	// QoS 1 is at least once: "before" may come again if its PUBACK did
	// not reach the broker before the cut.
	for len(want) > 0 {
		m := next(t, sub)
		if !want[m.Data] && m.Data != "before" {
			t.Fatalf("after reconnect got %+v, want one of %v", m, want)
		}
		delete(want, m.Data)
	}
	waitStatus(t, l, StatusConnected)
	b.Publish("q/1", []byte("after"), 1, false)
	m := next(t, sub)
	for m.Data == "before" {
		m = next(t, sub)
	}
	if m.Data != "after" {
		t.Fatalf("got %+v", m)
	}
	if st := l.State(); st.Connects != 2 {
		t.Errorf("connects = %d, want 2", st.Connects)
	}
	connects := logs.FilterMessage("mqtt connected").All()
	if len(connects) != 2 || connects[0].ContextMap()["session_present"] != false || connects[1].ContextMap()["session_present"] != true {
		t.Errorf("connected logs %v: want a new session, then the kept one", connects)
	}
}

// Refused credentials are an error log that says what to check, with the
// username and never the password; the link keeps retrying.
func TestLinkWrongCredentials(t *testing.T) {
	b := mqtttest.Embedded(t, mqtttest.Options{Users: map[string]string{"caddy": "right-password"}})
	h := newHub(t)
	l, logs := startLink(t, Config{
		URL: b.URL(), ClientID: "creds-test", Username: "caddy", Password: "wrong-password",
		Subscribe: []Subscription{{Filter: "a", QoS: 1}},
	}, h, 1024)
	e := waitLog(t, logs, "mqtt broker refused the login: check username and password")
	if e.Level != zapcore.ErrorLevel || e.ContextMap()["username"] != "caddy" {
		t.Errorf("log entry %+v", e)
	}
	if st := l.State(); st.Status != StatusConnecting || !strings.HasPrefix(st.LastError, "broker refused the login") {
		t.Errorf("state %+v", st)
	}
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.Message, e.ContextMap()), "wrong-password") {
			t.Errorf("log shows the password: %+v", e)
		}
	}

	// The right password connects.
	l2, _ := startLink(t, Config{
		URL: b.URL(), ClientID: "creds-test-2", Username: "caddy", Password: "right-password",
		Subscribe: []Subscription{{Filter: "a", QoS: 1}},
	}, h, 1024)
	waitStatus(t, l2, StatusConnected)
}

// Too large messages and MQTT topics that make no hub topic are dropped
// with a warning, at most one per kind per interval; the rest flows.
func TestLinkDropsWithBoundedWarnings(t *testing.T) {
	b := mqtttest.Embedded(t, mqtttest.Options{})
	h := newHub(t)
	sub := subscribe(t, h, "#")
	l, logs := startLink(t, Config{URL: b.URL(), ClientID: "drop-test", Subscribe: []Subscription{{Filter: "#", QoS: 1}}}, h, 8)
	waitStatus(t, l, StatusConnected)
	for range 3 {
		b.Publish("big", []byte("123456789"), 1, false)
		b.Publish(strings.Repeat("d/", 20)+"x", []byte("deep"), 1, false)
	}
	b.Publish("small", []byte("12345678"), 1, false)
	if m := next(t, sub); m.Topic != "small" {
		t.Fatalf("got %+v", m)
	}
	waitState(t, l, "6 dropped, 1 published", func(st State) bool { return st.Dropped == 6 && st.Published == 1 })
	if n := logs.FilterMessage("mqtt message dropped: too large").Len(); n != 1 {
		t.Errorf("%d too-large warnings, want 1", n)
	}
	if n := logs.FilterMessage("mqtt message dropped: topic").Len(); n != 1 {
		t.Errorf("%d topic warnings, want 1", n)
	}
}

// A reload with a changed mqtt block but the same client ID: the new link
// takes the session over, the old one steps aside instead of fighting for
// it, and takes it back if the new one goes away first (a failed reload).
func TestLinkSameClientIDHandsOver(t *testing.T) {
	b := mqtttest.Embedded(t, mqtttest.Options{})
	oldHub, newHub := newHub(t), newHub(t)
	oldSub, newSub := subscribe(t, oldHub, "#"), subscribe(t, newHub, "#")
	cfg := Config{URL: b.URL(), ClientID: "handover", Subscribe: []Subscription{{Filter: "t/#", QoS: 1}}}
	old, oldLogs := startLink(t, cfg, oldHub, 1024)
	waitStatus(t, old, StatusConnected)

	cfg.Prefix = "new/"
	cur, _ := startLink(t, cfg, newHub, 1024)
	waitStatus(t, cur, StatusConnected)
	waitStatus(t, old, StatusStandby)
	waitLog(t, oldLogs, "mqtt session taken over by the newer link with the same client_id")
	b.Publish("t/1", []byte("to new"), 1, false)
	if m := next(t, newSub); m.Topic != "new/t/1" {
		t.Fatalf("new link got %+v", m)
	}
	if st := old.State(); st.Connects != 1 || st.Status != StatusStandby {
		t.Fatalf("old link did not stay aside: %+v", st)
	}

	// The new config goes away before the old one: the old link resumes.
	if err := cur.Close(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, old, StatusConnected)
	b.Publish("t/2", []byte("to old"), 1, false)
	m := next(t, oldSub)
	if m.Data == "to new" { // at least once: the new link's PUBACK may not have made it
		m = next(t, oldSub)
	}
	if m.Topic != "t/2" {
		t.Fatalf("old link got %+v", m)
	}
}

// TLS with a private CA and a client certificate, over TCP and over
// WebSocket; without the CA the broker is not trusted.
func TestLinkTLSAndWebSocket(t *testing.T) {
	pki := newPKI(t)
	serverTLS := &tls.Config{
		Certificates: []tls.Certificate{pki.Server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pki.Pool,
		MinVersion:   tls.VersionTLS12,
	}
	clientTLS := &TLS{CA: pki.CAFile, Cert: pki.ClientCert, Key: pki.ClientKey}
	for name, opts := range map[string]mqtttest.Options{
		"ssl": {TLS: serverTLS},
		"ws":  {WebSocket: true},
		"wss": {TLS: serverTLS, WebSocket: true},
	} {
		t.Run(name, func(t *testing.T) {
			b := mqtttest.Embedded(t, opts)
			h := newHub(t)
			sub := subscribe(t, h, "#")
			cfg := Config{URL: b.URL(), ClientID: "tls-" + name, Subscribe: []Subscription{{Filter: "a", QoS: 1}}}
			if opts.TLS != nil {
				cfg.TLS = clientTLS
			}
			l, _ := startLink(t, cfg, h, 1024)
			waitStatus(t, l, StatusConnected)
			b.Publish("a", []byte(name), 1, false)
			if m := next(t, sub); m.Data != name {
				t.Fatalf("got %+v", m)
			}
		})
	}

	t.Run("untrusted", func(t *testing.T) {
		b := mqtttest.Embedded(t, mqtttest.Options{TLS: serverTLS})
		l, logs := startLink(t, Config{URL: b.URL(), ClientID: "tls-untrusted", Subscribe: []Subscription{{Filter: "a", QoS: 1}}}, newHub(t), 1024)
		waitLog(t, logs, "mqtt connect failed; retrying")
		if st := l.State(); st.Status != StatusConnecting || !strings.Contains(st.LastError, "certificate") {
			t.Fatalf("state %+v", st)
		}
	})
}

// A link that is only created, as by `caddy validate`, opens no
// connection; Close of a started link stops all of its goroutines.
func TestLinkLifecycle(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
			accepted <- struct{}{}
		}
	}()
	cfg := Config{URL: "tcp://" + ln.Addr().String(), ClientID: "validate-only", Subscribe: []Subscription{{Filter: "a", QoS: 1}}}
	l, err := New(cfg, newHub(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Start() // after Close: nothing
	if st := l.State(); st.Status != StatusClosed {
		t.Fatalf("state %+v", st)
	}

	before := runtime.NumGoroutine()
	b := mqtttest.Embedded(t, mqtttest.Options{})
	baseline := runtime.NumGoroutine()
	l2, _ := startLink(t, Config{URL: b.URL(), ClientID: "lifecycle", Subscribe: []Subscription{{Filter: "a", QoS: 1}}}, newHub(t), 1024)
	waitStatus(t, l2, StatusConnected)
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before the link (%d before the broker):\n%s",
				runtime.NumGoroutine(), baseline, before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-accepted:
		t.Fatal("a link that was never started connected")
	default:
	}
}

// Close stops the store loop too, also while it waits to store a message
// in a hub that refuses it; that message was not acknowledged, so the
// broker hands it to the next link with the same client ID.
func TestLinkCloseWhileStoring(t *testing.T) {
	b := mqtttest.Embedded(t, mqtttest.Options{})
	b.Publish("warm-up", []byte("starts the publisher"), 1, false)
	closed := newHub(t)
	if err := closed.Close(); err != nil { // publishes fail with ErrHubClosed, which the link retries
		t.Fatal(err)
	}
	cfg := Config{URL: b.URL(), ClientID: "close-storing", Subscribe: []Subscription{{Filter: "a", QoS: 1}}}
	baseline := runtime.NumGoroutine()
	l, logs := startLink(t, cfg, closed, 1024)
	waitStatus(t, l, StatusConnected)
	b.Publish("a", []byte("kept"), 1, false)
	e := waitLog(t, logs, "mqtt message not stored: hub unavailable or behind; retrying")
	if !strings.Contains(fmt.Sprint(e.ContextMap()["error"]), "hub closed") {
		t.Errorf("log entry %+v", e)
	}
	closing := make(chan error, 1)
	go func() { closing <- l.Close() }()
	select {
	case err := <-closing:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("Close did not return within", wait)
	}
	deadline := time.Now().Add(wait)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before the link:\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}

	h := newHub(t)
	sub := subscribe(t, h, "#")
	next2, _ := startLink(t, cfg, h, 1024)
	if m := next(t, sub); m.Data != "kept" {
		t.Fatalf("next link got %+v", m)
	}
	// Closed now, the link is most likely still waiting for its SUBACK,
	// which paho held for 45 s once the connection was gone.
	start := time.Now()
	if err := next2.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > closeWait+time.Second {
		t.Fatalf("closing a link in the middle of its SUBSCRIBE took %s", took)
	}
}
