package mqtt

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caddy-pubsub/caddy-pubsub/clienttls"
	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// Config is one upstream MQTT subscription: a broker, a session and the
// filters whose messages are published into the hub.
type Config struct {
	// URL of the broker: tcp://HOST[:PORT] (port 1883 by default; also
	// mqtt://), ssl://HOST[:PORT] (TLS, port 8883 by default; also tls://,
	// mqtts://), ws://HOST:PORT/PATH or wss://HOST:PORT/PATH (MQTT over
	// WebSocket). Credentials go in Username and Password, not in the URL.
	URL string `json:"url"`

	// ClientID identifies the session at the broker. It must be fixed (the
	// session, with the QoS 1 messages queued while Caddy was away, is kept
	// under it) and shared by the instances that may hold the link (one at
	// a time connects, see Lease), so that the instance that takes the link
	// over resumes the session. Default: DefaultClientID, derived from the
	// hub's name, the URL and the subscriptions.
	ClientID string `json:"client_id,omitempty"`

	// Lease is how long the instance holding the link keeps it without
	// renewing it, when the hub's broker is shared between instances
	// (redis): one instance at a time holds the link and connects; it
	// renews the lease every third of it, and when it stops (or cannot
	// renew) another takes over within about twice the lease. Default:
	// DefaultLease; MinLease to MaxLease.
	Lease Duration `json:"lease,omitempty"`

	// Username and Password log in to the broker. Both may be placeholders
	// such as {env.MQTT_PASS}, resolved when the config loads. The password
	// is never logged.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`

	// TLS configures ssl:// and wss:// connections. Without it the system's
	// roots verify the broker.
	TLS *TLS `json:"tls,omitempty"`

	// Subscribe lists the MQTT topic filters to subscribe to, each with its
	// QoS. At least one.
	Subscribe []Subscription `json:"subscribe"`

	// Prefix is put before each MQTT topic to make the hub topic: with
	// prefix "mqtt/", MQTT topic sensors/kitchen/temp is published to hub
	// topic mqtt/sensors/kitchen/temp. Default: none.
	Prefix string `json:"prefix,omitempty"`
}

// TLS holds the TLS settings of a link. Verification of the broker's
// certificate cannot be switched off: for a broker with a self-signed or
// private certificate, name its CA in CA.
type TLS = clienttls.Files

// Subscription is one MQTT topic filter and the QoS asked for it.
type Subscription struct {
	// Filter is an MQTT topic filter; + and # wildcards are allowed.
	Filter string `json:"filter"`
	// QoS is 0 (at most once), 1 (at least once: with the persistent
	// session, messages published while Caddy is disconnected arrive
	// after it reconnects) or 2, which the link handles like 1. Default:
	// 1, in JSON as in the Caddyfile.
	QoS byte `json:"qos"`
}

// DefaultQoS is the QoS of a subscription that names none.
const DefaultQoS = 1

// UnmarshalJSON decodes a subscription strictly (no unknown field), giving
// one without "qos" the DefaultQoS, as the Caddyfile does.
func (s *Subscription) UnmarshalJSON(b []byte) error {
	type plain Subscription // without this method
	p := plain{QoS: DefaultQoS}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return err
	}
	*s = Subscription(p)
	return nil
}

// maxClientID bounds a client ID; MQTT strings are at most 65535 bytes,
// real brokers accept far less.
const maxClientID = 256

// Schemes a link accepts, by kind.
var (
	tcpSchemes = map[string]bool{"tcp": true, "mqtt": true}
	tlsSchemes = map[string]bool{"ssl": true, "tls": true, "mqtts": true}
	wsSchemes  = map[string]bool{"ws": true, "wss": true}
)

// ParseURL checks a broker URL and returns it with the default port filled
// in for tcp and ssl.
func ParseURL(raw string) (*url.URL, error) {
	shown := redact(raw)
	u, err := url.Parse(raw)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("broker URL %q: %w", shown, err)
	}
	scheme := strings.ToLower(u.Scheme)
	u.Scheme = scheme
	switch {
	case scheme == "":
		return nil, fmt.Errorf("broker URL %q has no scheme: use tcp://, ssl://, ws:// or wss://", shown)
	case !tcpSchemes[scheme] && !tlsSchemes[scheme] && !wsSchemes[scheme]:
		return nil, fmt.Errorf("broker URL %q: unsupported scheme %q: use tcp://, ssl://, ws:// or wss://", shown, scheme)
	case u.Hostname() == "":
		return nil, fmt.Errorf("broker URL %q has no host", shown)
	case u.User != nil:
		return nil, fmt.Errorf("broker URL %q holds credentials: use username and password instead", shown)
	case !wsSchemes[scheme] && (strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != ""):
		return nil, fmt.Errorf("broker URL %q: a %s:// URL has no path or query", shown, scheme)
	}
	if !wsSchemes[scheme] {
		u.Path = ""
	}
	if u.Port() == "" && !wsSchemes[scheme] {
		port := "1883"
		if tlsSchemes[scheme] {
			port = "8883"
		}
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	return u, nil
}

// ValidateFilter checks an MQTT topic filter: UTF-8 without NUL, and
// wildcards only as whole levels, # only last.
func ValidateFilter(filter string) error {
	switch {
	case filter == "":
		return errors.New("empty topic filter")
	case len(filter) > 65535:
		return errors.New("topic filter longer than 65535 bytes")
	case !utf8.ValidString(filter) || strings.ContainsRune(filter, 0):
		return fmt.Errorf("topic filter %q is not valid UTF-8 without NUL", filter)
	}
	levels := strings.Split(filter, "/")
	for i, level := range levels {
		switch {
		case !strings.ContainsAny(level, "+#"):
		case level == "+":
		case level == "#" && i == len(levels)-1:
		case level == "#":
			return fmt.Errorf("topic filter %q: # must be the last level", filter)
		default:
			return fmt.Errorf("topic filter %q: a wildcard must be a whole level", filter)
		}
	}
	return nil
}

// ValidateQoS checks a subscription QoS.
func ValidateQoS(qos int) error {
	if qos < 0 || qos > 2 {
		return fmt.Errorf("QoS %d: use 0, 1 or 2", qos)
	}
	return nil
}

// Duration is a time.Duration that JSON holds as a string in Go's
// notation ("10s"), as Caddy's durations, or as a number of nanoseconds.
type Duration time.Duration

// MarshalJSON writes d as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a string or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err := json.Unmarshal(b, &n); err != nil {
			return errors.New("a duration is a string such as \"10s\" or a number of nanoseconds")
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ValidateLease checks a lease duration; 0 stands for DefaultLease.
func ValidateLease(d time.Duration) error {
	if d != 0 && (d < MinLease || d > MaxLease) {
		return fmt.Errorf("lease %s: use %s to %s", d, MinLease, MaxLease)
	}
	return nil
}

// ValidatePrefix checks a hub topic prefix: it must make valid hub topics
// and must not reach into the hub's own $ topics.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if strings.HasPrefix(prefix, "$") {
		return fmt.Errorf("prefix %q: topics starting with $ are the hub's own", prefix)
	}
	if err := hub.ValidateTopic(prefix + "x"); err != nil {
		return fmt.Errorf("prefix %q: %w", prefix, err)
	}
	return nil
}

// Validate checks the whole configuration, after placeholders are
// resolved.
func (c *Config) Validate() error {
	var errs []error
	if _, err := ParseURL(c.URL); err != nil {
		errs = append(errs, err)
	}
	if len(c.ClientID) > maxClientID || !utf8.ValidString(c.ClientID) || strings.ContainsRune(c.ClientID, 0) {
		errs = append(errs, fmt.Errorf("client_id: at most %d bytes of UTF-8 without NUL", maxClientID))
	}
	if c.Password != "" && c.Username == "" {
		errs = append(errs, errors.New("password without username"))
	}
	if err := ValidateLease(time.Duration(c.Lease)); err != nil {
		errs = append(errs, err)
	}
	if len(c.Subscribe) == 0 {
		errs = append(errs, errors.New("no subscribe: add at least one `subscribe FILTER [QOS]`"))
	}
	for _, s := range c.Subscribe {
		if err := ValidateFilter(s.Filter); err != nil {
			errs = append(errs, err)
		}
		if err := ValidateQoS(int(s.QoS)); err != nil {
			errs = append(errs, fmt.Errorf("subscribe %s: %w", s.Filter, err))
		}
	}
	if err := ValidatePrefix(c.Prefix); err != nil {
		errs = append(errs, err)
	}
	if c.TLS != nil && (c.TLS.Cert == "") != (c.TLS.Key == "") {
		errs = append(errs, errors.New("tls: a client certificate needs both its cert and its key file"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("mqtt %s: %w", redact(c.URL), err)
	}
	return nil
}

// Bounds of Config.Lease.
const (
	DefaultLease = 10 * time.Second
	MinLease     = 2 * time.Second
	MaxLease     = 5 * time.Minute
)

// DefaultClientID is the client ID of a link of hub hubName that names
// none: "caddypubsub" and 12 hex digits of a hash of the hub's name, the
// broker URL and the subscriptions (in any order). Every instance running
// the same mqtt block for the same hub derives the same ID, so the
// instance that takes the link over resumes the session; another hub, or
// other subscriptions, get another session. 23 letters and digits, what
// MQTT 3.1.1 requires every broker to accept.
func DefaultClientID(hubName string, c Config) string {
	u := c.URL
	if parsed, err := ParseURL(c.URL); err == nil {
		u = parsed.String()
	}
	subs := make([]string, 0, len(c.Subscribe))
	for _, s := range c.Subscribe {
		subs = append(subs, fmt.Sprintf("%s\x00%d", s.Filter, s.QoS))
	}
	slices.Sort(subs)
	subs = slices.Compact(subs)
	sum := sha256.Sum256([]byte(hubName + "\x00" + u + "\x00" + strings.Join(subs, "\x00")))
	return "caddypubsub" + hex.EncodeToString(sum[:6])
}

// tlsConfig builds the client TLS config for u, reading the files named in
// t. It returns nil for plain tcp:// and ws:// URLs.
func tlsConfig(u *url.URL, t *TLS) (*tls.Config, error) {
	if !tlsSchemes[u.Scheme] && u.Scheme != "wss" {
		if t != nil && (t.CA != "" || t.Cert != "") {
			return nil, fmt.Errorf("tls settings given for a %s:// URL: use ssl:// or wss://", u.Scheme)
		}
		return nil, nil
	}
	var files TLS
	if t != nil {
		files = *t
	}
	return files.Config(u.Hostname())
}

// redact returns the broker URL without credentials, query or fragment,
// fit for logs and errors.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if strings.Contains(raw, "@") {
			return "(unparsable URL)"
		}
		return raw
	}
	u.User = nil
	u.RawQuery = ""
	u.Fragment = ""
	return u.String()
}
