package hub

// ending is one coming end of all of a hub's subscriptions.
type ending struct {
	ch     chan struct{}
	reason error // set before ch is closed
}

// Ended returns a channel closed when the hub next ends every subscription
// (Disconnect, Close), and a function that then tells why. A connection
// holding no subscription, such as a WebSocket with no topics, watches it
// to end with the others when the server stops.
func (h *Hub) Ended() (<-chan struct{}, func() error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.obs.ending
	if e == nil {
		e = &ending{ch: make(chan struct{})}
		if h.closed {
			e.reason = ErrHubClosed
			close(e.ch)
		} else {
			h.obs.ending = e
		}
	}
	return e.ch, func() error { return e.reason }
}

// endIdle closes the channel Ended handed out, with reason; h.mu is held.
func (h *Hub) endIdle(reason error) {
	if e := h.obs.ending; e != nil {
		e.reason = reason
		close(e.ch)
		h.obs.ending = nil
	}
}
