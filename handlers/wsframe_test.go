package handlers

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzScanFrame: a frame the scanner takes is one json.Decoder takes too,
// with the same fields, so parseFrame's fast path changes nothing a
// client sees.
func FuzzScanFrame(f *testing.F) {
	for _, seed := range []string{
		`{"type":"publish","topic":"a","data":{"n":[1,2.5e3,"x}"]},"event":"e","ref":7}`,
		`{ "type" : "publish" , "topic" : "a/b" , "data" : "hello", "ref": "r-1" }`,
		`{"type":"publish","topic":"a","data":"\u00e9\"q\"","idempotency_key":"k"}`,
		`{"type":"publish","messages":[{"topic":"a","data":"x"}],"ref":"x"}`,
		`{"type":"publish","topic":"a","data_base64":"aGk=","data_base64":"eA=="}`,
		`{"type":"subscribe","topics":["a"],"last_id":"earliest"}`,
		`{"type":"refresh","token":"a.b.c","ref":-1.5e3}`,
		`{"type":"publish","ref":null}`, `{"type":"publish","ref":{"a":1}}`, `{"ref":1e400}`,
		`{"type":"publish","data":null}`, `{"Type":"publish"}`, `{"type":null}`,
		`{"type":"publish","extra":1}`, `{"type":"a"} {"type":"b"}`, `{"type":"a",}`,
		`{"type":"é","topic":"\xff"}`, `{}`, `{`, `}`, `[]`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := scanFrame(data)
		if !ok {
			return
		}
		var slow clientFrame
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&slow); err != nil || dec.More() {
			t.Fatalf("scanned %q, decoding refused it: %v (more: %v)", data, err, dec.More())
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: scanned %+v, decoded %+v", data, fast, slow)
		}
		if validRef(fast.Ref) != validRefDecoded(fast.Ref) {
			t.Fatalf("ref %s: validRef says %v", fast.Ref, validRef(fast.Ref))
		}
	})
}

// validRefDecoded is validRef by decoding alone.
func validRefDecoded(ref json.RawMessage) bool {
	if len(ref) == 0 {
		return true
	}
	var v any
	if len(ref) > maxRefLength || json.Unmarshal(ref, &v) != nil {
		return false
	}
	switch v.(type) {
	case string, float64:
		return true
	}
	return false
}

// A publish frame in the usual shape is parsed without json.Decoder,
// whose reader, buffer and reflection cost a WebSocket publisher more
// allocations than the rest of its publish.
func TestParseFrameAllocations(t *testing.T) {
	frame := []byte(`{"type":"publish","topic":"chat/1","data":{"seq":42,"text":"hi"},"ref":17}`)
	parse := func() {
		if _, err := parseFrame(frame); err != nil {
			t.Fatal(err)
		}
	}
	// Three (the topic, the ref's copy, ParseFloat's string of it), and
	// one for json.Valid's scanner, which comes from a sync.Pool that the
	// race detector empties at random.
	if n := testing.AllocsPerRun(1000, parse); n > 4 {
		t.Errorf("%.0f allocations per publish frame, want at most 4 (json.Decoder made 18)", n)
	}
}
