package hub

import "sync"

// Subscriber receives the live messages matching its filters through a
// bounded queue. Its owner (a transport) reads Messages until Done is
// closed, then asks Err why.
type Subscriber struct {
	hub     *Hub
	filters []string
	queue   chan *Message
	done    chan struct{}
	head    string

	endOnce sync.Once
	err     error

	// Guarded by hub.mu.
	round   uint64
	removed bool
}

// Messages returns the live message queue. It is never closed: select on
// Done as well.
func (s *Subscriber) Messages() <-chan *Message { return s.queue }

// Done is closed when the subscription ends, by Close or by the hub.
func (s *Subscriber) Done() <-chan struct{} { return s.done }

// Err returns why the subscription ended (nil after Close or while it
// runs).
func (s *Subscriber) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Head returns the ID of the last message the hub delivered before this
// subscription began ("" if none): every later one comes through Messages.
func (s *Subscriber) Head() string { return s.head }

// Filters returns the subscription's filters.
func (s *Subscriber) Filters() []string { return s.filters }

// Close ends the subscription and removes it from the hub at once.
func (s *Subscriber) Close() {
	s.hub.mu.Lock()
	s.hub.removeLocked(s)
	s.hub.mu.Unlock()
	s.end(nil)
}

func (s *Subscriber) end(reason error) {
	s.endOnce.Do(func() {
		s.err = reason
		close(s.done)
	})
}

func (s *Subscriber) matches(topic string) bool {
	for _, f := range s.filters {
		if Match(f, topic) {
			return true
		}
	}
	return false
}
