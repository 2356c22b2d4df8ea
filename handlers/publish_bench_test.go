package handlers

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// BenchmarkPublish measures the handler's work for one publish request of
// each kind, as the load tool sends them, on a memory hub with no
// subscriber: parsing, checks, the hub's publish and the answer. Caddy's
// and net/http's share of a request is not in it (BENCHMARKS.md,
// "Publish paths").
func BenchmarkPublish(b *testing.B) {
	data := `{"seq":42,"sent_ns":1795309685750835400,"pad":"` + strings.Repeat("x", 40) + `"}`
	batch := "[" + strings.TrimSuffix(strings.Repeat(`{"topic":"bench/1","data":"`+strings.ReplaceAll(data, `"`, `\"`)+`"},`, 10), ",") + "]"
	for _, bc := range []struct {
		name, ctype, body string
		messages          int
	}{
		{"form", "application/x-www-form-urlencoded", "topic=bench%2F1&data=" + strings.ReplaceAll(data, `"`, "%22"), 1},
		{"json", "application/json", `{"topic":"bench/1","data":` + data + `}`, 1},
		{"json-batch-10", "application/json", batch, 10},
	} {
		b.Run(bc.name, func(b *testing.B) {
			publish := publishLoop(b, bc.ctype, bc.body)
			b.ReportAllocs()
			for b.Loop() {
				publish()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*bc.messages), "ns/msg")
		})
	}
}

// publishLoop returns a function that publishes body, of type ctype, with
// the publish key, to a memory hub without subscribers, reusing one
// request and recorder.
func publishLoop(tb testing.TB, ctype, body string) func() {
	h := hub.New(hub.NewMemoryBroker(hub.Retention{Count: 1000}), hub.Options{Retention: hub.Retention{Count: 1000}})
	tb.Cleanup(func() { _ = h.Close() })
	ep := &Endpoint{Hub: h, MaxMessageSize: 1 << 20, PublishKey: "bench-key", Logger: zap.NewNop()}
	rd := strings.NewReader(body)
	r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1/events", rd)
	r.Header.Set("Content-Type", ctype)
	r.Header.Set("Authorization", "Bearer bench-key")
	r.RemoteAddr = "127.0.0.1:40000"
	w := httptest.NewRecorder()
	return func() {
		rd.Reset(body)
		r.Body = readCloser{rd}
		r.ContentLength = int64(len(body))
		r.PostForm, r.Form = nil, nil
		w.Body.Reset()
		clear(w.Header())
		ep.Publish(w, r, Request{})
		if w.Code != http.StatusOK {
			tb.Fatalf("answered %d: %s", w.Code, w.Body)
		}
	}
}

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }
