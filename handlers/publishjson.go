package handlers

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// scanMessage reads a JSON publish of one message in the shape publishers
// send, without json.Decoder, whose reader, buffer and reflection are
// most of the handler's allocations for one message: an object whose
// keys are exactly "topic", "event" or "data", the first two with plain
// string values (no escape), and body nothing but that object. It reports
// false for anything else, valid or not, and the caller decodes with
// decodeStrict, which gives what it decodes and its errors, so the two
// agree on every body: case-folded or unknown keys, escapes, nulls for
// strings and every error take that path.
func scanMessage(body []byte) (jsonMessage, bool) {
	s := jsonScanner{b: body}
	m, ok := s.message()
	return m, ok && s.end()
}

// scanBatch is scanMessage for a batch: an array of 1 to maxBatch such
// objects. Anything else, an empty or too long array too, is for
// decodeBatch to decode or refuse.
func scanBatch(body []byte, maxBatch int) ([]jsonMessage, bool) {
	s := jsonScanner{b: body}
	if !s.consume('[') {
		return nil, false
	}
	var in []jsonMessage
	for len(in) < maxBatch {
		m, ok := s.message()
		if !ok {
			return nil, false
		}
		in = append(in, m)
		switch {
		case s.consume(','):
		case s.consume(']'):
			return in, s.end()
		default:
			return nil, false
		}
	}
	return nil, false
}

// jsonScanner walks a JSON text for scanMessage and scanBatch.
type jsonScanner struct {
	b []byte
	i int
}

// message reads one object of a message.
func (s *jsonScanner) message() (jsonMessage, bool) {
	var m jsonMessage
	ok := s.object(func(key []byte) bool {
		var v []byte
		ok := false
		switch string(key) {
		case "topic":
			v, ok = s.plainString()
			m.Topic = string(v)
		case "event":
			v, ok = s.plainString()
			m.Event = string(v)
		case "data":
			m.Data, ok = s.value()
		}
		return ok
	})
	return m, ok
}

// object reads an object whose keys are plain strings: field is called
// with each key and s at its value, reads the value and reports whether
// it could.
func (s *jsonScanner) object(field func(key []byte) bool) bool {
	if !s.consume('{') {
		return false
	}
	if s.consume('}') {
		return true
	}
	for {
		key, ok := s.plainString()
		if !ok || !s.consume(':') || !field(key) {
			return false
		}
		switch {
		case s.consume(','):
		case s.consume('}'):
			return true
		default:
			return false
		}
	}
}

func (s *jsonScanner) skipSpace() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// consume skips white space and c, if c comes next.
func (s *jsonScanner) consume(c byte) bool {
	s.skipSpace()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// end reports whether nothing but white space is left.
func (s *jsonScanner) end() bool {
	s.skipSpace()
	return s.i == len(s.b)
}

// plainString reads a string without escapes and returns what is between
// its quotes: UTF-8 text without control characters.
func (s *jsonScanner) plainString() ([]byte, bool) {
	if !s.consume('"') {
		return nil, false
	}
	start := s.i
	end := bytes.IndexByte(s.b[start:], '"')
	if end < 0 {
		return nil, false
	}
	v := s.b[start : start+end]
	if !plainText(v) {
		return nil, false
	}
	s.i = start + end + 1
	return v, true
}

// value reads one JSON value, checked by json.Valid, and returns it as
// it is written.
func (s *jsonScanner) value() ([]byte, bool) {
	s.skipSpace()
	start := s.i
	depth := 0
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch c {
		case '"':
			if !s.skipString() {
				return nil, false
			}
			if depth == 0 {
				return s.valid(start)
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return s.valid(start)
			}
			depth--
			if depth == 0 {
				s.i++
				return s.valid(start)
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return s.valid(start)
			}
		}
		s.i++
	}
	return s.valid(start)
}

// skipString moves past the string that starts at s.i, escapes and all.
func (s *jsonScanner) skipString() bool {
	for s.i++; s.i < len(s.b); s.i++ {
		switch s.b[s.i] {
		case '\\':
			s.i++
		case '"':
			s.i++
			return true
		}
	}
	return false
}

func (s *jsonScanner) valid(start int) ([]byte, bool) {
	v := s.b[start:s.i]
	return v, len(v) > 0 && json.Valid(v)
}

// plainText reports whether b, a JSON string's content, needs no
// unquoting: UTF-8 without escapes, quotes or control characters, so
// that it is the string's value as it is.
func plainText(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == '\\' || c == '"' {
			return false
		}
	}
	return utf8.Valid(b)
}
