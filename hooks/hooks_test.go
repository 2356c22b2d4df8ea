package hooks

import (
	"strings"
	"testing"
	"time"
)

// The signature is the documented one: the vector docs/hooks.md gives, as
// openssl computes it:
//
//	printf '%s' '1796472000.{"hook":"connect"}' | openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef
func TestSignMatchesTheDocumentedAlgorithm(t *testing.T) {
	got := Sign([]byte("0123456789abcdef0123456789abcdef"), "1796472000", []byte(`{"hook":"connect"}`))
	if want := "sha256=55fb80ff0b483eed3961617ecd37d8b1361cf21a2bacfac12dcb440699fd6198"; got != want {
		t.Fatalf("Sign = %q, want %q", got, want)
	}
}

// A backend's reason reaches the client as one short printable line.
func TestCleanReason(t *testing.T) {
	for in, want := range map[string]string{
		"muted":                    "muted",
		"first\nsecond":            "first",
		"bell\x07 and \x1b[31mred": "bell and [31mred",
		"   ":                      "refused by the application",
		strings.Repeat("é", 150):   strings.Repeat("é", 100),
		"bad \xff utf-8":           "bad  utf-8",
		"tab\there":                "tabhere",
	} {
		if got := cleanReason(in); got != want {
			t.Errorf("cleanReason(%q) = %q, want %q", in, got, want)
		}
	}
}

// The breaker opens after its run of failures, lets one trial call
// through once its time is up, and closes on the trial's success or opens
// again on its failure.
func TestBreakerStates(t *testing.T) {
	b := breaker{failures: 2, open: time.Second}
	now := time.Unix(1000, 0)
	call := func(ok bool) bool {
		allowed, _ := b.allow(now)
		if allowed {
			b.record(ok, now)
		}
		return allowed
	}
	if !call(false) || !call(true) || !call(false) || b.state(now) != BreakerClosed {
		t.Fatal("a success between failures should reset the run")
	}
	if !call(false) || b.state(now) != BreakerOpen {
		t.Fatal("two failures in a row should open the breaker")
	}
	if call(true) {
		t.Fatal("an open breaker let a call through")
	}
	now = now.Add(time.Second)
	if b.state(now) != BreakerHalfOpen {
		t.Fatalf("state %d after the open time, want half-open", b.state(now))
	}
	if ok, trial := b.allow(now); !ok || !trial {
		t.Fatal("no trial call after the open time")
	}
	if ok, _ := b.allow(now); ok {
		t.Fatal("a second call went while the trial was in flight")
	}
	b.record(false, now)
	if b.state(now) != BreakerOpen || call(true) {
		t.Fatal("a failed trial should open the breaker again")
	}
	now = now.Add(time.Second)
	if !call(true) || b.state(now) != BreakerClosed {
		t.Fatal("a successful trial should close the breaker")
	}
}
