package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Redis is a redis-server a test started for itself on a free loopback
// port, without persistence (--save ” --appendonly no). It never touches
// a system Redis. Stop and Start restart it on the same port; it is
// stopped by pid when the test ends.
type Redis struct {
	Addr  string // 127.0.0.1:port
	t     testing.TB
	bin   string
	dir   string
	extra []string
	cmd   *exec.Cmd
	done  chan struct{}
}

// StartRedis starts a redis-server with extra arguments (such as
// "--requirepass", "secret"), or skips or fails (see SkipOrFail) when the
// Debian package redis-server is not installed.
func StartRedis(t testing.TB, extra ...string) *Redis {
	t.Helper()
	r := &Redis{t: t, bin: NeedCommand(t, "redis-server", "redis-server"), dir: t.TempDir(), extra: extra}
	var err error
	for range 5 { // a free port may be taken between probing and binding
		r.Addr = freeLoopbackPort(t)
		if err = r.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

// URL returns the redis:// URL of the server.
func (r *Redis) URL() string { return "redis://" + r.Addr }

// Start starts the server again after Stop, on the same port, empty.
func (r *Redis) Start() {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatal(err)
	}
}

func (r *Redis) start() error {
	_, port, _ := net.SplitHostPort(r.Addr)
	args := append([]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", r.dir, "--protected-mode", "yes", "--loglevel", "warning"}, r.extra...)
	// It outlives this call: Stop ends it by pid.
	cmd := exec.CommandContext(context.Background(), r.bin, args...) //nolint:gosec // G204: our own redis-server binary and the test's arguments
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if log.Len() < 8<<10 {
				log.WriteString(sc.Text() + "\n")
			}
		}
		_ = cmd.Wait() // killed by pid: the status says nothing
		close(done)
	}()
	r.cmd, r.done = cmd, done
	deadline := time.Now().Add(20 * time.Second)
	for {
		if ping(r.Addr) {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server on %s exited: %s", r.Addr, log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.Stop()
			return fmt.Errorf("redis-server on %s did not answer PING within 20s", r.Addr)
		}
	}
}

// Stop kills the server (by pid) and waits for it to exit.
func (r *Redis) Stop() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Kill() // by pid; it may have exited
	<-r.done
	r.cmd = nil
}

func ping(addr string) bool {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && (strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH")) // up, maybe with a password
}

func freeLoopbackPort(t testing.TB) string {
	t.Helper()
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}
