package handlers

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestAnswerIsWhatJSONEncoderWrites: the publish answer is built by hand;
// it must be the bytes json.Encoder wrote before, for plain IDs and for
// IDs another broker module might make.
func TestAnswerIsWhatJSONEncoderWrites(t *testing.T) {
	for _, ids := range [][]string{
		{"5b310d3f-1"},
		{"1733412000000-0", "1733412000000-1"},
		{`a"b`, `back\slash`, "<tag>&", "tab\there", "é", "\u2028", ""},
	} {
		for _, batch := range []bool{false, true} {
			var want bytes.Buffer
			if batch {
				_ = json.NewEncoder(&want).Encode(map[string][]string{"ids": ids})
			} else {
				_ = json.NewEncoder(&want).Encode(map[string]string{"id": ids[0]})
			}
			if got := appendIDs(nil, ids, batch); !bytes.Equal(got, want.Bytes()) {
				t.Errorf("appendIDs(%q, batch %v) = %s, json.Encoder writes %s", ids, batch, got, want.Bytes())
			}
		}
	}
}
