package e2e

// Helpers for the turnd interop tests. Every name starts with turnd_ so
// helpers of other e2e tests cannot collide with them.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// turnd_build compiles ./cmd/turnd into a directory that lives as long as
// t (call it on the parent of parallel subtests) and returns the binary.
func turnd_build(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the e2e directory")
	}
	root := filepath.Dir(filepath.Dir(file))
	bin := filepath.Join(t.TempDir(), "turnd")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/turnd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/turnd: %v\n%s", err, out)
	}
	return bin
}

// turnd_logBuffer collects a child's output for failure reports.
type turnd_logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *turnd_logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *turnd_logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// turnd_proc is a running turnd binary.
type turnd_proc struct {
	UDP, TCP string // bound STUN/TURN addresses (host:port)
	Admin    string // admin HTTP address
	log      *turnd_logBuffer
	cmd      *exec.Cmd
}

// turnd_start runs the turnd binary with args plus JSON logging, waits
// until it serves (its "admin listening" log line) and learns the bound
// addresses from its "turnd serving" line. The process is killed by pid
// when t ends.
func turnd_start(t *testing.T, bin string, args ...string) *turnd_proc {
	t.Helper()
	args = append(append([]string(nil), args...), "--log-format", "json")
	return turnd_run(t, exec.Command(bin, args...))
}

// turnd_run starts cmd, a turnd command line with JSON logging (possibly
// wrapped, as by `ip netns exec`, which keeps the pid), as turnd_start does.
func turnd_run(t *testing.T, cmd *exec.Cmd) *turnd_proc {
	t.Helper()
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no TURND_* from the caller
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start turnd: %v", err)
	}
	p := &turnd_proc{log: &turnd_logBuffer{}, cmd: cmd}
	exited := make(chan struct{})
	ready := make(chan struct{})
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		signalled := false
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = p.log.Write(append(line, '\n'))
			var rec struct {
				Msg       string `json:"msg"`
				Listeners string `json:"listeners"`
				Addr      string `json:"addr"`
			}
			if json.Unmarshal(line, &rec) != nil || signalled {
				continue
			}
			switch rec.Msg {
			case "turnd serving":
				for _, l := range strings.Fields(rec.Listeners) {
					network, addr, _ := strings.Cut(l, "://")
					switch {
					case network == "udp" && p.UDP == "":
						p.UDP = addr
					case network == "tcp" && p.TCP == "":
						p.TCP = addr
					}
				}
			case "admin listening":
				p.Admin = rec.Addr
				signalled = true
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill() // by pid; it may have exited already
		<-exited
		if t.Failed() {
			t.Logf("turnd log:\n%s", p.log.String())
		}
	})
	timer := time.NewTimer(20 * time.Second)
	defer timer.Stop()
	select {
	case <-ready:
	case <-exited:
		t.Fatalf("turnd exited before serving:\n%s", p.log.String())
	case <-timer.C:
		t.Fatalf("turnd did not report serving within 20s:\n%s", p.log.String())
	}
	if p.UDP == "" || p.TCP == "" || p.Admin == "" {
		t.Fatalf("turnd serving line lacks addresses (udp %q tcp %q admin %q):\n%s", p.UDP, p.TCP, p.Admin, p.log.String())
	}
	return p
}

// turnd_metrics fetches the admin /metrics page and returns every sample
// by its full name with labels, e.g.
// `turnd_relayed_packets_total{direction="client_to_peer"}`.
func turnd_metrics(t *testing.T, admin string) map[string]float64 {
	t.Helper()
	return turnd_metricsVia(t, http.DefaultClient, admin)
}

// turnd_metricsVia is turnd_metrics through client (e.g. one that dials
// inside a network namespace).
func turnd_metricsVia(t *testing.T, client *http.Client, admin string) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out
}

// turnd_peer is a running turnutils_peer (coturn's UDP echo peer).
type turnd_peer struct {
	IP   string
	Port int
}

// turnd_startPeer starts turnutils_peer on 127.0.0.1. The peer cannot be
// told to pick its own port, so a free port is found by binding and
// closing; the peer is then proved up by an echo, and another port is tried
// if it lost the race.
func turnd_startPeer(t *testing.T, bin string) turnd_peer {
	t.Helper()
	for attempt := 1; attempt <= 3; attempt++ {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := c.LocalAddr().(*net.UDPAddr).Port
		c.Close()

		cmd := exec.Command(bin, "-L", "127.0.0.1", "-p", strconv.Itoa(port))
		out := &turnd_logBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatalf("start turnutils_peer: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		kill := func() {
			cmd.Process.Kill() // by pid
			<-exited
		}
		if turnd_echoes(fmt.Sprintf("127.0.0.1:%d", port), exited) {
			t.Cleanup(kill)
			return turnd_peer{IP: "127.0.0.1", Port: port}
		}
		kill()
		t.Logf("turnutils_peer on port %d did not answer (attempt %d):\n%s", port, attempt, out.String())
	}
	t.Fatal("turnutils_peer never came up")
	return turnd_peer{}
}

// turnd_echoes reports whether a UDP echo server answers at addr within
// about 5 s, giving up early once exited is closed.
func turnd_echoes(addr string, exited <-chan struct{}) bool {
	c, err := net.Dial("udp4", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	buf := make([]byte, 64)
	for i := 0; i < 50; i++ {
		if _, err := c.Write([]byte("turnd-e2e-probe")); err == nil {
			c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, err := c.Read(buf)
			if err == nil && string(buf[:n]) == "turnd-e2e-probe" {
				return true
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // the read already waited
			}
		}
		// Refused (ICMP port unreachable): the peer has not bound yet. It
		// gives no other sign of readiness, so poll, bounded.
		select {
		case <-exited:
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false
}
