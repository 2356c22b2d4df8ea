package transports_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// Behind Caddy's encode directive SSE still streams, uncompressed, while
// other responses of the site are compressed.
func TestSSEBehindEncodeStreamsUncompressed(t *testing.T) {
	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	encode gzip zstd
	pubsub /events*
	respond /page "`+strings.Repeat("compress me ", 200)+`"
}
`)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	gz := http.Header{"Accept-Encoding": {"gzip, zstd"}}

	req, _ := http.NewRequest("GET", s.Base+"/page", nil)
	req.Header = gz.Clone()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Content-Encoding") == "" {
		t.Fatal("encode is not active on this site: the test would prove nothing")
	}

	sub := testserver.Subscribe(t, client, s.Base+"/events?topic=enc", gz)
	if ce := sub.Resp.Header.Get("Content-Encoding"); ce != "" {
		t.Fatalf("SSE compressed with %q", ce)
	}
	for i := range 3 {
		id := testserver.Publish(t, s.Base+"/events", url.Values{"topic": {"enc"}, "data": {fmt.Sprint(i)}})
		if ev := sub.Next(); ev.ID != id {
			t.Fatalf("got %+v, want %s", ev, id)
		}
	}
}

// Over HTTP/2 (h2c here) each message is flushed as it is published.
func TestSSEOverHTTP2(t *testing.T) {
	s := testserver.StartWith(t, `	servers {
		protocols h1 h2c
	}`, `
http://127.0.0.1:{PORT} {
	pubsub /events*
}
`)
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: protocols}}
	a := testserver.Subscribe(t, client, s.Base+"/events?topic=h2", nil)
	b := testserver.Subscribe(t, client, s.Base+"/events?topic=h2", nil)
	if a.Resp.ProtoMajor != 2 {
		t.Fatalf("stream is %s, want HTTP/2", a.Resp.Proto)
	}
	for i := range 3 {
		id := testserver.Publish(t, s.Base+"/events", url.Values{"topic": {"h2"}, "data": {fmt.Sprint(i)}})
		for _, sub := range []*testserver.SSEStream{a, b} {
			if ev := sub.Next(); ev.ID != id {
				t.Fatalf("got %+v, want %s", ev, id)
			}
		}
	}
}
