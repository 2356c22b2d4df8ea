package handlers

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// benchMessage is a 100-byte message as the load tool sends it.
func benchMessage() *hub.Message {
	return &hub.Message{
		ID:    "5b310d3f-123456",
		Topic: "bench/0123456789ab",
		Data:  `{"pub":1,"seq":42,"sent_ns":1795309685750835400,"pad":"` + strings.Repeat("x", 40) + `"}`,
		Time:  time.Unix(1795309685, 750835400),
	}
}

// BenchmarkEncode measures encoding one message for each transport: what
// the first subscriber of a fan-out pays; the others share the bytes
// (BenchmarkFrameShared).
func BenchmarkEncode(b *testing.B) {
	m := benchMessage()
	for _, bc := range []struct {
		name   string
		encode func(*hub.Message) []byte
	}{
		{"sse", encodeSSE},
		{"sse-json", encodeSSEJSON},
		{"websocket", encodeWS},
		{"poll-json", encodeEnvelope},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bc.encode(m)
			}
		})
	}
}

// BenchmarkFrameShared measures what every subscriber after the first
// pays for a fanned-out message's SSE frame: a lookup of the shared bytes.
func BenchmarkFrameShared(b *testing.B) {
	h := hub.New(hub.NewMemoryBroker(hub.Retention{}), hub.Options{Queue: 1})
	defer h.Close()
	sub, _, _, err := h.Subscribe(context.Background(), []string{"bench/+"}, "")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := h.Publish(context.Background(), *benchMessage()); err != nil {
		b.Fatal(err)
	}
	<-sub.Ready()
	m, ok := sub.Next()
	if !ok {
		b.Fatal("no message")
	}
	m.Frame(frameSSE, encodeSSE)
	b.ReportAllocs()
	for b.Loop() {
		m.Frame(frameSSE, encodeSSE)
	}
}

// kibMessage is a 1 KiB JSON message: a batch of sensor readings.
func kibMessage() *hub.Message {
	m := benchMessage()
	var data strings.Builder
	data.WriteString(`{"readings":[`)
	for i := 0; data.Len() < 1000; i++ {
		if i > 0 {
			data.WriteByte(',')
		}
		data.WriteString(`{"sensor":"room-` + strconv.Itoa(i) + `","celsius":21.` + strconv.Itoa(i%10) + `,"ok":true}`)
	}
	data.WriteString(`]}`)
	m.Data = data.String()
	return m
}

// BenchmarkWSDeflate measures a message's WebSocket frame with and without
// permessage-deflate: the CPU of making it, paid once per message on the
// parked path (every subscriber shares the frame), and its bytes on the
// wire (wire-B/op), for a 100-byte and a 1 KiB JSON message.
func BenchmarkWSDeflate(b *testing.B) {
	for _, size := range []struct {
		name string
		m    func() *hub.Message
	}{{"100B", benchMessage}, {"1KiB", kibMessage}} {
		for _, bc := range []struct {
			name   string
			encode func(*hub.Message) []byte
		}{{"plain", encodeWSWire}, {"deflate", encodeWSDeflate}} {
			b.Run(size.name+"/"+bc.name, func(b *testing.B) {
				b.ReportAllocs()
				var n int
				for b.Loop() {
					// A fresh message each time: the frames are made
					// once per message.
					n = len(bc.encode(size.m()))
				}
				b.ReportMetric(float64(n), "wire-B/op")
			})
		}
	}
}
