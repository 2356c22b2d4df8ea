package mqtt

import (
	"strings"
	"testing"
	"time"
)

func TestMessageMapping(t *testing.T) {
	l := &Link{cfg: Config{Prefix: "mqtt/"}, opts: Options{MaxMessageSize: 16}}
	for name, tc := range []struct {
		topic    string
		payload  []byte
		retained bool
		want     string // topic event data
		drop     dropKind
		err      string
	}{
		{topic: "sensors/kitchen/temp", payload: []byte("21.5"), want: "mqtt/sensors/kitchen/temp  21.5"},
		{topic: "s", payload: []byte("21.5"), retained: true, want: "mqtt/s retained 21.5"},
		{topic: "s", payload: []byte{0xff, 0x00, 0x01}, want: "mqtt/s base64 /wAB"},
		{topic: "s", payload: []byte{0xff}, retained: true, want: "mqtt/s retained-base64 /w=="},
		{topic: "s", payload: []byte("héllo\nwörld"), want: "mqtt/s  héllo\nwörld"},
		{topic: "s", payload: nil, want: "mqtt/s  "},
		{topic: "s", payload: []byte(strings.Repeat("x", 16)), want: "mqtt/s  " + strings.Repeat("x", 16)},
		{topic: "s", payload: []byte(strings.Repeat("x", 17)), drop: dropTooLarge, err: "17 bytes"},
		// 12 binary bytes are 16 in base64, 13 are 20.
		{topic: "s", payload: append([]byte{0xff}, make([]byte, 11)...), want: "mqtt/s base64 /wAAAAAAAAAAAAAA"},
		{topic: "s", payload: append([]byte{0xff}, make([]byte, 12)...), drop: dropTooLarge, err: "20 bytes"},
		{topic: strings.Repeat("a/", 16) + "a", payload: []byte("x"), drop: dropBadTopic, err: "deeper"},
		{topic: "ctl\x01", payload: []byte("x"), drop: dropBadTopic, err: "control character"},
	} {
		msg, drop, err := l.message(tc.topic, tc.payload, tc.retained)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || drop != tc.drop {
				t.Errorf("case %d: got %v (kind %d), want error %q (kind %d)", name, err, drop, tc.err, tc.drop)
			}
			continue
		}
		if err != nil {
			t.Errorf("case %d: %v", name, err)
			continue
		}
		if got := msg.Topic + " " + msg.Event + " " + msg.Data; got != tc.want {
			t.Errorf("case %d: got %q, want %q", name, got, tc.want)
		}
	}
}

// Without a prefix an MQTT topic could land in the hub's own $pubsub
// namespace; such messages are skipped.
func TestMessageReservedTopic(t *testing.T) {
	l := &Link{}
	if _, kind, err := l.message("$pubsub/stats", []byte("x"), false); err == nil || kind != dropBadTopic {
		t.Fatalf("got %v, kind %d", err, kind)
	}
	if msg, _, err := l.message("$SYS/broker/uptime", []byte("5"), false); err != nil || msg.Topic != "$SYS/broker/uptime" {
		t.Fatalf("$SYS topic: %+v %v", msg, err)
	}
}

func TestWarnLimiter(t *testing.T) {
	var w warnLimiter
	now := time.Unix(1000, 0)
	if ok, n := w.allow(now); !ok || n != 0 {
		t.Fatalf("first: %v %d", ok, n)
	}
	for i := range 5 {
		if ok, _ := w.allow(now.Add(time.Duration(i) * time.Second)); ok {
			t.Fatalf("allowed again after %ds", i)
		}
	}
	if ok, n := w.allow(now.Add(warnEvery)); !ok || n != 5 {
		t.Fatalf("after %s: %v, %d held back, want 5", warnEvery, ok, n)
	}
}
