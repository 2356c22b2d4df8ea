package pubsub

// The catalogue of one config's hubs: their names, brokers and upstream
// links, which the metrics collector and the admin stats endpoint read.

import (
	"cmp"
	"slices"
	"sync"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/mqtt"
)

// catalogue is what one config's hubs are: their names, brokers and
// upstream links. Handlers fill it when provisioned.
type catalogue struct {
	mu   sync.Mutex
	hubs map[string]*observedHub
}

// observedHub is a hub as one config defines it.
type observedHub struct {
	name   string
	hub    *hub.Hub
	broker string                      // broker kind
	links  map[string]hub.LinkReporter // upstream MQTT links by pool key
}

// add records hub hb under name, with the upstream links of one handler.
func (c *catalogue) add(name string, hb *hub.Hub, broker string, links map[string]hub.LinkReporter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hubs == nil {
		c.hubs = make(map[string]*observedHub)
	}
	oh := c.hubs[name]
	if oh == nil {
		oh = &observedHub{name: name, hub: hb, broker: broker, links: make(map[string]hub.LinkReporter)}
		c.hubs[name] = oh
	}
	for k, l := range links {
		oh.links[k] = l
	}
}

// list returns the hubs sorted by name, with their links sorted by name.
func (c *catalogue) list() []hubView {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]hubView, 0, len(c.hubs))
	for _, oh := range c.hubs {
		v := hubView{name: oh.name, hub: oh.hub, broker: oh.broker}
		if st, ok := oh.hub.BrokerLink(); ok {
			v.links = append(v.links, linkView{LinkState: st})
		}
		for _, l := range oh.links {
			lv := linkView{LinkState: l.LinkState()}
			if m, ok := l.(mqttLinkState); ok {
				st := m.link.State()
				lv.mqtt = &st
			}
			v.links = append(v.links, lv)
		}
		slices.SortFunc(v.links, func(a, b linkView) int { return cmp.Compare(a.Kind+a.Name, b.Kind+b.Name) })
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b hubView) int { return cmp.Compare(a.name, b.name) })
	return out
}

// hubView is a hub with its link states, read at one moment.
type hubView struct {
	name   string
	hub    *hub.Hub
	broker string
	links  []linkView
}

// linkView is a link's state with, for an MQTT link, its own state (who
// holds it, what it received).
type linkView struct {
	hub.LinkState
	mqtt *mqtt.State
}

// mqttLinkState shows an MQTT link as a hub.LinkReporter.
type mqttLinkState struct{ link *mqtt.Link }

func (m mqttLinkState) LinkState() hub.LinkState {
	st := m.link.State()
	return hub.LinkState{
		Kind:       "mqtt",
		Name:       m.link.Session(),
		Status:     string(st.Status),
		Up:         st.Status == mqtt.StatusConnected,
		Since:      st.Since,
		Reconnects: st.Connects - min(st.Connects, 1),
		LastError:  st.LastError,
	}
}

// Interface guard
var _ hub.LinkReporter = mqttLinkState{}
