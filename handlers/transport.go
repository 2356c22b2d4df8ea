package handlers

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// Transport is one way a subscriber receives messages. Each lives in its
// own file of this package, with the frame kinds it encodes messages in
// (hub.NewFrameKind), and is listed once in transports. The module picks
// one per request (SelectTransport) and knows none by name.
type Transport struct {
	// Name is the transport's ?transport= value, its metrics label and
	// the hub.Client transport its subscribers count under.
	Name string
	// Quiet transports are not announced by presence: a long-poll
	// subscribes anew for every answer.
	Quiet bool
	// asks reports whether r asks for this transport when ?transport=
	// names none; the transports are asked in order.
	asks func(r *http.Request) bool
	// serve serves one subscriber.
	serve func(ep *Endpoint, w http.ResponseWriter, r *http.Request, rq Request)
}

// transports are the subscriber transports, in the order their asks rules
// are tried; the last takes any request.
var transports = []*Transport{webSocketTransport, sseTransport, pollTransport}

// Transports returns the names of the transports, for metrics that report
// every one.
func Transports() []string {
	names := make([]string, len(transports))
	for i, t := range transports {
		names[i] = t.Name
	}
	return names
}

// SelectTransport returns the transport r asks for: the one ?transport=
// names, else the first whose rule r meets. A WebSocket's extended
// CONNECT (wsh2.go) can be nothing else.
func SelectTransport(r *http.Request) (*Transport, error) {
	if IsWebSocketConnect(r) {
		return webSocketTransport, nil
	}
	if name := r.URL.Query().Get("transport"); name != "" {
		for _, t := range transports {
			if t.Name == name {
				return t, nil
			}
		}
		return nil, fmt.Errorf("unknown transport %q: use %s", name, strings.Join(Transports(), ", "))
	}
	for _, t := range transports {
		if t.asks(r) {
			return t, nil
		}
	}
	return transports[len(transports)-1], nil
}

// Serve serves r's subscriber on t, counted in the hub under t's name,
// and calls rq.Release when it is gone.
func (t *Transport) Serve(ep *Endpoint, w http.ResponseWriter, r *http.Request, rq Request) {
	r = r.WithContext(hub.WithClient(r.Context(), hub.Client{Transport: t.Name, Quiet: t.Quiet}))
	release := rq.Release
	if release == nil {
		release = func() {}
	}
	kept := false
	rq.transport = t.Name
	rq.keep = func() func() {
		kept = true
		return release
	}
	defer func() {
		if !kept {
			release()
		}
	}()
	t.serve(ep, w, r, rq)
}
