package pubsub

import (
	"context"
	"net/http/httptest"
	"reflect"
	"testing"

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
	want := &Limits{Topics: 8, Subscribers: DefaultLimitSubscribers, PerIP: 4, Batch: DefaultLimitBatch, PollBatch: DefaultLimitPollBatch}
	if got := h.Limits.withDefaults(); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got := (*Limits)(nil).withDefaults(); got.PerIP != 0 || got.Subscribers != DefaultLimitSubscribers {
		t.Errorf("defaults: got %+v", got)
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
	}
}
