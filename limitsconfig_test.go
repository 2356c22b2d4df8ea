package pubsub

import (
	"context"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// A limits block sets the limits it names; the others take their defaults.
func TestUnmarshalLimits(t *testing.T) {
	var h Handler
	d := caddyfile.NewTestDispenser(`pubsub {
		limits {
			topics 8
			per_ip 4
		}
	}`)
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	want := &Limits{Topics: 8, Subscribers: DefaultLimitSubscribers, PerIP: 4, Batch: DefaultLimitBatch, PollBatch: DefaultLimitPollBatch, PublishWait: caddy.Duration(DefaultLimitPublishWait)}
	if got := h.Limits.withDefaults(); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got := (*Limits)(nil).withDefaults(); got.PerIP != 0 || got.Subscribers != DefaultLimitSubscribers {
		t.Errorf("defaults: got %+v", got)
	}
}

// publish_wait and publish_rate parse to the JSON a config would give:
// the rate per second; an unset burst is one second's worth, at least 1,
// the same default whichever way the config came.
func TestUnmarshalPublishLimits(t *testing.T) {
	for _, tc := range []struct {
		body string
		want Limits
	}{
		{"publish_wait 300ms", Limits{PublishWait: caddy.Duration(300 * time.Millisecond)}},
		{"publish_rate 30/m", Limits{PublishRate: 0.5}},
		{"publish_rate 2.5/s\npublish_burst 7", Limits{PublishRate: 2.5, PublishBurst: 7}},
	} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("pubsub {\n limits {\n" + tc.body + "\n}\n}")); err != nil {
			t.Fatalf("%s: %v", tc.body, err)
		}
		if got := *h.Limits; got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.body, got, tc.want)
		}
	}
	for _, tc := range []struct {
		in    Limits
		wait  time.Duration
		rate  float64
		burst int
	}{
		{Limits{}, DefaultLimitPublishWait, 0, 0},
		{Limits{PublishRate: 0.5}, DefaultLimitPublishWait, 0.5, 1},
		{Limits{PublishRate: 2.5}, DefaultLimitPublishWait, 2.5, 3},
		{Limits{PublishWait: caddy.Duration(time.Second), PublishRate: 10, PublishBurst: 50}, time.Second, 10, 50},
	} {
		got := HubConfig{Limits: &tc.in}.withDefaults()
		opts := got.options()
		if opts.PublishWait != tc.wait || opts.PublishRate != tc.rate || opts.PublishBurst != tc.burst {
			t.Errorf("%+v: hub options %v %v %v, want %v %v %v", tc.in, opts.PublishWait, opts.PublishRate, opts.PublishBurst, tc.wait, tc.rate, tc.burst)
		}
	}
}

// A JSON config skips the Caddyfile's checks: Validate catches limits out
// of range.
func TestValidateLimits(t *testing.T) {
	for _, tc := range []struct {
		limits Limits
		err    string
	}{
		{Limits{Topics: -1}, "limits: topics -1 out of range 1..1024"},
		{Limits{Subscribers: 10_000_001}, "limits: subscribers 10000001 out of range 1..10000000"},
		{Limits{PerIP: -2}, "limits: per_ip -2 out of range 0..10000000"},
		{Limits{Batch: 10_001}, "limits: batch 10001 out of range 1..10000"},
		{Limits{PollBatch: -5}, "limits: poll_batch -5 out of range 1..10000"},
		{Limits{Topics: 1024, Subscribers: 1, PerIP: 0, Batch: 1, PollBatch: 10_000}, ""},
		{Limits{PublishWait: caddy.Duration(time.Millisecond)}, "limits: publish_wait 1ms out of range 10ms..1m0s"},
		{Limits{PublishRate: -1}, "limits: publish_rate -1 out of range 0..1000000 a second"},
		{Limits{PublishRate: 5, PublishBurst: -1}, "limits: publish_burst -1 out of range 1..1000000"},
		{Limits{PublishWait: caddy.Duration(time.Minute), PublishRate: 0.5, PublishBurst: 1}, ""},
	} {
		err := tc.limits.check()
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || err.Error() != tc.err) {
			t.Errorf("%+v: got %v, want %q", tc.limits, err, tc.err)
		}
	}
}

// per_ip counts Caddy's client_ip (the forwarded client behind a trusted
// proxy), else the TCP peer; IPv6 clients by their /64.
func TestClientAddr(t *testing.T) {
	for _, tc := range []struct{ remote, clientIP, want string }{
		{"192.0.2.1:5000", "", "192.0.2.1"},
		{"192.0.2.1:5000", "198.51.100.9", "198.51.100.9"},
		{"192.0.2.1:5000", "not an IP", "192.0.2.1"},
		{"[::ffff:192.0.2.1]:5000", "", "192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:443", "", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:443", "", "fe80::/64"},
		{"192.0.2.1:5000", "2001:db8::7", "2001:db8::/64"},
		{"@", "", ""},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		if tc.clientIP != "" {
			vars := map[string]any{caddyhttp.ClientIPVarKey: tc.clientIP}
			r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, vars))
		}
		if got := clientAddr(r); got != tc.want {
			t.Errorf("%s with client_ip %q: got %q, want %q", tc.remote, tc.clientIP, got, tc.want)
		}
		// Every request asks, and Caddy sets client_ip on each: an IPv4
		// address is its own answer, not a string allocated per request.
		if n := testing.AllocsPerRun(10, func() { clientAddr(r) }); n > 0 && tc.want == tc.clientIP && tc.want != "" {
			t.Errorf("%s with client_ip %q: %.0f allocations, want none", tc.remote, tc.clientIP, n)
		}
	}
}
