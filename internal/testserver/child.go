package testserver

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Child is a Caddy running as a child process (BuildCaddy), for tests
// that need several instances at once, or one to kill.
type Child struct {
	Base string // http://127.0.0.1:PORT

	mu   sync.Mutex // guards out, which the process writes
	out  bytes.Buffer
	cmd  *exec.Cmd
	done chan struct{}
}

// Write implements io.Writer for the child's output.
func (c *Child) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

// Output returns what the child printed so far.
func (c *Child) Output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// StartChild runs the built Caddy on site ({PORT}: a free port) with the
// global options of Start, waits until it listens, and stops it when the
// test ends.
func StartChild(t testing.TB, site string) *Child {
	t.Helper()
	bin := BuildCaddy(t)
	port := FreePort(t)
	dir := t.TempDir()
	config := filepath.Join(dir, "Caddyfile")
	body := GlobalOptions + strings.ReplaceAll(site, "{PORT}", fmt.Sprint(port))
	if err := os.WriteFile(config, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &Child{Base: fmt.Sprintf("http://127.0.0.1:%d", port), done: make(chan struct{})}
	c.cmd = exec.Command(bin, "run", "--config", config, "--adapter", "caddyfile")
	c.cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir, "HOME="+dir)
	c.cmd.Stdout, c.cmd.Stderr = c, c
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() { c.Stop(t) })
	Eventually(t, "child Caddy listening", func() bool {
		select {
		case <-c.done:
			t.Fatalf("child Caddy exited:\n%s", c.Output())
		default:
		}
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	return c
}

// Kill ends the child at once, as a crash would: it says goodbye to no
// one.
func (c *Child) Kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

// Stop asks the child to exit as Ctrl-C does and waits for it.
func (c *Child) Stop(t testing.TB) {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.done:
	case <-time.After(Wait):
		_ = c.cmd.Process.Kill()
		<-c.done
		t.Errorf("child Caddy did not exit on interrupt within %s", Wait)
	}
}
