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
	"syscall"
	"testing"
	"time"
)

// Child is a Caddy built by BuildCaddy running as a child process, with
// its admin endpoint (for /pubsub/stats and /metrics) on a free port.
type Child struct {
	Base  string // http://127.0.0.1:PORT of the site
	Admin string // http://127.0.0.1:PORT of the admin endpoint
	out   LockedBuffer
	cmd   *exec.Cmd
	done  chan struct{}
}

// StartChild runs bin on site ({PORT}: a free port), with globals added to
// GlobalOptions as StartWith does, and stops it when the test ends.
func StartChild(t testing.TB, bin, globals, site string) *Child {
	t.Helper()
	return StartChildEnv(t, bin, nil, globals, site)
}

// StartChildEnv is StartChild with env ("NAME=value", over this process's
// environment; "NAME=" clears one) for the child, such as a GODEBUG
// setting that net/http reads once at start.
func StartChildEnv(t testing.TB, bin string, env []string, globals, site string) *Child {
	t.Helper()
	port, admin := FreePort(t), FreePort(t)
	dir := t.TempDir()
	opts := strings.Replace(GlobalOptions, "admin off", fmt.Sprintf("admin 127.0.0.1:%d", admin), 1)
	if globals != "" {
		opts = strings.TrimSuffix(opts, "}\n") + globals + "\n}\n"
	}
	config := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(config, []byte(opts+strings.ReplaceAll(site, "{PORT}", fmt.Sprint(port))), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &Child{
		Base:  fmt.Sprintf("http://127.0.0.1:%d", port),
		Admin: fmt.Sprintf("http://127.0.0.1:%d", admin),
		done:  make(chan struct{}),
	}
	c.cmd = exec.Command(bin, "run", "--config", config, "--adapter", "caddyfile")
	c.cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir, "HOME="+dir)
	// The last of a name wins.
	c.cmd.Env = append(c.cmd.Env, env...)
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
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

// Pid is the child's process ID, for reading its /proc entries.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// Output is what the child wrote to stdout and stderr so far.
func (c *Child) Output() string { return c.out.String() }

// Stop asks the child to exit as Ctrl-C does and waits for it; it does
// nothing once the child has exited.
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

// Kill ends the child with SIGKILL, leaving it no chance to clean up, and
// waits for it.
func (c *Child) Kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// Pause stops the child (SIGSTOP) as a long GC pause or a frozen VM
// would: its sockets stay open, nothing runs. Resume lets it go on.
func (c *Child) Pause() { _ = c.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused child (SIGCONT).
func (c *Child) Resume() { _ = c.cmd.Process.Signal(syscall.SIGCONT) }

// LockedBuffer collects a child process's output, which exec's copier
// goroutines write while the test reads it.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
