package pubsub

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
	"github.com/caddy-pubsub/caddy-pubsub/mqtt"
)

// mqttLinks holds the running MQTT links by their whole resolved
// configuration (hub, max_message_size, mqtt block). A reload that keeps an
// mqtt block unchanged keeps its live connection; a changed block gets a new
// link, started with the new config, and the old one closes when the old
// config is cleaned up.
var mqttLinks = caddy.NewUsagePool()

// poolLink is a link as stored in the pool.
type poolLink struct{ *mqtt.Link }

// Destruct disconnects the link once no config uses it.
func (p poolLink) Destruct() error { return p.Close() }

// appLinks are the MQTT links of one config, started by the app's Start
// (never in Provision: `caddy validate` provisions too, and a connection
// with the production client ID would take the session from the running
// instance).
type appLinks struct {
	links    []*mqtt.Link
	sessions map[string]string // link session -> pool key
}

// mqttLink loads the link for key from the pool, creating it with newLink,
// and records it to start with this config.
func (a *App) mqttLink(key string, newLink func() (*mqtt.Link, error)) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	val, _, err := mqttLinks.LoadOrNew(key, func() (caddy.Destructor, error) {
		l, err := newLink()
		if err != nil {
			return nil, err
		}
		return poolLink{l}, nil
	})
	if err != nil {
		return err
	}
	l := val.(poolLink).Link
	if prev, ok := a.mqtt.sessions[l.Session()]; ok && prev != key {
		_, _ = mqttLinks.Delete(key)
		return fmt.Errorf("mqtt: two mqtt blocks with different settings use one client_id on one broker (%s): give each its own client_id", l.Session())
	}
	if a.mqtt.sessions == nil {
		a.mqtt.sessions = make(map[string]string)
	}
	a.mqtt.sessions[l.Session()] = key
	a.mqtt.links = append(a.mqtt.links, l)
	return nil
}

// startMQTT starts this config's links; those already running since an
// earlier config go on as they are. The caller holds a.mu.
func (a *App) startMQTT() {
	for _, l := range a.mqtt.links {
		l.Start()
	}
}

// provisionMQTT resolves the placeholders of each mqtt block of a hub and
// takes its link from the pool, returning the links' pool keys. It opens no
// connection.
func (a *App) provisionMQTT(hubName string, blocks []*mqtt.Config, hb *hub.Hub, maxSize int64, logger *zap.Logger) ([]string, error) {
	var keys []string
	release := func() {
		for _, key := range keys {
			_, _ = mqttLinks.Delete(key)
		}
	}
	for _, c := range blocks {
		if c == nil {
			release()
			return nil, errors.New("mqtt: empty block")
		}
		cfg := *c
		for _, field := range []struct {
			name string
			val  *string
		}{{"url", &cfg.URL}, {"client_id", &cfg.ClientID}, {"username", &cfg.Username}, {"password", &cfg.Password}} {
			v, err := resolve(fmt.Sprintf("mqtt %s: %s", c.URL, field.name), *field.val)
			if err != nil {
				release()
				return nil, err
			}
			*field.val = v
		}
		if err := cfg.Validate(); err != nil {
			release()
			return nil, err
		}
		raw, err := json.Marshal(cfg)
		if err != nil {
			release()
			return nil, fmt.Errorf("mqtt: %w", err)
		}
		key := linkKey(raw, hb, maxSize, cfg.TLS)
		err = a.mqttLink(key, func() (*mqtt.Link, error) {
			opts := mqtt.Options{MaxMessageSize: maxSize, Logger: logger, Hub: hubName}
			if leaser, ok := hb.Leaser(); ok {
				opts.Leaser = leaser
			}
			return mqtt.New(cfg, hb, opts)
		})
		if err != nil {
			release()
			return nil, err
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// linkKey names a link in the pool: its resolved block, the hub it
// publishes into, the size limit and the contents of its TLS files, so a
// reload after a certificate was renewed connects with the new one.
func linkKey(block []byte, hb *hub.Hub, maxSize int64, t *mqtt.TLS) string {
	sum := sha256.New()
	fmt.Fprintf(sum, "%s\x00%p\x00%d", block, hb, maxSize)
	if t != nil {
		for _, file := range []string{t.CA, t.Cert, t.Key} {
			if file != "" {
				pem, err := os.ReadFile(file)
				fmt.Fprintf(sum, "\x00%x\x00%v", sha256.Sum256(pem), err)
			}
		}
	}
	return hex.EncodeToString(sum.Sum(nil))
}

// parseMQTT reads an mqtt block; the dispenser stands on its URL, args.
//
//	mqtt <url> {
//		client_id       <id>
//		username        <user>
//		password        <password>
//		tls_ca          <ca.pem>
//		tls_cert        <cert.pem> <key.pem>
//		tls_server_name <name>
//		subscribe       <filter> [<qos>]
//		prefix          <hub topic prefix>
//		lease           <duration>
//	}
func (c *HubConfig) parseMQTT(d *caddyfile.Dispenser, args []string) error {
	if len(args) != 1 {
		return d.ArgErr()
	}
	cfg := &mqtt.Config{URL: args[0]}
	if !strings.Contains(cfg.URL, "{") {
		if _, err := mqtt.ParseURL(cfg.URL); err != nil {
			return d.Errf("mqtt: %v", err)
		}
	}
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		args := d.RemainingArgs()
		if seen[name] && name != "subscribe" {
			return d.Errf("mqtt: %s given twice", name)
		}
		seen[name] = true
		if ok, err := parseClientTLS(d, "mqtt", name, args, &cfg.TLS); ok {
			if err != nil {
				return err
			}
			continue
		}
		want := 1
		if name == "subscribe" && len(args) == 2 {
			want = 2
		}
		if len(args) != want || args[0] == "" {
			return d.ArgErr()
		}
		switch name {
		case "client_id":
			cfg.ClientID = args[0]
		case "username":
			cfg.Username = args[0]
		case "password":
			cfg.Password = args[0]
		case "lease":
			lease, err := caddy.ParseDuration(args[0])
			if err != nil {
				return d.Errf("mqtt: lease: %v", err)
			}
			if err := mqtt.ValidateLease(lease); err != nil {
				return d.Errf("mqtt: %v", err)
			}
			cfg.Lease = mqtt.Duration(lease)
		case "prefix":
			if err := mqtt.ValidatePrefix(args[0]); err != nil {
				return d.Errf("mqtt: %v", err)
			}
			cfg.Prefix = args[0]
		case "subscribe":
			sub, err := parseSubscription(args)
			if err != nil {
				return d.Errf("mqtt: subscribe: %v", err)
			}
			cfg.Subscribe = append(cfg.Subscribe, sub)
		default:
			return d.Errf("unknown mqtt sub-directive %q", name)
		}
	}
	if len(cfg.Subscribe) == 0 {
		return d.Errf("mqtt %s: no subscribe: add at least one `subscribe FILTER [QOS]`", cfg.URL)
	}
	if cfg.Password != "" && cfg.Username == "" {
		return d.Errf("mqtt %s: password without username", cfg.URL)
	}
	c.MQTT = append(c.MQTT, cfg)
	return nil
}

func parseSubscription(args []string) (mqtt.Subscription, error) {
	qos := mqtt.DefaultQoS
	if len(args) == 2 {
		var err error
		if qos, err = strconv.Atoi(args[1]); err != nil {
			return mqtt.Subscription{}, fmt.Errorf("QoS %q is not a number: use 0, 1 or 2", args[1])
		}
	}
	if err := mqtt.ValidateFilter(args[0]); err != nil {
		return mqtt.Subscription{}, err
	}
	if err := mqtt.ValidateQoS(qos); err != nil {
		return mqtt.Subscription{}, err
	}
	return mqtt.Subscription{Filter: args[0], QoS: byte(qos)}, nil
}
