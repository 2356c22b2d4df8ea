package handlers

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// FuzzAppendEnvelope: appendEnvelope and appendJSONString make the bytes
// json.Marshal makes, for any text or binary data and any time.
func FuzzAppendEnvelope(f *testing.F) {
	f.Add("5b310d3f-1", "a/b", "", `{"n":"x\\y"}`, int64(1795309685750835400), int64(0), false)
	f.Add("", "é/\u2028", "e<>&", "line\nnext\ttab\x00\x7f", int64(0), int64(-62135596800), false)
	f.Add("\xff", "t", "ev\"", "\xed\xa0\x80 surrogate", int64(-1), int64(253402300800), false)
	f.Add("5b310d3f-2", "bin", "e", "\x00\xff\xfe binary\r\n", int64(5), int64(1795309685), true)
	f.Fuzz(func(t *testing.T, id, topic, event, data string, nsec, sec int64, binary bool) {
		for _, s := range []string{id, topic, event, data} {
			want, _ := json.Marshal(s)
			if got := appendJSONString([]byte("x"), s); !bytes.Equal(got[1:], want) {
				t.Fatalf("appendJSONString(%q) = %s, want %s", s, got[1:], want)
			}
		}
		m := &hub.Message{ID: id, Topic: topic, Event: event, Data: data, Binary: binary, Time: time.Unix(sec, nsec)}
		want, _ := json.Marshal(newEnvelope(m))
		if got := appendEnvelope(nil, m); !bytes.Equal(got, want) {
			t.Fatalf("appendEnvelope(%+v) = %s, want %s", m, got, want)
		}
	})
}
