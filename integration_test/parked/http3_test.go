package parked_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/quic-go/quic-go/http3"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// HTTP/3 streams, like HTTP/2 ones, cannot leave net/http's (here
// quic-go's) server: they keep the goroutine path, with heartbeats and the
// reason at shutdown, over QUIC on the site's UDP port.
func TestHTTP3StreamsKeepTheGoroutinePath(t *testing.T) {
	c := testCert(t)
	s := testserver.StartWith(t, `	servers {
		protocols h3
	}`, strings.NewReplacer("{CERT}", c.certFile, "{KEY}", c.keyFile).Replace(tlsSite))
	s.Base = strings.Replace(s.Base, "http://", "https://", 1)
	clientTLS := c.client.Clone()
	clientTLS.NextProtos = []string{http3.NextProtoH3}
	tr := &http3.Transport{TLSClientConfig: clientTLS}
	t.Cleanup(func() { tr.Close() })

	sub := testserver.Subscribe(t, &http.Client{Transport: tr}, s.Base+"/events?topic=h3", nil)
	if sub.Resp.ProtoMajor != 3 {
		t.Fatalf("stream is %s, want HTTP/3", sub.Resp.Proto)
	}
	for i := range 3 {
		id := publishH3(t, tr, s.Base, fmt.Sprint(i))
		if ev := sub.Next(); ev.ID != id {
			t.Fatalf("got %+v, want %s", ev, id)
		}
	}
	if ev := sub.NextAny(); !ev.IsComment || ev.Comment != "" {
		t.Fatalf("got %+v, want a heartbeat", ev)
	}
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	for {
		ev := sub.NextAny()
		if !ev.IsComment {
			t.Fatalf("got %+v, want the stream's end", ev)
		}
		if ev.Comment != "" {
			if ev.Comment != "closed: server shutting down" {
				t.Fatalf("stream ended with %q", ev.Comment)
			}
			return
		}
	}
}

// publishH3 publishes data to topic h3 over HTTP/3 and returns its ID: the
// site serves nothing but HTTP/3.
func publishH3(t *testing.T, tr *http3.Transport, base, data string) string {
	t.Helper()
	resp, err := (&http.Client{Transport: tr}).PostForm(base+"/events", url.Values{"topic": {"h3"}, "data": {data}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || resp.ProtoMajor != 3 {
		t.Fatalf("publish over HTTP/3: %s %s, %v", resp.Proto, resp.Status, err)
	}
	return out.ID
}
