package mqtt

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "tcp://broker", want: "tcp://broker:1883"},
		{in: "TCP://broker:1884", want: "tcp://broker:1884"},
		{in: "mqtt://127.0.0.1", want: "mqtt://127.0.0.1:1883"},
		{in: "ssl://broker", want: "ssl://broker:8883"},
		{in: "mqtts://broker:9000", want: "mqtts://broker:9000"},
		{in: "tls://[::1]", want: "tls://[::1]:8883"},
		{in: "ws://broker:8080/mqtt", want: "ws://broker:8080/mqtt"},
		{in: "wss://broker/mqtt", want: "wss://broker/mqtt"},
		{in: "tcp://broker/", want: "tcp://broker:1883"},
		{in: "broker:1883", err: "unsupported scheme"},
		{in: "//broker", err: "no scheme"},
		{in: "http://broker", err: "unsupported scheme"},
		{in: "tcp://", err: "no host"},
		{in: "tcp://user:hunter2@broker", err: "holds credentials"},
		{in: "tcp://broker/path", err: "no path or query"},
		{in: "tcp://broker?x=1", err: "no path or query"},
		{in: "tcp://broker:port", err: "invalid port"},
	} {
		u, err := ParseURL(tc.in)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseURL(%q) error %v, want %q", tc.in, err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("ParseURL(%q) error shows the password: %v", tc.in, err)
			}
		case err != nil:
			t.Errorf("ParseURL(%q): %v", tc.in, err)
		case u.String() != tc.want:
			t.Errorf("ParseURL(%q) = %s, want %s", tc.in, u, tc.want)
		}
	}
}

func TestValidateFilter(t *testing.T) {
	for filter, ok := range map[string]bool{
		"sensors/#":          true,
		"#":                  true,
		"+/kitchen/+":        true,
		"a//b":               true,
		"$SYS/#":             true,
		"$share/group/a/#":   true,
		"":                   false,
		"sensors/#/temp":     false,
		"sensors/kit+chen":   false,
		"sensors/#x":         false,
		"bad\x00nul":         false,
		string([]byte{0xff}): false,
	} {
		if err := ValidateFilter(filter); (err == nil) != ok {
			t.Errorf("ValidateFilter(%q) = %v, want ok=%v", filter, err, ok)
		}
	}
}

func TestValidatePrefix(t *testing.T) {
	for prefix, ok := range map[string]bool{
		"":            true,
		"mqtt/":       true,
		"plant-":      true,
		"$pubsub/":    false,
		"$x":          false,
		"wild/+/":     false,
		"ctl\x01/":    false,
		"deep/a/b/c/": true,
	} {
		if err := ValidatePrefix(prefix); (err == nil) != ok {
			t.Errorf("ValidatePrefix(%q) = %v, want ok=%v", prefix, err, ok)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := func() Config {
		return Config{URL: "tcp://127.0.0.1", Subscribe: []Subscription{{Filter: "a/#", QoS: 1}}}
	}
	for name, tc := range map[string]struct {
		edit func(*Config)
		err  string
	}{
		"ok":               {edit: func(*Config) {}},
		"no subscribe":     {edit: func(c *Config) { c.Subscribe = nil }, err: "no subscribe"},
		"bad qos":          {edit: func(c *Config) { c.Subscribe[0].QoS = 3 }, err: "QoS 3"},
		"bad filter":       {edit: func(c *Config) { c.Subscribe[0].Filter = "a/#/b" }, err: "last level"},
		"bad url":          {edit: func(c *Config) { c.URL = "udp://x" }, err: "unsupported scheme"},
		"password only":    {edit: func(c *Config) { c.Password = "secret" }, err: "password without username"},
		"cert without key": {edit: func(c *Config) { c.TLS = &TLS{Cert: "c.pem"} }, err: "cert and its key"},
		"long client id":   {edit: func(c *Config) { c.ClientID = strings.Repeat("x", 300) }, err: "client_id"},
		"reserved prefix":  {edit: func(c *Config) { c.Prefix = "$pubsub/" }, err: "prefix"},
		"short lease":      {edit: func(c *Config) { c.Lease = Duration(time.Second) }, err: "lease 1s"},
		"long lease":       {edit: func(c *Config) { c.Lease = Duration(time.Hour) }, err: "lease 1h"},
	} {
		c := good()
		tc.edit(&c)
		err := c.Validate()
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: Validate() = %v, want %q", name, err, tc.err)
		}
	}
}

func TestNewReadsTLSFiles(t *testing.T) {
	pki := newPKI(t)
	sub := []Subscription{{Filter: "a", QoS: 1}}
	for name, tc := range map[string]struct {
		cfg Config
		err string
	}{
		"ca and client cert": {cfg: Config{URL: "ssl://127.0.0.1", TLS: &TLS{CA: pki.CAFile, Cert: pki.ClientCert, Key: pki.ClientKey}}},
		"missing ca file":    {cfg: Config{URL: "ssl://127.0.0.1", TLS: &TLS{CA: pki.CAFile + ".missing"}}, err: "tls_ca"},
		"ca not PEM":         {cfg: Config{URL: "wss://127.0.0.1/mqtt", TLS: &TLS{CA: pki.ClientKey}}, err: "no PEM certificate"},
		"key mismatch":       {cfg: Config{URL: "ssl://127.0.0.1", TLS: &TLS{Cert: pki.ClientCert, Key: pki.CAFile}}, err: "tls_cert"},
		"tls on tcp":         {cfg: Config{URL: "tcp://127.0.0.1", TLS: &TLS{CA: pki.CAFile}}, err: "use ssl:// or wss://"},
	} {
		tc.cfg.Subscribe = sub
		l, err := New(tc.cfg, nil, Options{})
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want %q", name, err, tc.err)
		case err == nil && (l.tls == nil || l.tls.RootCAs == nil || len(l.tls.Certificates) != 1 || l.tls.ServerName != "127.0.0.1"):
			t.Errorf("%s: TLS config %+v", name, l.tls)
		}
	}
}

// JSON and the Caddyfile give a subscription the same default QoS, and
// JSON stays strict.
func TestSubscriptionJSONDefaults(t *testing.T) {
	var c Config
	if err := json.Unmarshal([]byte(`{"url":"tcp://127.0.0.1:1883","subscribe":[{"filter":"a/#"},{"filter":"b","qos":0}]}`), &c); err != nil {
		t.Fatal(err)
	}
	if got := []byte{c.Subscribe[0].QoS, c.Subscribe[1].QoS}; got[0] != DefaultQoS || got[1] != 0 {
		t.Errorf("QoS %v, want [%d 0]", got, DefaultQoS)
	}
	if err := json.Unmarshal([]byte(`{"filter":"a","qso":1}`), new(Subscription)); err == nil {
		t.Error("a subscription with an unknown field decoded")
	}
	for raw, want := range map[string]time.Duration{`{"lease":"15s"}`: 15 * time.Second, `{"lease":3000000000}`: 3 * time.Second} {
		var c Config
		if err := json.Unmarshal([]byte(raw), &c); err != nil || time.Duration(c.Lease) != want {
			t.Errorf("%s: lease %s, %v; want %s", raw, time.Duration(c.Lease), err, want)
		}
	}
	if err := json.Unmarshal([]byte(`{"lease":"soon"}`), new(Config)); err == nil {
		t.Error("a lease that is no duration decoded")
	}
	if b, _ := json.Marshal(Config{Lease: Duration(10 * time.Second)}); !strings.Contains(string(b), `"lease":"10s"`) {
		t.Errorf("marshalled %s, want the lease as a string", b)
	}
}

// The default client ID is the same for the same hub, broker and
// subscriptions (in any order, the port implied or not), on any machine,
// and differs for another hub, broker or subscription; it is within what
// MQTT 3.1.1 requires every broker to accept.
func TestDefaultClientIDPerLink(t *testing.T) {
	cfg := func(url string, subs ...Subscription) Config { return Config{URL: url, Subscribe: subs} }
	a, b := Subscription{Filter: "a/#", QoS: 1}, Subscription{Filter: "b", QoS: 0}
	base := DefaultClientID("events", cfg("tcp://broker", a, b))
	if !regexp.MustCompile(`^[0-9a-zA-Z]{1,23}$`).MatchString(base) {
		t.Errorf("client ID %q: not 1 to 23 letters and digits", base)
	}
	for name, same := range map[string]string{
		"order":        DefaultClientID("events", cfg("tcp://broker", b, a)),
		"default port": DefaultClientID("events", cfg("tcp://broker:1883", a, b)),
		"prefix":       DefaultClientID("events", Config{URL: "tcp://broker", Subscribe: []Subscription{a, b}, Prefix: "x/"}),
	} {
		if same != base {
			t.Errorf("%s: %q, want %q", name, same, base)
		}
	}
	for name, other := range map[string]string{
		"hub":    DefaultClientID("other", cfg("tcp://broker", a, b)),
		"broker": DefaultClientID("events", cfg("tcp://broker2", a, b)),
		"qos":    DefaultClientID("events", cfg("tcp://broker", a, Subscription{Filter: "b", QoS: 1})),
		"filter": DefaultClientID("events", cfg("tcp://broker", a)),
	} {
		if other == base {
			t.Errorf("%s: same client ID %q", name, base)
		}
	}
}
