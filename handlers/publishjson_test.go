package handlers

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzScanMessage: whatever scanMessage or scanBatch accepts, decodeStrict
// or decodeBatch decodes to the same messages, and message() converts
// their data as json.Unmarshal (a string) or json.Compact (any other
// value) does.
func FuzzScanMessage(f *testing.F) {
	for _, seed := range []string{
		`{"topic":"a","data":{"n":[1,2.5e3,"x}"]},"event":"e"}`,
		`{ "topic" : "a/b" , "data" : "hello" }`,
		`{"topic":"a","data":"\u00e9\"q\""}`,
		`{"topic":"a","data":[1, 2, {"k": "v w"}]}`,
		`{"topic":"a","data":null}`,
		`{"topic":"a","data":true}`,
		`{"topic":"a","data":-1.5e-3}`,
		`{"topic":"a","topic":"b"}`,
		`{"Topic":"a"}`,
		`{"topic":null}`,
		`{"topic":"a\u0000"}`,
		`{"topic":"a","extra":1}`,
		`{"topic":"a"} {"topic":"b"}`,
		`{"topic":"a","data":1 2}`,
		`{"topic":"a","data":[1,]}`,
		`{"topic":"a",}`,
		`{"topic":"é","data":"\xff"}`,
		`[{"topic":"a","data":"1"},{"data":{"x":[]}} ]`,
		`[{"topic":"a"},{"topic":"a"},{"topic":"a"},{"topic":"a"}]`,
		`[{"topic":"a"},null]`,
		`[{"topic":"a"}] x`,
		`{}`, `{`, `}`, `[]`, `[`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		body = bytes.TrimSpace(body)
		const maxBatch = 3
		var fast, slow []jsonMessage
		var ok bool
		var err error
		if len(body) > 0 && body[0] == '[' {
			if fast, ok = scanBatch(body, maxBatch); !ok {
				return
			}
			slow, err = decodeBatch(body, maxBatch)
		} else {
			fast, slow = make([]jsonMessage, 1), make([]jsonMessage, 1)
			if fast[0], ok = scanMessage(body); !ok {
				return
			}
			err = decodeStrict(body, &slow[0])
		}
		if err != nil {
			t.Fatalf("scanned %q, decoding refused it: %v", body, err)
		}
		if len(fast) != len(slow) {
			t.Fatalf("%q: scanned %d messages, decoded %d", body, len(fast), len(slow))
		}
		for i := range fast {
			checkScanned(t, body, fast[i], slow[i])
		}
	})
}

func checkScanned(t *testing.T, body []byte, fast, slow jsonMessage) {
	t.Helper()
	if fast.Topic != slow.Topic || fast.Event != slow.Event || !bytes.Equal(fast.Data, slow.Data) {
		t.Fatalf("%q: scanned %+v, decoded %+v", body, fast, slow)
	}
	got, err := fast.message()
	if err != nil {
		t.Fatalf("%q: %v", body, err)
	}
	var want string
	switch {
	case len(slow.Data) == 0 || string(slow.Data) == "null":
	case slow.Data[0] == '"':
		if err := json.Unmarshal(slow.Data, &want); err != nil {
			t.Fatal(err)
		}
	default:
		var compact bytes.Buffer
		if err := json.Compact(&compact, slow.Data); err != nil {
			t.Fatal(err)
		}
		want = compact.String()
	}
	if got.Data != want {
		t.Fatalf("%q: data %q, want %q", body, got.Data, want)
	}
}

// FuzzAppendAck: a WebSocket publish's ack is the bytes json.Marshal makes
// of its wsReply, for every ref a client may send and every ID.
func FuzzAppendAck(f *testing.F) {
	for _, seed := range []struct {
		ref, id string
		batch   bool
	}{
		{`"p1"`, "5b310d3f-1", false},
		{``, "5b310d3f-1", true},
		{`42`, "a", true},
		{`-1.5e3`, "", false},
		{`"a b"`, "x", false},
		{`"<&>"`, "x\u2028<", true},
		{`"\u00e9\n"`, "é", false},
		{`"é"`, "\x7f", true},
	} {
		f.Add(seed.ref, seed.id, seed.batch)
	}
	f.Fuzz(func(t *testing.T, ref, id string, batch bool) {
		raw := json.RawMessage(ref)
		if !validRef(raw) || (len(raw) > 0 && !json.Valid(raw)) {
			return
		}
		ids := []string{id}
		if batch {
			ids = append(ids, id+"2")
		}
		want := wsReply{Type: "ack", Ref: raw, IDs: ids}
		if !batch {
			want.ID, want.IDs = id, nil
		}
		w, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendAck(nil, raw, ids, batch); !bytes.Equal(got, w) {
			t.Fatalf("ref %q, ids %q: %s, want %s", ref, ids, got, w)
		}
	})
}
