package hooks

import "github.com/caddy-pubsub/caddy-pubsub/hub"

// Tag marks a subscription made through a client's endpoint (hub.Tag), so
// that its subscribed and unsubscribed events go to that client's backend
// with the caller who made it.
type Tag struct {
	Client *Client
	Caller Caller
}

// Watch sends the hub's subscription changes to the backend until stop is
// called: subscribed and unsubscribed events for the subscriptions tagged
// with this client, occupied and vacated for every filter of the hub.
func (c *Client) Watch(h *hub.Hub) (stop func()) {
	return h.Watch(&hub.Watcher{
		Changed: func(ch hub.Change) {
			t, ok := ch.Tag.(*Tag)
			if !ok || t.Client != c {
				return
			}
			c.Event(Subscribed, t.Caller, ch.Subscription, ch.Added)
			c.Event(Unsubscribed, t.Caller, ch.Subscription, ch.Removed)
		},
		Occupancy: c.Occupancy,
	})
}
