package handlers

import (
	"encoding/json"
	"testing"
)

// Whatever a client sends, parsing and checking a frame never panics, and
// an accepted subscription frame is one the hub takes.
func FuzzClientFrame(f *testing.F) {
	for _, seed := range []string{
		`{"type":"subscribe","topics":["a/#","+/b"],"last_id":"earliest","ref":1}`,
		`{"type":"unsubscribe","topics":["a"],"ref":"x"}`,
		`{"type":"publish","topic":"a","data":{"n":[1,2]},"event":"e"}`,
		`{"type":"publish","messages":[{"topic":"a","data":"x"}]}`,
		`{"type":"subscribe","topics":["a/#/b"]}`,
		`{"ref":{"deep":[1]}}`, `[]`, `null`, `"str"`, `{"type":1}`, "\xff", ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		frame, err := parseFrame(data)
		if err != nil {
			return
		}
		if !validRef(frame.Ref) {
			t.Fatalf("accepted invalid ref %s", frame.Ref)
		}
		if frame.Type == "subscribe" && checkSubscription(frame, MaxTopicsPerRequest) == nil {
			if len(frame.Topics) == 0 || len(frame.Topics) > MaxTopicsPerRequest {
				t.Fatalf("accepted %d topics", len(frame.Topics))
			}
		}
		if frame.Messages != nil {
			in, err := decodeBatch(frame.Messages, MaxBatch)
			if err == nil && (len(in) == 0 || len(in) > MaxBatch) {
				t.Fatalf("decoded a batch of %d messages", len(in))
			}
			_, _ = messages(in, true)
		}
		_, _ = json.Marshal(frame)
	})
}
