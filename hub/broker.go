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

// Retention bounds a hub's history: at most Count messages, none older than
// MaxAge. Zero means no bound of that kind; both zero keeps no history.
type Retention struct {
	Count  int
	MaxAge time.Duration
}

// Gap tells a resuming subscriber that messages after LastID (the ID it
// resumed from) are no longer retained: it may have missed some. FirstID is
// the oldest message still retained ("" if none).
type Gap struct {
	LastID  string `json:"last_id"`
	FirstID string `json:"first_id"`
}

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

	// Since returns the retained messages after the message lastID and up to
	// and including the message upto (the latest delivered ID, "" for none),
	// oldest first. lastID Earliest means from the oldest retained one. When
	// lastID is not covered by the retained history (too old, from another
	// epoch, not an ID this broker issued) Since returns every retained
	// message up to upto and a non-nil Gap. upto "" (nothing delivered
	// yet) means up to where the broker's delivery starts: nothing for a
	// new memory broker, the history kept from before for brokers that
	// keep it across restarts or share it between instances.
	Since(ctx context.Context, lastID, upto string) ([]*Message, *Gap, error)

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
