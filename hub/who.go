package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Who is here, with Options.Presence: for each filter, as written (what
// subscribers give; a wildcard filter is its own entry, not expanded to
// the topics it matches), the identities subscribed to it, each with its
// number of connections, and a count of anonymous subscriptions (no
// Subject). Long-polls (Client.Quiet) are not counted, as watchers do not
// count them. A hub without presence keeps no lists.

// PresenceJoin and PresenceLeave are the topics of the signals sent when
// an identity's first connection to a filter begins and when its last
// ends (PresenceChange).
const (
	PresenceJoin  = "$pubsub/join"
	PresenceLeave = "$pubsub/leave"
)

const (
	// MaxPresenceIdentities caps the identities listed per filter; the
	// connections of further identities are counted (Total), not listed,
	// and make no join or leave.
	MaxPresenceIdentities = 1000
	// MaxPresenceFilters caps the filters whose identities are listed;
	// the subscriptions to further filters are counted, not listed.
	MaxPresenceFilters = 10000
	// MaxPresenceClaims caps the bytes of the chosen claims kept per
	// identity: a claim that would take them beyond it is left out.
	MaxPresenceClaims = 1024
	// MaxPresencePage caps the identities one Present call returns.
	MaxPresencePage = 1000
)

// PresenceIdentity is one identity subscribed to a filter.
type PresenceIdentity struct {
	Sub string `json:"sub"`
	// Claims holds the token claims Options.PresenceClaims chooses, as a
	// JSON object; absent when none is chosen or present.
	Claims      json.RawMessage `json:"claims,omitempty"`
	Connections int             `json:"connections"`
}

// PresenceList is who is subscribed to a filter.
type PresenceList struct {
	Topic string `json:"topic"`
	// Subscribers lists identities in the order of their sub, after the
	// cursor Present was given, at most its limit.
	Subscribers []PresenceIdentity `json:"subscribers"`
	// Anonymous counts the subscriptions without an identity.
	Anonymous int `json:"anonymous"`
	// Total counts every subscription: listed, anonymous, and those past
	// the caps.
	Total int `json:"total"`
	// Next, when set, is the cursor of the next page.
	Next string `json:"next,omitempty"`
	// Truncated: some identities are counted in Total but listed on no
	// page (MaxPresenceIdentities, MaxPresenceFilters).
	Truncated bool `json:"truncated,omitempty"`
}

// PresenceChange is the data of a $pubsub/join or $pubsub/leave event.
type PresenceChange struct {
	Topic  string          `json:"topic"`
	Sub    string          `json:"sub"`
	Claims json.RawMessage `json:"claims,omitempty"`
}

// present is one filter's identities on this hub.
type present struct {
	ids       map[string]*presentID
	anonymous int
}

// presentID is one identity's connections to a filter.
type presentID struct {
	claims json.RawMessage
	conns  int
}

// Claims gives the subscription the claims of its token, a JSON object:
// the hub keeps only those Options.PresenceClaims chooses, for presence.
func Claims(raw []byte) SubscribeOption {
	return func(s *Subscriber) { s.claims = raw }
}

// trackPresence counts s's connections to the filters it added and
// removed, and announces the identities that join and leave: on this hub,
// or across instances through a PresenceSharer (whoshare.go). h.mu is
// held.
func (h *Hub) trackPresence(s *Subscriber, added, removed []string) {
	if h.obs.presence == nil {
		return
	}
	sh := h.sharer()
	turn := func(f string, e *presentID, joined bool) {
		if sh == nil {
			h.announceTurn(PresenceChange{Topic: f, Sub: s.subject, Claims: e.claims}, joined)
		}
	}
	for _, f := range added {
		h.addPresence(s, f, turn)
	}
	for _, f := range removed {
		h.removePresence(s, f, turn)
	}
	if sh != nil {
		for _, f := range added {
			h.shareState(f, s.subject)
		}
		for _, f := range removed {
			h.shareState(f, s.subject)
		}
	}
}

// rebuildPresence drops the lists when presence is off, and makes them
// from the hub's subscriptions when it turns on (no joins are announced
// for them): a hub without presence keeps none. h.mu is held.
func (h *Hub) rebuildPresence() {
	if h.obs.presence == nil {
		h.obs.present = nil
		return
	}
	if h.obs.present != nil {
		return
	}
	h.obs.present = make(map[string]*present)
	seen := make(map[*Subscriber]bool)
	none := func(string, *presentID, bool) {}
	h.index.root.walk(func(s *Subscriber) {
		if seen[s] || s.removed || s.client.Quiet {
			return
		}
		seen[s] = true
		for _, f := range watched(slices.Clone(s.filters)) {
			h.addPresence(s, f, none)
		}
	})
	if h.obs.share != nil {
		h.shareAll()
	} else if len(h.obs.occupancy) > 0 {
		// Subscriptions exist, so the broker has started: share them.
		h.sharer()
	}
}

// addPresence counts s's new connection to f; turn is told of a join.
// h.mu is held.
func (h *Hub) addPresence(s *Subscriber, f string, turn func(string, *presentID, bool)) {
	p := h.obs.present[f]
	if p == nil {
		if len(h.obs.present) >= MaxPresenceFilters {
			return
		}
		p = &present{ids: make(map[string]*presentID)}
		h.obs.present[f] = p
	}
	if s.subject == "" {
		p.anonymous++
		return
	}
	if e := p.ids[s.subject]; e != nil {
		e.conns++
		return
	}
	if len(p.ids) >= MaxPresenceIdentities {
		return
	}
	e := &presentID{claims: h.chosenClaims(s.claims), conns: 1}
	p.ids[s.subject] = e
	turn(f, e, true)
}

// removePresence uncounts s's connection to f; turn is told of a leave.
// h.mu is held.
func (h *Hub) removePresence(s *Subscriber, f string, turn func(string, *presentID, bool)) {
	p := h.obs.present[f]
	if p == nil {
		return
	}
	if s.subject == "" {
		p.anonymous = max(0, p.anonymous-1)
	} else if e := p.ids[s.subject]; e != nil {
		if e.conns--; e.conns <= 0 {
			delete(p.ids, s.subject)
			turn(f, e, false)
		}
	}
	if len(p.ids) == 0 && h.obs.occupancy[f] == 0 {
		delete(h.obs.present, f)
	}
}

// announceTurn queues the event of an identity's join or leave, with
// presence on. h.mu is held.
func (h *Hub) announceTurn(c PresenceChange, joined bool) {
	p := h.obs.presence
	if p == nil {
		return
	}
	topic := PresenceLeave
	if joined {
		topic = PresenceJoin
	}
	data, _ := json.Marshal(c)
	select {
	case p.events <- Message{Topic: topic, Data: string(data), Time: time.Now()}:
	default:
		h.obs.presenceDropped.Add(1)
	}
}

// chosenClaims returns the claims of raw that Options.PresenceClaims
// names, as a JSON object of at most MaxPresenceClaims bytes; nil for none.
func (h *Hub) chosenClaims(raw []byte) json.RawMessage {
	names := h.Options().PresenceClaims
	if len(names) == 0 || len(raw) == 0 {
		return nil
	}
	var all map[string]json.RawMessage
	if json.Unmarshal(raw, &all) != nil {
		return nil
	}
	out := []byte{'{'}
	for _, n := range names {
		v, ok := all[n]
		if !ok {
			continue
		}
		key, _ := json.Marshal(n)
		if len(out)+len(key)+len(v)+3 > MaxPresenceClaims {
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(append(append(out, key...), ':'), v...)
	}
	if len(out) == 1 {
		return nil
	}
	return append(out, '}')
}

// Present returns who is subscribed to filter, as written: at most limit
// identities (MaxPresencePage at most) whose sub sorts after after. A hub
// whose broker is a PresenceSharer answers for every instance.
func (h *Hub) Present(ctx context.Context, filter string, limit int, after string) (PresenceList, error) {
	if err := ValidateFilter(filter); err != nil {
		return PresenceList{}, err
	}
	if sh, ok := h.broker.(PresenceSharer); ok {
		if err := h.Start(); err != nil {
			return PresenceList{}, err
		}
		l, err := sh.PresentAll(ctx, filter)
		if err != nil {
			return PresenceList{}, fmt.Errorf("reading presence: %w", err)
		}
		return l.page(limit, after), nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	l := PresenceList{Topic: filter, Total: h.obs.occupancy[filter]}
	if p := h.obs.present[filter]; p != nil {
		l.Anonymous = p.anonymous
		for sub, e := range p.ids {
			l.Subscribers = append(l.Subscribers, PresenceIdentity{Sub: sub, Claims: e.claims, Connections: e.conns})
		}
	}
	return l.page(limit, after), nil
}

// page returns l, which lists every identity, with those whose sub sorts
// after after, at most limit (1 to MaxPresencePage), in order, and the
// cursor of the next page. An identity counted in Total and not listed
// makes it Truncated.
func (l PresenceList) page(limit int, after string) PresenceList {
	limit = min(max(limit, 1), MaxPresencePage)
	listed := 0
	for _, e := range l.Subscribers {
		listed += e.Connections
	}
	l.Truncated = listed+l.Anonymous < l.Total
	l.Subscribers = slices.DeleteFunc(l.Subscribers, func(e PresenceIdentity) bool { return e.Sub <= after })
	slices.SortFunc(l.Subscribers, func(a, b PresenceIdentity) int { return strings.Compare(a.Sub, b.Sub) })
	if len(l.Subscribers) > limit {
		l.Subscribers = l.Subscribers[:limit]
		l.Next = l.Subscribers[limit-1].Sub
	}
	if l.Subscribers == nil {
		l.Subscribers = []PresenceIdentity{}
	}
	return l
}

// Options returns the hub's options, as SetOptions last set them.
func (h *Hub) Options() Options {
	if o := h.obs.opts.Load(); o != nil {
		return *o
	}
	return Options{}
}
