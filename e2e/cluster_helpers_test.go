package e2e

// Helpers for the multi-node hub tests: built binaries run as processes
// against a private redis-server. Every name starts with cluster_.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/rtcsuite/rtcsuite/signaling"
)

// cluster_wait bounds every wait: a safety net, not a performance check.
const cluster_wait = 60 * time.Second

func cluster_ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), cluster_wait)
	t.Cleanup(cancel)
	return ctx
}

// cluster_build compiles the named commands (./cmd/signal, ...) into a
// directory that lives as long as t and returns their paths by name.
func cluster_build(t *testing.T, cmds ...string) map[string]string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	dir := t.TempDir()
	out := make(map[string]string)
	for _, c := range cmds {
		bin := filepath.Join(dir, c)
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/"+c)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build ./cmd/%s: %v\n%s", c, err, b)
		}
		out[c] = bin
	}
	return out
}

// cluster_proc is a running command with JSON logs.
type cluster_proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}

	mu    sync.Mutex
	log   strings.Builder
	ready map[string]any
}

// cluster_start runs bin with args plus JSON logging and waits for the
// log record whose msg is readyMsg. It is killed by pid when t ends.
func cluster_start(t *testing.T, name, bin, readyMsg string, args ...string) *cluster_proc {
	t.Helper()
	args = append(append([]string(nil), args...), "--log-format", "json")
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &cluster_proc{name: name, cmd: cmd, done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var rec map[string]any
			json.Unmarshal(sc.Bytes(), &rec) //nolint:errcheck // non-JSON lines are kept as text
			p.mu.Lock()
			if p.log.Len() < 1<<20 {
				p.log.Write(append(sc.Bytes(), '\n'))
			}
			if rec != nil && rec["msg"] == readyMsg && p.ready == nil {
				p.ready = rec
				close(ready)
			}
			p.mu.Unlock()
		}
		_ = cmd.Wait() // the exit status is read by term
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s log:\n%s", name, p.logText())
		}
	})
	select {
	case <-ready:
	case <-p.done:
		t.Fatalf("%s exited before %q:\n%s", name, readyMsg, p.logText())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not log %q within 30s:\n%s", name, readyMsg, p.logText())
	}
	return p
}

func (p *cluster_proc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *cluster_proc) field(k string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, _ := p.ready[k].(string)
	return s
}

// kill sends SIGKILL (by pid) and waits for the exit.
func (p *cluster_proc) kill() {
	p.cmd.Process.Kill() // may have exited already
	<-p.done
}

// term sends SIGTERM and waits for the exit, returning the exit code.
func (p *cluster_proc) term(t *testing.T) int {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM) // an exited process fails the wait below instead
	select {
	case <-p.done:
	case <-time.After(cluster_wait):
		t.Fatalf("%s did not stop on SIGTERM", p.name)
	}
	return p.cmd.ProcessState.ExitCode()
}

// cluster_hub is one signal node.
type cluster_hub struct {
	*cluster_proc
	url   string // ws://127.0.0.1:port/ws
	admin string // http://127.0.0.1:port
}

// cluster_startHub runs a signal node on redisURL under prefix, open
// (no tokens), with quick node liveness so crash tests stay short.
func cluster_startHub(t *testing.T, bin, node, redisURL, prefix string, extra ...string) *cluster_hub {
	t.Helper()
	args := append([]string{
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--allow-open",
		"--redis", redisURL, "--redis-prefix", prefix, "--node-id", node,
		"--node-heartbeat", "200ms", "--node-ttl", "1s", "--drain-timeout", "20s",
	}, extra...)
	p := cluster_start(t, node, bin, "signal serving", args...)
	return &cluster_hub{cluster_proc: p, url: "ws://" + p.field("listen") + "/ws", admin: "http://" + p.field("admin")}
}

// cluster_conns are the client sockets of a test, by client, so a test
// can break one without a close frame (a network failure).
type cluster_conns struct {
	mu    sync.Mutex
	conns map[*signaling.Client]net.Conn
}

// dial connects to hub, remembering the socket.
func (cc *cluster_conns) dial(t *testing.T, h *cluster_hub) *signaling.Client {
	t.Helper()
	var nc net.Conn
	dd := *websocket.DefaultDialer
	dd.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		nc = c
		return c, err
	}
	c, err := signaling.Dial(cluster_ctx(t), h.url, signaling.WithDialer(&dd))
	if err != nil {
		t.Fatalf("dial %s: %v", h.name, err)
	}
	t.Cleanup(func() { c.Close() })
	cc.mu.Lock()
	if cc.conns == nil {
		cc.conns = make(map[*signaling.Client]net.Conn)
	}
	cc.conns[c] = nc
	cc.mu.Unlock()
	return c
}

// drop closes c's socket without a close frame.
func (cc *cluster_conns) drop(c *signaling.Client) {
	cc.mu.Lock()
	nc := cc.conns[c]
	cc.mu.Unlock()
	nc.Close()
	<-c.Done()
}

func (cc *cluster_conns) join(t *testing.T, h *cluster_hub, room string) (*signaling.Client, signaling.ServerMessage) {
	t.Helper()
	c := cc.dial(t, h)
	w, err := c.Join(cluster_ctx(t), room, "")
	if err != nil {
		t.Fatalf("join %s on %s: %v", room, h.name, err)
	}
	return c, w
}

// cluster_next returns the next message other than pongs.
func cluster_next(t *testing.T, c *signaling.Client) signaling.ServerMessage {
	t.Helper()
	m, err := c.Recv(cluster_ctx(t))
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return m
}

func cluster_expect(t *testing.T, c *signaling.Client, typ, id string) signaling.ServerMessage {
	t.Helper()
	m := cluster_next(t, c)
	if m.Type != typ || (id != "" && m.ID != id) {
		t.Fatalf("got %+v, want %s about %q", m, typ, id)
	}
	return m
}

func cluster_signal(t *testing.T, c *signaling.Client, to string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := c.Signal(to, map[string]int{"seq": i}); err != nil {
			t.Fatal(err)
		}
	}
}

// cluster_expectSeq reads n signals from sender numbered from.
func cluster_expectSeq(t *testing.T, c *signaling.Client, sender string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		m := cluster_next(t, c)
		var d struct{ Seq int }
		if m.Type != signaling.TypeSignal || json.Unmarshal(m.Data, &d) != nil || d.Seq != i || m.From != sender {
			t.Fatalf("got %+v, want signal seq %d from %s", m, i, sender)
		}
	}
}

// cluster_metric reads one series from a hub's /metrics ("" if absent).
func cluster_metric(t *testing.T, h *cluster_hub, series string) string {
	t.Helper()
	resp, err := http.Get(h.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return v
		}
	}
	return ""
}

// cluster_until retries check (a probe that returns an error while the
// cluster is not there yet) with a short backoff, as a client would.
func cluster_until(t *testing.T, what string, check func() error) {
	t.Helper()
	ctx := cluster_ctx(t)
	for {
		err := check()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: still %v after %v", what, err, cluster_wait)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var errNotYet = fmt.Errorf("not yet")
