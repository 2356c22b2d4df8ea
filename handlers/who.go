package handlers

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// presencePage is how many identities a presence query lists without
// ?limit=.
const presencePage = 100

// AsksPresence reports whether r is a presence query: a GET or HEAD with
// ?presence=1, asking who is subscribed to its topic rather than
// subscribing.
func AsksPresence(r *http.Request) bool {
	return r.URL.Query().Get("presence") == "1"
}

// ServePresence answers a presence query with who is subscribed to its one
// topic (a filter as written), authorised as a subscription to it would
// be: ?limit= identities at most (presencePage, up to
// hub.MaxPresencePage), after the cursor ?after= (a previous answer's
// next).
func (ep *Endpoint) ServePresence(w http.ResponseWriter, r *http.Request, rq Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		fail(w, http.StatusMethodNotAllowed, "a presence query is a GET")
		return
	}
	if !ep.Hub.Options().Presence {
		fail(w, http.StatusNotFound, "presence is off for this hub: add the presence setting")
		return
	}
	topics, err := rq.topics(r, 1)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error()+": a presence query names one topic")
		return
	}
	q := r.URL.Query()
	limit := presencePage
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > hub.MaxPresencePage {
			fail(w, http.StatusBadRequest, "limit must be 1 to "+strconv.Itoa(hub.MaxPresencePage))
			return
		}
	}
	_, allowed, _, denied := ep.authorizeSubscribe(r, rq, topics)
	if denied != nil {
		denied.send(w)
		return
	}
	if len(allowed) != 1 || allowed[0] != topics[0] {
		fail(w, http.StatusForbidden, "not allowed to subscribe to "+strconv.Quote(topics[0]))
		return
	}
	list, err := ep.Hub.Present(r.Context(), topics[0], limit, q.Get("after"))
	if err != nil {
		fail(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	b, _ := json.Marshal(list)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	_, _ = w.Write(append(b, '\n'))
}
