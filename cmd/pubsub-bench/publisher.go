package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// publisher posts stamped messages to the endpoint over keep-alive
// connections. Each publisher ID numbers its messages 1, 2, 3, ... and
// waits for each answer before the next request, so the hub orders them as
// numbered and a subscriber can tell lost from duplicated ones.
type publisher struct {
	client *http.Client
	url    string
	host   string
	key    string
	topic  string
	size   int
	batch  int

	acked    atomic.Int64 // messages the server answered 200 for
	requests atomic.Int64
	failures atomic.Int64
	errors   errorCounts
	latency  Histogram // per request
}

// newPublisher returns the publisher of cfg, which sends -key, or -token
// when there is no key.
func newPublisher(cfg Config, topic string, conns int) (*publisher, error) {
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConnsPerHost: conns + 1,
		DisableCompression:  true,
		// Loopback only, never through a proxy.
		Proxy: nil,
	}
	scheme := "http://"
	if cfg.target.tls {
		protos := []string{"http/1.1"}
		if cfg.HTTP2 {
			protos = []string{"h2"}
		}
		conf, err := clientTLS(cfg.caPEM, cfg.Insecure, cfg.target.serverName, protos...)
		if err != nil {
			return nil, err
		}
		scheme, transport.TLSClientConfig, transport.ForceAttemptHTTP2 = "https://", conf, cfg.HTTP2
	}
	key := cfg.Key
	if key == "" {
		key = cfg.Token
	}
	return &publisher{
		client: &http.Client{Timeout: 30 * time.Second, Transport: transport},
		url:    scheme + cfg.target.addr + cfg.target.path,
		host:   cfg.target.host,
		key:    key,
		topic:  topic,
		size:   cfg.Size,
		batch:  cfg.Batch,
	}, nil
}

func (p *publisher) close() { p.client.CloseIdleConnections() }

// post sends body and returns the answer's body.
func (p *publisher) post(ctx context.Context, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Host = p.host
	req.Header.Set("Content-Type", "application/json")
	if p.key != "" {
		req.Header.Set("Authorization", "Bearer "+p.key)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		reason, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		return nil, statusError{code: resp.StatusCode, reason: reason}
	}
	return b, nil
}

// marker publishes an unstamped message and returns its ID: subscribers
// start after it, so none misses what follows however late it connects.
func (p *publisher) marker(ctx context.Context) (string, error) {
	body, _ := json.Marshal(map[string]any{"topic": p.topic, "data": map[string]bool{"marker": true}})
	b, err := p.post(ctx, body)
	if err != nil {
		return "", fmt.Errorf("publishing to %s: %w", p.url, err)
	}
	var a struct{ ID string }
	if err := json.Unmarshal(b, &a); err != nil || a.ID == "" {
		return "", fmt.Errorf("publish answer %q: not {\"id\":...}", b)
	}
	return a.ID, nil
}

// waitMarker publishes the marker, retrying while the server refuses
// connections for up to wait: it may be starting.
func (p *publisher) waitMarker(ctx context.Context, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		id, err := p.marker(ctx)
		if err == nil || !errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(deadline) {
			return id, err
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return "", err
		}
	}
}

// send publishes the next p.batch messages of publisher pub, numbered from
// *seq, which it advances whatever the outcome.
func (p *publisher) send(ctx context.Context, pub int, seq *int64) {
	var body []byte
	if p.batch > 1 {
		body = append(body, '[')
	}
	for i := range p.batch {
		if i > 0 {
			body = append(body, ',')
		}
		body = p.appendMessage(body, pub, *seq)
		*seq++
	}
	if p.batch > 1 {
		body = append(body, ']')
	}
	start := time.Now()
	_, err := p.post(ctx, body)
	p.requests.Add(1)
	if err != nil {
		if ctx.Err() == nil {
			p.failures.Add(int64(p.batch))
			p.errors.add(classify(err))
		}
		return
	}
	p.latency.Record(time.Since(start))
	p.acked.Add(int64(p.batch))
}

// appendMessage appends one JSON message whose data is the stamp, padded
// to p.size bytes when the stamp is shorter.
func (p *publisher) appendMessage(b []byte, pub int, seq int64) []byte {
	b = append(b, `{"topic":`...)
	b = strconv.AppendQuote(b, p.topic)
	b = append(b, `,"data":`...)
	start := len(b)
	b = append(b, `{"pub":`...)
	b = strconv.AppendInt(b, int64(pub), 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"sent_ns":`...)
	b = strconv.AppendInt(b, time.Now().UnixNano(), 10)
	b = append(b, `,"pad":"`...)
	for range p.size - (len(b) - start) - len(`"}`) {
		b = append(b, 'x')
	}
	return append(b, `"}}`...)
}

// fanout publishes count messages from publisher 0, interval apart.
func (p *publisher) fanout(ctx context.Context, count int, interval time.Duration) {
	seq := int64(1)
	for i := range count {
		if i > 0 {
			t := time.NewTimer(interval)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
		p.send(ctx, 0, &seq)
	}
}

// sustain publishes with n publishers for d: at rate messages/s, or as
// fast as they can when rate is 0. It returns the requests the pacer could
// not hand out because every publisher was busy. Requests started within d
// run to their answer, so every published message is counted.
func (p *publisher) sustain(ctx context.Context, n int, rate float64, d time.Duration) (skipped int64) {
	pacing, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var tokens chan struct{}
	if rate > 0 {
		// Room for a second's requests lets the publishers catch up after
		// slow answers, within bounds.
		tokens = make(chan struct{}, n+min(10_000, int(rate/float64(p.batch))))
	}
	var wg sync.WaitGroup
	for pub := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seq := int64(1)
			for {
				if tokens != nil {
					select {
					case <-tokens:
					case <-pacing.Done():
						return
					}
				}
				if pacing.Err() != nil {
					return
				}
				p.send(ctx, pub, &seq)
			}
		}()
	}
	if tokens != nil {
		skipped = pace(pacing, tokens, rate/float64(p.batch))
	}
	wg.Wait()
	return skipped
}

// pace puts perSecond tokens a second into tokens until ctx ends; it
// returns how many found the channel full.
func pace(ctx context.Context, tokens chan<- struct{}, perSecond float64) (skipped int64) {
	start := time.Now()
	tick := time.NewTicker(max(time.Millisecond, min(100*time.Millisecond, time.Duration(float64(time.Second)/perSecond))))
	defer tick.Stop()
	var issued int64
	for {
		due := int64(perSecond*time.Since(start).Seconds()) + 1
		for ; issued < due; issued++ {
			select {
			case tokens <- struct{}{}:
			default:
				skipped++
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return skipped
		}
	}
}
