package redis

import (
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

// Whatever IDs clients resume from: parsing never panics, a parsed ID
// prints back to one that parses the same, and After orders IDs of one
// epoch strictly (never both ways, never an ID after itself) and calls
// every ID it cannot compare "after".
func FuzzID(f *testing.F) {
	for _, seed := range [][2]string{
		{"86f71a78-1795307561868-0", "86f71a78-1795307561868-1"},
		{"86f71a78-1795307561868-0", "86f71a78-1795307561867-9"},
		{"86f71a78-1-0", "0a0a0a0a-2-0"},
		{"e-01-0", "e-1-0"},
		{"e-18446744073709551615-18446744073709551615", "e-0-0"},
		{"e-18446744073709551616-0", "e-1-0"},
		{"e--1-0", "e-+1-0"},
		{"e-1", "e-1-0-0"},
		{"-1-0", "earliest"},
		{"", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	b := new(Broker)
	f.Fuzz(func(t *testing.T, a, ref string) {
		pa, okA := parseID(a)
		pr, okR := parseID(ref)
		if okA {
			if pa.epoch == "" || strings.Contains(pa.epoch, "-") {
				t.Fatalf("%q parsed with epoch %q", a, pa.epoch)
			}
			if back, ok := parseID(pa.epoch + "-" + pa.id.String()); !ok || back != pa {
				t.Fatalf("%q parsed as %+v, which prints to one that parses as %+v", a, pa, back)
			}
			if b.After(a, a) {
				t.Fatalf("%q is after itself", a)
			}
		}
		after, before := b.After(a, ref), b.After(ref, a)
		switch {
		case !okA || !okR || pa.epoch != pr.epoch:
			if !after || !before {
				t.Fatalf("%q and %q cannot be compared, yet After is %v and %v", a, ref, after, before)
			}
		case pa.id == pr.id:
			if after || before {
				t.Fatalf("%q and %q are one position, yet one is after the other", a, ref)
			}
		case after == before:
			t.Fatalf("%q and %q: After is %v both ways", a, ref, after)
		}
	})
}

// Whatever a foreign writer puts on the stream: decoding an entry never
// panics, and an entry it accepts is a message with a valid topic whose ID
// parses back to the entry's epoch and stream ID.
func FuzzDecode(f *testing.F) {
	f.Add("1795307561868-0", "86f71a78", "a/b", "e", "data")
	f.Add("1-2", "86f71a78", "a/+", "", "")
	f.Add("1-2", "8-6", "a", "", "")
	f.Add("x-2", "86", "a", "", "")
	f.Add("1-2", "", "a", "", "")
	f.Add("18446744073709551615-0", "e", "t", "", "")
	f.Fuzz(func(t *testing.T, id, epoch, topic, event, data string) {
		e, _, ok := decode(goredis.XMessage{ID: id, Values: map[string]any{"epoch": epoch, "topic": topic, "event": event, "data": data}})
		if !ok {
			return
		}
		if err := hub.ValidateTopic(e.Topic); err != nil {
			t.Fatalf("accepted topic %q: %v", e.Topic, err)
		}
		p, ok := parseID(e.ID)
		if !ok || p.epoch != e.epoch || p.id != e.id {
			t.Fatalf("message ID %q parses as %+v, %v; entry is %q %+v", e.ID, p, ok, e.epoch, e.id)
		}
		if e.Time.UnixMilli() < 0 {
			t.Fatalf("entry %q has time %s", id, e.Time)
		}
	})
}

// Whatever arrives on the signal channel (anyone with access to Redis may
// publish there): decoding never panics, never takes an oversized payload
// or one of a newer format, and yields only signals with a valid topic and
// no ID.
func FuzzSignal(f *testing.F) {
	for _, seed := range []string{
		`{"topic":"$pubsub/subscribe","data":"{\"id\":\"x-1\"}","time":1795307561868}`,
		`{"topic":"a/+","data":"","time":1}`,
		`{"topic":"a","data":"x","time":-1}`,
		`{"topic":"a","event":"e","data":"x","time":9223372036854775807}`,
		`[{"topic":"a"}]`,
		`{"topic":"` + strings.Repeat("a", 300) + `"}`,
		`{"v":1,"topic":"a","data":"x","time":1,"added":[1]}`,
		`{"v":3,"topic":"a","data":"x","time":1}`,
		`{"v":3,"topic":"a","data":"x","time":"later"}`,
		`{"v":-1,"topic":"a","data":"x","time":1}`,
		`{"v":1000,"topic":"a","data":"x","time":1}`,
		``,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		m, version, ok := decodeSignal(payload)
		if version > maxVersion {
			t.Fatalf("%q: version %d taken for one", payload, version)
		}
		if !ok {
			return
		}
		if len(payload) > maxSignalPayload || version > formatVersion || m.ID != "" || hub.ValidateTopic(m.Topic) != nil {
			t.Fatalf("%q decoded as %+v", payload, m)
		}
	})
}

// Whatever a foreign writer puts in the drops of rules: parsing a mark
// never panics, and what this broker writes parses back.
func FuzzMark(f *testing.F) {
	f.Add(uint64(1795307561868), uint64(0), uint64(1795307561869), uint64(3), "metrics/a")
	f.Add(uint64(0), uint64(0), uint64(0), uint64(0), "")
	f.Add(uint64(1<<64-1), uint64(1<<64-1), uint64(1), uint64(2), "a b/\u00e9")
	f.Fuzz(func(t *testing.T, ms, seq, atMS, atSeq uint64, topic string) {
		s := padID(streamID{ms, seq}) + padID(streamID{atMS, atSeq}) + topic
		m, ok := parseMark(s)
		if !ok || m.seq != (streamID{ms, seq}) || m.at != (streamID{atMS, atSeq}) || m.topic != topic {
			t.Fatalf("mark %q parses as %+v, %v", s, m, ok)
		}
		_, _ = parseMark(topic)
		_, _ = parseMark(s[:len(s)/2])
	})
}
