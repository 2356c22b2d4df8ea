package hub

import (
	"context"
	"errors"
	"time"
)

// Earliest is the resume position that asks for every retained message.
const Earliest = "earliest"

// ErrUnavailable is returned (wrapped) by a broker that cannot take a publish
// right now, e.g. while its server is down. The HTTP edge answers 503.
var ErrUnavailable = errors.New("broker unavailable")

// Retention bounds a hub's history: the messages of topics that no rule
// matches, at most Count of them, none older than MaxAge. Count 0 keeps no
// messages, whatever MaxAge says; MaxAge 0 means no age bound. Rules bound
// the topics they match instead, each topic on its own (retention.go).
type Retention struct {
	Count  int
	MaxAge time.Duration
	// Rules are the per-topic retention rules, as configured; a broker
	// matches topics against them in the order of OrderRules.
	Rules []RetentionRule
	// RuleTopics caps the topics each rule keeps messages of; beyond it
	// the topic published to least recently loses all its messages. 0
	// means DefaultRuleTopics.
	RuleTopics int
}

// Keeps reports whether r's hub-wide bound retains any message at all.
func (r Retention) Keeps() bool { return r.Count > 0 }

// RuleRetainer is implemented by brokers that apply Retention.Rules. A
// hub whose retention has rules needs one: the configuration refuses
// rules for any other broker rather than ignore them.
type RuleRetainer interface {
	RetainsByRule()
}

// Gap tells a resuming subscriber that messages after LastID (the ID it
// resumed from) are no longer retained: it may have missed some. FirstID is
// the oldest message still retained ("" if none).
type Gap struct {
	LastID  string `json:"last_id"`
	FirstID string `json:"first_id"`
}

// Query asks a Broker for a page of its history (Since).
type Query struct {
	After string // resume after this ID; Earliest for all retained
	Upto  string // the last ID to return; "" for the broker's Head
	// Match, when set, keeps only the messages whose topic it accepts.
	Match func(topic string) bool
	// Limit bounds the messages of one page; 0 means ReplayPage.
	Limit int
	// Continued says that this page continues one read before (Next):
	// the reader was told then of what was missing up to that page, so
	// Since tells it only of what went missing since Upto was the head.
	Continued bool
}

// Next turns q into the query for the page after p, which was read with
// q and has More.
func (q *Query) Next(p Page) {
	q.After = p.Messages[len(p.Messages)-1].ID
	q.Continued = true
}

// Page is part of a broker's history: Messages, oldest first, a Gap when
// the query's After is no longer covered, and More when Limit cut it short.
type Page struct {
	Messages []*Message
	Gap      *Gap
	More     bool
}

// ReplayPage is the most messages one page of a replay holds: a resume
// never holds more of the history in memory at once.
const ReplayPage = 128

// PageLimit is the most messages a page for q holds.
func (q Query) PageLimit() int {
	if q.Limit > 0 {
		return q.Limit
	}
	return ReplayPage
}

// Accepts reports whether q asks for messages on topic.
func (q Query) Accepts(topic string) bool { return q.Match == nil || q.Match(topic) }

// Broker orders, stores and distributes the messages of one hub. The memory
// broker keeps them in this process; other brokers share them between Caddy
// instances. A broker hands every message, in ID order, to the deliver
// function given to Start, from one goroutine at a time.
type Broker interface {
	// Start is called once by the hub before any other method.
	Start(deliver func(*Message)) error

	// Publish stores msgs atomically and in order, assigns their IDs and
	// times, and returns the IDs.
	Publish(ctx context.Context, msgs []Message) ([]string, error)

	// Since returns a page of the retained messages that q asks for: the
	// ones after q.After and up to and including q.Upto whose topic
	// q.Match accepts, oldest first, at most q.Limit of them. After
	// Earliest means from the oldest retained one. When After is not
	// covered by the retained history (too old, from another epoch, not an
	// ID this broker issued) the page starts at the oldest retained message
	// and carries a Gap. Upto "" (nothing delivered yet) means up to where
	// the broker's delivery starts (Head). Page.More says the limit cut the
	// page short: the next page is asked for with After set to the last
	// message's ID. A broker skips the messages Match rejects without
	// copying them, and never returns a record that fails ValidateMessage.
	Since(ctx context.Context, q Query) (Page, error)

	// Head returns the ID of the last message stored before the broker's
	// delivery starts ("" if none), without reading history: what Since
	// reads up to when Upto is "". Nothing the hub delivers comes before
	// it.
	Head(ctx context.Context) (string, error)

	// SetRetention applies new history bounds (on config reload).
	SetRetention(Retention)

	// Close releases the broker's resources; Start is not called again.
	Close() error
}

// Sequencer is implemented by brokers whose delivery can lag behind IDs
// that clients already saw elsewhere (another instance on the same Redis):
// the hub then keeps a subscriber that resumes from such an ID from getting
// again, live, the messages up to it.
type Sequencer interface {
	// After reports whether id comes after ref. It is false only when id
	// is known to be ref or older; IDs it cannot compare are after.
	After(id, ref string) bool
}

// Occupier is implemented by brokers shared between instances, to count
// which filters have subscriptions on any instance (watch.go), so that a
// filter's first subscription anywhere makes it occupied and its last one
// anywhere vacated, each told by exactly one instance.
type Occupier interface {
	// StartOccupancy is called once, before the first Occupy. The broker
	// calls vacated with each filter whose last subscriptions were on an
	// instance that stopped without withdrawing them (found gone by its
	// lapsed liveness; one instance is told), and resync when this
	// instance was itself taken for gone (out of reach of the shared
	// server too long): the hub then occupies its filters again.
	StartOccupancy(vacated func(filter string), resync func()) error

	// Occupy records that this instance's subscriptions to filter began
	// (occupied) or all ended, and reports whether the count of instances
	// with filter crossed zero with it: the instance told true, only it,
	// tells its watchers.
	Occupy(ctx context.Context, filter string, occupied bool) (crossed bool, err error)
}

// Signaler is implemented by brokers shared between instances, to carry a
// hub's signals (presence events) to every instance. A signal is a live
// message without an ID: it is never stored, so it takes no room in
// history and is never replayed. A hub on a broker that is not a
// Signaler hands its signals to its own subscribers only.
type Signaler interface {
	// StartSignals is called once, after Start: the broker hands every
	// signal that an instance sharing it (this one included) sends to
	// signal, from one goroutine at a time, possibly while deliver runs.
	StartSignals(signal func(*Message)) error

	// Signal sends msgs, in order, to every instance listening now. It
	// assigns no IDs and keeps no copy: an instance that is not listening
	// never gets them.
	Signal(ctx context.Context, msgs []Message) error
}

// LossReporter is implemented by brokers that can find out that messages
// they acknowledged or delivered are gone from their store (a Redis
// failover to a replica that lagged, a restart without persistence).
type LossReporter interface {
	// OnLoss is called once, before Start. The broker calls lost (from
	// any goroutine, never while it holds what Publish or Since need) when
	// it finds a loss, before it delivers anything stored after it; the
	// hub then ends its live subscriptions with ErrMessagesLost, so their
	// clients resume from their last IDs and learn of it with a gap.
	OnLoss(lost func())
}

// ErrFenced is returned (wrapped) by a broker that refuses a publish made
// under a lease (WithFence) that another holder has acquired since: the
// publisher is no longer the holder and must stop.
var ErrFenced = errors.New("lease taken by another holder: publish refused")

// Leaser is implemented by brokers shared between instances, to elect one
// of them to hold a named duty (an upstream MQTT link) at a time. A lease
// is held for a time to live and renewed by its holder; each acquisition
// gets a fencing token greater than every earlier one of that name, and a
// publish carrying a token (WithFence) is refused with ErrFenced once a
// newer token was handed out, so a holder that was paused past its lease
// cannot publish after another took over. A hub on a broker that is not a
// Leaser has one instance, which always holds its leases.
type Leaser interface {
	// AcquireLease takes the lease name for holder for ttl when nobody
	// holds it. It returns the lease as it stands after the attempt:
	// Holder is holder when the lease is now this holder's.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (Lease, error)

	// RenewLease extends the lease l for ttl from now; it reports false
	// when l is no longer held (it expired, another holder took it).
	RenewLease(ctx context.Context, l Lease, ttl time.Duration) (bool, error)

	// ReleaseLease gives l up at once, if it is still held, and wakes one
	// instance waiting in AwaitLease.
	ReleaseLease(ctx context.Context, l Lease) error

	// AwaitLease waits, about d at most, until the lease name is
	// released; it may return earlier, so the caller tries AcquireLease
	// again either way.
	AwaitLease(ctx context.Context, name string, d time.Duration) error
}

// Lease is a lease as a Leaser reports it.
type Lease struct {
	Name    string
	Holder  string    // the holder's instance ID; "" when none holds it
	Token   uint64    // the fencing token of the holder's acquisition
	Expires time.Time // when it ends unless renewed, as seen from here
}

// Fence is what a publish under a lease carries: the lease's name and the
// token of the acquisition the publisher holds.
type Fence struct {
	Lease string
	Token uint64
}

type fenceKey struct{}

// WithFence returns ctx carrying f: a Leaser refuses a publish made with
// it (ErrFenced) once the lease f names was acquired again. Brokers that
// are not Leasers ignore it.
func WithFence(ctx context.Context, f Fence) context.Context {
	return context.WithValue(ctx, fenceKey{}, f)
}

// FenceFrom returns the fence that WithFence put in ctx, if any.
func FenceFrom(ctx context.Context) (Fence, bool) {
	f, ok := ctx.Value(fenceKey{}).(Fence)
	return f, ok
}

// RetainsByRule reports whether the hub's broker applies retention rules.
func (h *Hub) RetainsByRule() bool {
	_, ok := h.broker.(RuleRetainer)
	return ok
}

// Leaser returns the hub's broker as a Leaser, when it is one.
func (h *Hub) Leaser() (Leaser, bool) {
	l, ok := h.broker.(Leaser)
	return l, ok
}
