package main

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Peers: the servers the tool measures side by side. Each subscribes and
// publishes in its own way; the messages, their stamps and the accounting
// are the same for all.
const (
	peerPubsub  = "pubsub"  // this project: -url is the pubsub endpoint
	peerNchan   = "nchan"   // nginx + nchan: -url is the server's base, /sub/ID and /pub/ID below it
	peerMercure = "mercure" // Mercure on Caddy: -url is the hub, /.well-known/mercure
)

// mercureKeyEnv holds the HS256 key the Mercure hub verifies publisher
// and subscriber JWTs with; the tool signs both itself.
const mercureKeyEnv = "PUBSUB_BENCH_MERCURE_KEY"

// peerTransports lists the subscriber transports each peer offers.
var peerTransports = map[string][]string{
	peerPubsub:  {"sse", "ws", "poll"},
	peerNchan:   {"sse", "ws"},
	peerMercure: {"sse"},
}

// topicName is the topic of index k of n: the base itself when there is
// one topic, else base/k.
func topicName(base string, k, n int) string {
	if n <= 1 {
		return base
	}
	return base + "/" + strconv.Itoa(k)
}

// subscriberTopic is the topic index subscriber i listens to: i mod n.
func subscriberTopic(i, n int) int {
	if n <= 1 {
		return 0
	}
	return i % n
}

// subscribersOn is how many of subscribers 0..total-1 listen to topic k of
// n.
func subscribersOn(k, n, total int) int64 {
	if n <= 1 {
		return int64(total)
	}
	c := total / n
	if k < total%n {
		c++
	}
	return int64(c)
}

// nchanChannel is the nchan channel ID of a topic: nchan IDs sit in the
// URL path, so the topic's slashes become dots.
func nchanChannel(topic string) string { return strings.ReplaceAll(topic, "/", ".") }

// subscribeURI is the request URI of a subscription to topic: the pubsub
// endpoint with its query (resuming after lastID, with extra parameters),
// nchan's /sub/ID location, or the Mercure hub with ?topic=.
func subscribeURI(peer, path string, query url.Values, topic, lastID string, extra map[string]string) string {
	if peer == peerNchan {
		return strings.TrimSuffix(path, "/") + "/sub/" + url.PathEscape(nchanChannel(topic))
	}
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	q.Set("topic", topic)
	if peer == peerPubsub {
		if lastID != "" {
			q.Set("last_id", lastID)
		}
		for k, v := range extra {
			q.Set(k, v)
		}
	}
	return path + "?" + q.Encode()
}

// mercureTokens signs the HS256 JWTs the Mercure hub wants: one that may
// publish to every topic, one that may subscribe to every topic. They
// expire after ttl, longer than any run.
func mercureTokens(key string, ttl time.Duration) (publisher, subscriber string, err error) {
	if len(key) < 32 {
		return "", "", fmt.Errorf("$%s: at least 32 bytes (an HS256 key)", mercureKeyEnv)
	}
	sign := func(claim string) (string, error) {
		return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"exp":     time.Now().Add(ttl).Unix(),
			"mercure": map[string][]string{claim: {"*"}},
		}).SignedString([]byte(key))
	}
	if publisher, err = sign("publish"); err != nil {
		return "", "", err
	}
	subscriber, err = sign("subscribe")
	return publisher, subscriber, err
}
