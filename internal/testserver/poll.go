package testserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// Envelope is a message as JSON: long-poll answers, SSE with ?format=json.
type Envelope struct {
	ID    string    `json:"id"`
	Topic string    `json:"topic"`
	Event string    `json:"event"`
	Data  string    `json:"data"`
	Time  time.Time `json:"time"`
	// Encoding is "base64" for binary data, in Data as base64.
	Encoding string `json:"encoding"`
}

// PollAnswer is a long-poll answer.
type PollAnswer struct {
	Messages []Envelope `json:"messages"`
	LastID   string     `json:"last_id"`
	Gap      bool       `json:"gap"`
}

// pollClient waits longer than any poll_timeout a test configures, and
// opens a connection per poll, so a waiting poll shows in
// runtime.NumGoroutine (two client goroutines, one server goroutine) and
// leaves nothing behind once answered.
var pollClient = &http.Client{Timeout: 2 * Wait, Transport: &http.Transport{DisableKeepAlives: true}}

// Poll sends one long-poll GET to endpoint with topics and lastID ("" for
// none) and returns the answer, which must be 200 with Cache-Control:
// no-store.
func Poll(t testing.TB, endpoint string, lastID string, topics ...string) PollAnswer {
	t.Helper()
	a, err := PollContext(context.Background(), endpoint, lastID, topics...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// PollContext is Poll that returns its error and stops with ctx.
func PollContext(ctx context.Context, endpoint string, lastID string, topics ...string) (PollAnswer, error) {
	q := url.Values{"topic": topics}
	if lastID != "" {
		q.Set("last_id", lastID)
	}
	u := endpoint + "?" + q.Encode()
	var a PollAnswer
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return a, err
	}
	resp, err := pollClient.Do(req)
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return a, err
	}
	if resp.StatusCode != http.StatusOK {
		return a, fmt.Errorf("poll %s: %d %s", u, resp.StatusCode, body)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		return a, fmt.Errorf("poll %s: Cache-Control %q, want no-store", u, cc)
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return a, fmt.Errorf("poll %s: answer %q: %w", u, body, err)
	}
	return a, nil
}

// PendingPoll is a long-poll sent in the background, waiting for its
// answer.
type PendingPoll struct {
	done   chan struct{}
	answer PollAnswer
	err    error
}

// StartPoll sends a long-poll in the background.
func StartPoll(endpoint, lastID string, topics ...string) *PendingPoll {
	p := &PendingPoll{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.answer, p.err = PollContext(context.Background(), endpoint, lastID, topics...)
	}()
	return p
}

// Wait returns the poll's answer, which must come within Wait.
func (p *PendingPoll) Wait(t testing.TB) PollAnswer {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(Wait):
		t.Fatal("long-poll not answered within", Wait)
	}
	if p.err != nil {
		t.Fatal(p.err)
	}
	return p.answer
}
