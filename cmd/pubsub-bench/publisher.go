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
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// publisher posts stamped messages to the endpoint over keep-alive
// connections. Each publisher ID numbers its messages to each topic 1, 2,
// 3, ... and waits for each answer before the next request, so the server
// orders them as numbered and a subscriber can tell lost from duplicated
// ones.
type publisher struct {
	peer   string
	client *http.Client
	url    string
	host   string
	key    string
	topic  string
	topics int
	// subscribers is the run's N, spread over the topics.
	subscribers int
	size        int
	batch       int
	// via is how this project's publishes go (-publish): "json" and
	// "form" POSTs, or "ws" frames on ws, a socket per publisher.
	via  string
	ws   *wsPublishers
	refs atomic.Int64

	acked      atomic.Int64   // messages the server accepted
	topicAcked []atomic.Int64 // the same, per topic index
	requests   atomic.Int64
	failures   atomic.Int64
	errors     errorCounts
	latency    Histogram // per request
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
	p := &publisher{
		peer:        cfg.Peer,
		client:      &http.Client{Timeout: 30 * time.Second, Transport: transport},
		url:         scheme + cfg.target.addr + cfg.target.path,
		host:        cfg.target.host,
		key:         key,
		topic:       topic,
		topics:      cfg.Topics,
		subscribers: cfg.Subscribers,
		size:        cfg.Size,
		batch:       cfg.Batch,
		via:         cfg.PublishVia,
		topicAcked:  make([]atomic.Int64, cfg.Topics),
	}
	if p.via == publishWS {
		ws, err := newWSPublishers(p, cfg)
		if err != nil {
			return nil, err
		}
		p.ws = ws
	}
	return p, nil
}

func (p *publisher) close() {
	p.client.CloseIdleConnections()
	if p.ws != nil {
		p.ws.close()
	}
}

// expected is the deliveries the accepted messages make to live of the
// run's subscribers: each message goes to the subscribers of its topic,
// and subscribers missing from a topic are assumed spread evenly.
func (p *publisher) expected(live int64) int64 {
	if p.topics <= 1 {
		return p.acked.Load() * live
	}
	var all int64
	for k := range p.topicAcked {
		all += p.topicAcked[k].Load() * subscribersOn(k, p.topics, p.subscribers)
	}
	if live >= int64(p.subscribers) {
		return all
	}
	return all * live / int64(p.subscribers)
}

// post sends body to target and returns the answer's body.
func (p *publisher) post(ctx context.Context, target, contentType string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Host = p.host
	req.Header.Set("Content-Type", contentType)
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
	// nchan answers 201 or 202.
	if resp.StatusCode < 200 || resp.StatusCode > 202 {
		reason, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		return nil, statusError{code: resp.StatusCode, reason: reason}
	}
	return b, nil
}

// publishOne sends one message to topic in the peer's way: this project's
// JSON, nchan's body to /pub/ID, or Mercure's form.
func (p *publisher) publishOne(ctx context.Context, topic string, data []byte) ([]byte, error) {
	switch p.peer {
	case peerNchan:
		return p.post(ctx, strings.TrimSuffix(p.url, "/")+"/pub/"+url.PathEscape(nchanChannel(topic)), "application/json", data)
	case peerMercure:
		form := url.Values{"topic": {topic}, "data": {string(data)}}
		return p.post(ctx, p.url, "application/x-www-form-urlencoded", []byte(form.Encode()))
	}
	if p.via == publishForm {
		form := url.Values{"topic": {topic}, "data": {string(data)}}
		return p.post(ctx, p.url, "application/x-www-form-urlencoded", []byte(form.Encode()))
	}
	body := append(appendTopic([]byte(`{`), topic), data...)
	return p.post(ctx, p.url, "application/json", append(body, '}'))
}

// appendTopic appends the "topic" member of one message of this project's
// JSON and the name of its "data", which the caller appends.
func appendTopic(b []byte, topic string) []byte {
	b = append(b, `"topic":`...)
	b = strconv.AppendQuote(b, topic)
	return append(b, `,"data":`...)
}

// marker publishes an unstamped message and returns its ID: subscribers
// of this project start after it, so none misses what follows however late
// it connects. The peers' subscribers get only what is published after
// they connect, which the run waits for: there it checks that the server
// takes publishes, and its ID is not used.
func (p *publisher) marker(ctx context.Context) (string, error) {
	b, err := p.publishOne(ctx, p.topic, []byte(`{"marker":true}`))
	if err != nil {
		return "", fmt.Errorf("publishing to %s: %w", p.url, err)
	}
	if p.peer != peerPubsub {
		return "", nil
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

// pubState is one publisher's place: the topic index its next message goes
// to and the next number of each topic.
type pubState struct {
	next int
	seq  []int64
}

// newPubState starts publisher pub at its own topic, so that publishers
// running side by side spread their messages over the topics.
func newPubState(pub, topics int) *pubState {
	st := &pubState{next: pub % topics, seq: make([]int64, topics)}
	for k := range st.seq {
		st.seq[k] = 1
	}
	return st
}

// take returns the topic index of the next message and its number, and
// moves on to the next topic.
func (st *pubState) take() (topic int, seq int64) {
	topic, seq = st.next, st.seq[st.next]
	st.seq[topic]++
	st.next = (st.next + 1) % len(st.seq)
	return topic, seq
}

// send publishes the next p.batch messages of publisher pub, each to the
// next topic of st, which it advances whatever the outcome.
func (p *publisher) send(ctx context.Context, pub int, st *pubState) {
	var err error
	var sent []int
	var start time.Time
	switch {
	case p.batch > 1:
		body := []byte{'['}
		for i := range p.batch {
			if i > 0 {
				body = append(body, ',')
			}
			k, seq := st.take()
			sent = append(sent, k)
			body = appendTopic(append(body, '{'), topicName(p.topic, k, p.topics))
			body = append(p.appendStamp(body, pub, seq), '}')
		}
		body = append(body, ']')
		start = time.Now()
		if p.ws != nil {
			err = p.ws.publish(ctx, pub, p.refs.Add(1), append([]byte(`"messages":`), body...))
		} else {
			_, err = p.post(ctx, p.url, "application/json", body)
		}
	case p.ws != nil:
		k, seq := st.take()
		sent = append(sent, k)
		body := p.appendStamp(appendTopic(nil, topicName(p.topic, k, p.topics)), pub, seq)
		start = time.Now()
		err = p.ws.publish(ctx, pub, p.refs.Add(1), body)
	default:
		k, seq := st.take()
		sent = append(sent, k)
		data := p.appendStamp(nil, pub, seq)
		start = time.Now()
		_, err = p.publishOne(ctx, topicName(p.topic, k, p.topics), data)
	}
	p.requests.Add(1)
	if err != nil {
		if ctx.Err() == nil {
			p.failures.Add(int64(p.batch))
			p.errors.add(classify(err))
		}
		return
	}
	p.latency.Record(time.Since(start))
	for _, k := range sent {
		p.topicAcked[k].Add(1)
	}
	p.acked.Add(int64(p.batch))
}

// appendStamp appends one message's data, the stamp, padded to p.size
// bytes when the stamp is shorter.
func (p *publisher) appendStamp(b []byte, pub int, seq int64) []byte {
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
	return append(b, `"}`...)
}

// fanout publishes count messages from publisher 0, interval apart.
func (p *publisher) fanout(ctx context.Context, count int, interval time.Duration) {
	st := newPubState(0, p.topics)
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
		p.send(ctx, 0, st)
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
			st := newPubState(pub, p.topics)
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
				p.send(ctx, pub, st)
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
