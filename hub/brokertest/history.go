package brokertest

// Clauses on history: the range Since returns, gaps for IDs it no longer
// covers, retention by count and age, filters and pages, and Head.

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-pubsub/caddy-pubsub/hub"
)

func testSinceRange(t *testing.T, newBroker NewBroker) {
	b, rec := start(t, newBroker, hub.Retention{Count: 100})
	if msgs, gap := since(t, b, hub.Earliest, ""); len(msgs) != 0 || gap != nil {
		t.Fatalf("Since(earliest, \"\") on an empty broker: %v, gap %+v", idsOf(msgs), gap)
	}
	ids := publishN(t, b, 12, 5)
	rec.wait(len(ids))

	froms := append([]string{hub.Earliest}, ids...)
	for i, from := range froms {
		first := i // index in ids of the first message after from
		if msgs, gap := since(t, b, from, ""); len(msgs) != 0 || gap != nil {
			t.Fatalf("Since(%q, \"\") before anything was delivered to the hub: %v, gap %+v", from, idsOf(msgs), gap)
		}
		for j, upto := range ids {
			msgs, gap := since(t, b, from, upto)
			checkGap(t, fmt.Sprintf("Since(%q, %q)", from, upto), gap, nil)
			var want []string
			if first <= j {
				want = ids[first : j+1]
			}
			checkIDs(t, fmt.Sprintf("Since(%q, %q)", from, upto), msgs, want)
		}
	}
}

func testForeignIDs(t *testing.T, newBroker NewBroker) {
	other, otherRec := start(t, newBroker, hub.Retention{Count: 100})
	foreign := publish(t, other, hub.Message{Topic: "t", Data: "elsewhere"})[0]
	otherRec.wait(1)

	b, rec := start(t, newBroker, hub.Retention{Count: 100})
	ids := publishN(t, b, 3, 3)
	rec.wait(3)
	for _, lastID := range []string{
		foreign, "garbage", "-", "--", "0", "0-0", "00000000-1", "ffffffff-1-0", "a-b-c", "1-1-1-1",
		"earliest2", "EARLIEST", " " + ids[0], ids[0] + "x", "\x00", "-" + ids[0],
		strings.Repeat("9", 300), strings.Repeat("9", 30) + "-" + strings.Repeat("9", 30),
	} {
		msgs, gap := since(t, b, lastID, ids[2])
		checkGap(t, fmt.Sprintf("Since(%.40q)", lastID), gap, &hub.Gap{LastID: lastID, FirstID: ids[0]})
		checkIDs(t, fmt.Sprintf("Since(%.40q)", lastID), msgs, ids)
	}
}

func testCountRetention(t *testing.T, newBroker NewBroker) {
	const count, n = 5, 250
	b, rec := start(t, newBroker, hub.Retention{Count: count})
	ids := publishN(t, b, n, 10)
	rec.wait(n)
	last := ids[n-1]

	// A broker may trim lazily or approximately (Redis streams do), so it
	// may keep more than count; never fewer, and never everything here.
	retained, gap := since(t, b, hub.Earliest, last)
	checkGap(t, "Since(earliest)", gap, nil)
	kept := len(retained)
	if kept < count || kept >= n {
		t.Fatalf("Since(earliest) returned %d messages; want at least %d and fewer than all %d", kept, count, n)
	}
	firstIdx := n - kept
	checkIDs(t, "Since(earliest)", retained, ids[firstIdx:])

	// Resume from around the retention edge, and from long before it.
	froms := []int{0, 1, 2}
	for k := max(0, firstIdx-3); k < n; k++ {
		froms = append(froms, k)
	}
	for _, k := range froms {
		msgs, gap := since(t, b, ids[k], last)
		what := fmt.Sprintf("Since(message %d of %d, retained from %d)", k, n, firstIdx)
		if k >= firstIdx-1 {
			checkGap(t, what, gap, nil)
			checkIDs(t, what, msgs, ids[k+1:])
		} else {
			checkGap(t, what, gap, &hub.Gap{LastID: ids[k], FirstID: ids[firstIdx]})
			checkIDs(t, what, msgs, ids[firstIdx:])
		}
	}
	// upto bounds the answer even when more is retained.
	msgs, _ := since(t, b, ids[n-3], ids[n-2])
	checkIDs(t, "Since(n-3, n-2)", msgs, ids[n-2:n-1])
}

func testAgeRetention(t *testing.T, newBroker NewBroker) {
	const age = 300 * time.Millisecond
	b, rec := start(t, newBroker, hub.Retention{Count: 100, MaxAge: age})
	old := publish(t, b, hub.Message{Topic: "t", Data: "0"}, hub.Message{Topic: "t", Data: "1"})
	rec.wait(2)
	if msgs, _ := since(t, b, hub.Earliest, old[1]); len(msgs) != 2 {
		t.Fatalf("fresh messages: Since(earliest) returned %v, want both", idsOf(msgs))
	}
	eventually(t, "messages older than max age are dropped", func() bool {
		msgs, _ := since(t, b, hub.Earliest, old[1])
		return len(msgs) == 0
	})
	fresh := publish(t, b, hub.Message{Topic: "t", Data: "2"})[0]
	rec.wait(3)

	msgs, gap := since(t, b, hub.Earliest, fresh)
	checkGap(t, "Since(earliest)", gap, nil)
	checkIDs(t, "Since(earliest)", msgs, []string{fresh})

	// The client saw the last dropped message: it missed nothing.
	msgs, gap = since(t, b, old[1], fresh)
	checkGap(t, "Since(last dropped)", gap, nil)
	checkIDs(t, "Since(last dropped)", msgs, []string{fresh})

	// The client saw only the first: the second was dropped unseen.
	msgs, gap = since(t, b, old[0], fresh)
	checkGap(t, "Since(first dropped)", gap, &hub.Gap{LastID: old[0], FirstID: fresh})
	checkIDs(t, "Since(first dropped)", msgs, []string{fresh})
}

// testNoRetention: count 0 keeps nothing, with or without an age bound.
func testNoRetention(t *testing.T, newBroker NewBroker) {
	for _, r := range []hub.Retention{{}, {MaxAge: time.Hour}} {
		t.Run(fmt.Sprintf("age %s", r.MaxAge), func(t *testing.T) { testRetainsNothing(t, newBroker, r) })
	}
}

func testRetainsNothing(t *testing.T, newBroker NewBroker, r hub.Retention) {
	b, rec := start(t, newBroker, r)
	var ids []string
	for range 3 {
		ids = append(ids, publishN(t, b, 1, 1)...)
	}
	checkIDs(t, "delivered", rec.wait(3), ids)

	msgs, gap := since(t, b, hub.Earliest, ids[2])
	checkGap(t, "Since(earliest)", gap, nil)
	checkIDs(t, "Since(earliest)", msgs, nil)

	msgs, gap = since(t, b, ids[2], ids[2])
	checkGap(t, "Since(latest)", gap, nil)
	checkIDs(t, "Since(latest)", msgs, nil)

	msgs, gap = since(t, b, ids[0], ids[2])
	checkGap(t, "Since(first)", gap, &hub.Gap{LastID: ids[0]})
	checkIDs(t, "Since(first)", msgs, nil)
}

func testSetRetention(t *testing.T, newBroker NewBroker) {
	b, rec := start(t, newBroker, hub.Retention{Count: 100})
	ids := publishN(t, b, 20, 4)
	b.SetRetention(hub.Retention{Count: 5})
	ids = append(ids, publishN(t, b, 1, 1)...)
	rec.wait(len(ids))
	last := ids[len(ids)-1]

	msgs, _ := since(t, b, hub.Earliest, last)
	if len(msgs) < 5 {
		t.Fatalf("after SetRetention(5): %d retained, want at least 5", len(msgs))
	}
	checkIDs(t, "after SetRetention(5)", msgs, ids[len(ids)-len(msgs):])

	b.SetRetention(hub.Retention{MaxAge: time.Hour})
	msgs, gap := since(t, b, hub.Earliest, last)
	checkGap(t, "after SetRetention(none)", gap, nil)
	checkIDs(t, "after SetRetention(none)", msgs, nil)
	msgs, gap = since(t, b, last, last)
	checkGap(t, "after SetRetention(none), from the latest", gap, nil)
	checkIDs(t, "after SetRetention(none), from the latest", msgs, nil)

	b.SetRetention(hub.Retention{Count: 100})
	more := publishN(t, b, 2, 2)
	rec.wait(len(ids) + 2)
	msgs, _ = since(t, b, hub.Earliest, more[1])
	if len(msgs) < 2 || !slices.Equal(idsOf(msgs[len(msgs)-2:]), more) {
		t.Fatalf("after SetRetention(100) and 2 publishes: retained %s, want them to end with %v", abbreviate(idsOf(msgs)), more)
	}
	msgs, gap = since(t, b, last, more[1])
	checkGap(t, "after SetRetention(100), from before the publishes", gap, nil)
	checkIDs(t, "after SetRetention(100), from before the publishes", msgs, more)
}

// testSinceFilters: Since returns only what Match accepts, pages of at
// most Limit of them, and More only when the limit cut the page short.
func testSinceFilters(t *testing.T, newBroker NewBroker) {
	b, rec := start(t, newBroker, hub.Retention{Count: 1000})
	var msgs []hub.Message
	for i := range 60 {
		topic := "other"
		if i%3 == 0 {
			topic = "wanted"
		}
		msgs = append(msgs, hub.Message{Topic: topic, Data: strconv.Itoa(i)})
	}
	ids := publish(t, b, msgs...)
	rec.wait(len(ids))
	last := ids[len(ids)-1]
	var want []string
	for i, id := range ids {
		if i%3 == 0 {
			want = append(want, id)
		}
	}
	wanted := func(topic string) bool { return topic == "wanted" }

	got, gap := sinceMatching(t, b, hub.Earliest, last, wanted)
	checkGap(t, "Since(earliest, wanted)", gap, nil)
	checkIDs(t, "Since(earliest, wanted)", got, want)
	got, gap = sinceMatching(t, b, ids[10], last, wanted)
	checkGap(t, "Since(message 10, wanted)", gap, nil)
	checkIDs(t, "Since(message 10, wanted)", got, want[4:])
	got, gap = sinceMatching(t, b, "foreign", last, wanted)
	checkGap(t, "Since(foreign, wanted)", gap, &hub.Gap{LastID: "foreign", FirstID: ids[0]})
	checkIDs(t, "Since(foreign, wanted)", got, want)
	got, _ = sinceMatching(t, b, hub.Earliest, last, func(string) bool { return false })
	checkIDs(t, "Since(earliest, nothing)", got, nil)

	// A page that ends exactly at the last match says there is no more
	// only if none follows.
	page, err := b.Since(ctx(t), hub.Query{After: hub.Earliest, Upto: last, Match: wanted, Limit: len(want)})
	if err != nil {
		t.Fatal(err)
	}
	checkIDs(t, "Since(earliest, wanted, limit all)", page.Messages, want)
	if page.More {
		t.Fatal("Since with a limit of exactly all matches says More")
	}
	page, err = b.Since(ctx(t), hub.Query{After: hub.Earliest, Upto: last, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if checkIDs(t, "Since(earliest, limit 1)", page.Messages, ids[:1]); !page.More {
		t.Fatal("Since with limit 1 of 60: no More")
	}
}

// testHead: Head names the last message Since(…, "") reads up to, and is
// empty for a broker with no history of its own yet.
func testHead(t *testing.T, newBroker NewBroker) {
	b, rec := start(t, newBroker, hub.Retention{Count: 100})
	head, err := b.Head(ctx(t))
	if err != nil || head != "" {
		t.Fatalf("Head of a new broker: %q, %v; want none", head, err)
	}
	ids := publishN(t, b, 5, 5)
	rec.wait(len(ids))
	msgs, _ := since(t, b, hub.Earliest, "")
	if head, err = b.Head(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if len(msgs) > 0 && msgs[len(msgs)-1].ID != head || len(msgs) == 0 && head != "" {
		t.Fatalf("Head %q, but Since(earliest, \"\") returns %v", head, idsOf(msgs))
	}
}
