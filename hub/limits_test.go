package hub

import (
	"errors"
	"testing"
)

// Admit lets in MaxSubscribers connections in all and MaxPerClient per
// address; a released slot is free again, once, however often released,
// and an address holding nothing leaves no trace.
func TestAdmit(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 1, MaxSubscribers: 3, MaxPerClient: 2})
	a1 := admit(t, h, "a")
	admit(t, h, "a")
	if _, err := h.Admit("a"); !errors.Is(err, ErrClientLimit) || err.Error() != "too many connections from this address (limit 2)" {
		t.Fatalf("third from a: got %v", err)
	}
	b1 := admit(t, h, "b")
	if _, err := h.Admit("c"); !errors.Is(err, ErrHubFull) || err.Error() != "too many subscribers (limit 3)" {
		t.Fatalf("fourth in all: got %v", err)
	}
	a1()
	a1()
	if got := admitted(h); got != 2 {
		t.Fatalf("after releasing one twice: %d admitted, want 2", got)
	}
	admit(t, h, "a")
	if _, err := h.Admit(""); !errors.Is(err, ErrHubFull) {
		t.Fatalf("unknown address over the hub cap: got %v", err)
	}
	b1()
	if _, ok := h.admission.byAddr["b"]; ok {
		t.Error("an address holding no connection is still counted")
	}
	// An unknown address is held to the hub-wide cap only.
	admit(t, h, "")
}

// Lower limits (a reload) refuse new connections; those in stay, and
// releasing them after per-address counting was turned off keeps the
// counts right.
func TestAdmitLimitsChange(t *testing.T) {
	h, _ := newTestHub(t, Options{Queue: 1, MaxPerClient: 1})
	release := admit(t, h, "a")
	h.SetOptions(Options{Queue: 1, MaxSubscribers: 1})
	if _, err := h.Admit("b"); !errors.Is(err, ErrHubFull) {
		t.Fatalf("over the lowered cap: got %v", err)
	}
	release()
	if n, m := admitted(h), len(h.admission.byAddr); n != 0 || m != 0 {
		t.Fatalf("after release: %d admitted, %d addresses", n, m)
	}
	admit(t, h, "a")
}

// admit takes a slot that must be granted.
func admit(t *testing.T, h *Hub, addr string) func() {
	t.Helper()
	release, err := h.Admit(addr)
	if err != nil {
		t.Fatalf("admit %q: %v", addr, err)
	}
	return release
}

func admitted(h *Hub) int {
	h.admission.mu.Lock()
	defer h.admission.mu.Unlock()
	return h.admission.total
}
