package bolt_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	bbolt "go.etcd.io/bbolt"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

func boltSite(path, history string) string {
	return fmt.Sprintf(`
http://127.0.0.1:{PORT} {
	pubsub /events* {
		history %s
		broker bolt %s
	}
}
`, history, path)
}

// Publish, restart Caddy, resume: the history and the IDs survive, so a
// client resumes across the restart with nothing lost or repeated, and new
// IDs carry on after the old ones.
func TestHistorySurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pubsub.db")
	site := boltSite(path, "100 1h")
	s := testserver.Start(t, site)
	ep := s.Base + "/events"
	var ids []string
	for _, d := range []string{"one", "two", "three"} {
		ids = append(ids, testserver.Publish(t, ep, url.Values{"topic": {"t"}, "data": {d}}))
	}

	restart(t, s, site)
	sub := testserver.Subscribe(t, nil, ep+"?topic=t", http.Header{"Last-Event-Id": {ids[0]}})
	expect(t, sub, ids[1:], []string{"two", "three"})
	next := testserver.Publish(t, ep, url.Values{"topic": {"t"}, "data": {"four"}})
	expect(t, sub, []string{next}, []string{"four"})
	if want := strings.TrimSuffix(ids[2], "3") + "4"; next != want {
		t.Fatalf("first ID after restart is %s, want %s (same epoch, next sequence)", next, want)
	}

	all := testserver.Subscribe(t, nil, ep+"?topic=t&last_id=earliest", nil)
	expect(t, all, append(ids, next), []string{"one", "two", "three", "four"})
}

// History bounds hold on disk across restarts: a resume from before what
// the file keeps is a gap, followed by what it kept.
func TestRetentionAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pubsub.db")
	site := boltSite(path, "3")
	s := testserver.Start(t, site)
	ep := s.Base + "/events"
	var ids []string
	for i := range 10 {
		ids = append(ids, testserver.Publish(t, ep, url.Values{"topic": {"t"}, "data": {fmt.Sprint(i)}}))
	}
	restart(t, s, site)

	sub := testserver.Subscribe(t, nil, ep+"?topic=t", http.Header{"Last-Event-Id": {ids[1]}})
	ev := sub.Next()
	var gap struct {
		LastID  string `json:"last_id"`
		FirstID string `json:"first_id"`
	}
	if ev.Event != "gap" || json.Unmarshal([]byte(ev.Data), &gap) != nil || gap.LastID != ids[1] || gap.FirstID != ids[7] {
		t.Fatalf("want a gap from %s to %s, got %+v", ids[1], ids[7], ev)
	}
	expect(t, sub, ids[7:], []string{"7", "8", "9"})
	sub.Close()

	// Shrinking history on reload trims the file too.
	s.Load(boltSite(path, "1"))
	restart(t, s, boltSite(path, "100"))
	all := testserver.Subscribe(t, nil, ep+"?topic=t&last_id=earliest", nil)
	expect(t, all, ids[9:], []string{"9"})
}

// A file another process holds makes Caddy fail to start within seconds,
// saying so, instead of hanging.
func TestLockedFileFailsStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pubsub.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	err = load(t, boltSite(path, "100"))
	if err == nil || !strings.Contains(err.Error(), "locked") || !strings.Contains(err.Error(), path) {
		t.Fatalf("starting on a locked file: %v; want an error saying %s is locked", err, path)
	}
}

// A file that is not a bbolt database makes Caddy fail to start, saying
// which file and why.
func TestDamagedFileFailsStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pubsub.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("garbage ", 4096)), 0o600); err != nil {
		t.Fatal(err)
	}
	err := load(t, boltSite(path, "100"))
	if err == nil || !strings.Contains(err.Error(), "not a valid history file") || !strings.Contains(err.Error(), path) {
		t.Fatalf("starting on a damaged file: %v; want an error naming it", err)
	}
}

// restart stops Caddy and loads site again on the same port, as a process
// restart does: every hub is closed and reopened.
func restart(t *testing.T, s *testserver.Server, site string) {
	t.Helper()
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	s.Load(site)
}

// load loads site on a free port and returns the error, bounded in time.
func load(t *testing.T, site string) error {
	t.Helper()
	cfg, err := testserver.Adapt(strings.ReplaceAll(site, "{PORT}", fmt.Sprint(testserver.FreePort(t))))
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	err = caddy.Load(cfg, true)
	if err == nil {
		_ = caddy.Stop()
	}
	if took := time.Since(begin); took > testserver.Wait {
		t.Fatalf("loading took %s", took)
	}
	return err
}

func expect(t *testing.T, s *testserver.SSEStream, ids, data []string) {
	t.Helper()
	for i, id := range ids {
		if ev := s.Next(); ev.ID != id || ev.Data != data[i] {
			t.Fatalf("event %d: got %+v, want %s %q", i, ev, id, data[i])
		}
	}
}

// Without a path, a hub's file is pubsub/<hub>.db in Caddy's data
// directory, made when the hub starts, and history survives a restart.
func TestDefaultFileInCaddysDataDirectory(t *testing.T) {
	file := filepath.Join(caddy.AppDataDir(), "pubsub", "chat.db")
	if err := os.RemoveAll(filepath.Dir(file)); err != nil {
		t.Fatal(err)
	}
	site := `
http://127.0.0.1:{PORT} {
	pubsub /events* {
		hub chat
		broker bolt
	}
}
`
	cfg, err := testserver.Adapt(strings.ReplaceAll(site, "{PORT}", "9"))
	if err != nil {
		t.Fatal(err)
	}
	if err := testserver.Validate(t, cfg); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Dir(file))
	if !os.IsNotExist(err) {
		t.Fatalf("validating made %s: %v", filepath.Dir(file), err)
	}
	s := testserver.Start(t, site)
	ep := s.Base + "/events"
	id := testserver.Publish(t, ep, url.Values{"topic": {"t"}, "data": {"kept"}})
	if info, err = os.Stat(filepath.Dir(file)); err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o700 {
		t.Fatalf("%s has mode %v, want 0700", filepath.Dir(file), info.Mode().Perm())
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("history file: %v", err)
	}
	restart(t, s, site)
	sub := testserver.Subscribe(t, nil, ep+"?topic=t&last_id=earliest", nil)
	expect(t, sub, []string{id}, []string{"kept"})
}
