package handlers

import (
	"bytes"
	"encoding/json"
	"strings"
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

// TestPublishAllocations keeps the handler's allocations per publish (its
// share of a request's: parsing, checks, the hub's publish on a memory
// hub, the answer) from creeping back: each one is GC work thousands of
// times a second.
func TestPublishAllocations(t *testing.T) {
	data := `{"seq":42,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`
	for _, tc := range []struct {
		name, ctype, body string
		most              float64
	}{
		{"json", "application/json", `{"topic":"bench/1","data":` + data + `}`, 17},
		{"form", "application/x-www-form-urlencoded", "topic=bench%2F1&data=" + strings.ReplaceAll(data, `"`, "%22"), 26},
	} {
		t.Run(tc.name, func(t *testing.T) {
			publish := publishLoop(t, tc.ctype, tc.body)
			publish()
			// The bounds are one above what a publish takes, for
			// json.Valid's pooled scanner, which the race detector's
			// sync.Pool drops at random (before: JSON 20, form 29).
			if n := testing.AllocsPerRun(1000, publish); n > tc.most {
				t.Errorf("%.0f allocations per publish, want at most %.0f", n, tc.most)
			}
		})
	}
}
