package pubsub

// The admin API's control routes: POST /pubsub/publish publishes into a
// hub of the running config, POST /pubsub/disconnect ends the
// subscriptions a topic reaches. They sit on Caddy's admin endpoint, which
// only the server's operator reaches.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// Limits of the control routes.
const (
	adminMaxBody  = 1 << 20
	adminMaxBatch = 1000
)

// adminMessage is one message of POST /pubsub/publish: data that is not a
// JSON string is kept as its JSON text, as an HTTP publish does.
type adminMessage struct {
	Topic string          `json:"topic"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

// runningHub returns the hub named by r's ?hub= (default "default") in the
// running config.
func runningHub(r *http.Request) (*hub.Hub, error) {
	name := r.URL.Query().Get("hub")
	if name == "" {
		name = DefaultHub
	}
	if a := running.Load(); a != nil {
		for _, v := range a.obs.list() {
			if v.name == name {
				return v.hub, nil
			}
		}
	}
	return nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no hub %q in the running config", name)}
}

// servePublish publishes the JSON object or array in the body; it answers
// the IDs.
func servePublish(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("use POST")}
	}
	h, err := runningHub(r)
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, adminMaxBody)).Decode(&raw); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("body: a JSON message or array of at most %d bytes: %w", adminMaxBody, err)}
	}
	var in []adminMessage
	if len(raw) > 0 && raw[0] == '[' {
		err = json.Unmarshal(raw, &in)
	} else {
		in = make([]adminMessage, 1)
		err = json.Unmarshal(raw, &in[0])
	}
	switch {
	case err != nil:
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("body: %w", err)}
	case len(in) == 0 || len(in) > adminMaxBatch:
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("publish 1 to %d messages", adminMaxBatch)}
	}
	msgs := make([]hub.Message, len(in))
	for i, m := range in {
		msgs[i] = hub.Message{Topic: m.Topic, Event: m.Event, Data: string(m.Data)}
		var s string
		if json.Unmarshal(m.Data, &s) == nil {
			msgs[i].Data = s
		}
		if err := hub.ValidateMessage(&msgs[i]); err != nil {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("message %d: %w", i, err)}
		}
	}
	ids, err := h.Publish(r.Context(), msgs...)
	switch {
	case errors.Is(err, hub.ErrUnavailable), errors.Is(err, hub.ErrHubClosed):
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
	case err != nil:
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(map[string][]string{"ids": ids})
}

// serveDisconnect ends the subscriptions a message on ?topic= would reach
// and that the JWT subject ?subject= made (either may be left out, not
// both), with the reason "disconnected by the server"; their clients
// reconnect and resume, and are authorised anew.
func serveDisconnect(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("use POST")}
	}
	h, err := runningHub(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	n, err := h.DisconnectMatching(q.Get("topic"), q.Get("subject"), hub.ErrDisconnected)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("disconnect: %w", err)}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(map[string]int{"disconnected": n})
}
