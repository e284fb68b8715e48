package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/rtcsuite/rtcsuite/internal/turnrest"
	"github.com/rtcsuite/rtcsuite/relay"
)

// runLogBuffer is an io.Writer safe for the logger and the test to share.
type runLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *runLogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *runLogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runningTurnd is a turnd started by startTurndRun.
type runningTurnd struct {
	srv    *relay.Server
	admin  net.Addr
	stderr *runLogBuffer
	reload chan os.Signal
	cancel context.CancelFunc
	done   chan int // run's exit code
}

// runBaseArgs serve UDP and TCP on loopback ports the kernel picks, with the
// admin listener on a free loopback port too.
var runBaseArgs = []string{
	"--listening-ip", "127.0.0.1", "--listening-port", "0", "--udp-sockets", "1",
	"--admin-listen", "127.0.0.1:0", "--realm", "run.test", "--drain-timeout", "2s",
}

// startTurndRun runs turnd in-process with runBaseArgs plus args and waits for its
// ready hook. The run is cancelled and awaited when t ends.
func startTurndRun(t *testing.T, args ...string) *runningTurnd {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningTurnd{stderr: &runLogBuffer{}, reload: make(chan os.Signal), cancel: cancel, done: make(chan int, 1)}
	ready := make(chan struct{})
	env := runEnv{
		getenv: func(string) string { return "" },
		stdout: io.Discard,
		stderr: r.stderr,
		reload: r.reload,
		ready: func(s *relay.Server, admin net.Addr) {
			r.srv, r.admin = s, admin
			close(ready)
		},
	}
	go func() { r.done <- run(ctx, append(append([]string(nil), runBaseArgs...), args...), env) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("run did not return within 30s of cancel")
		}
		if t.Failed() {
			t.Logf("turnd log:\n%s", r.stderr.String())
		}
	})
	select {
	case <-ready:
	case code := <-r.done:
		t.Fatalf("run exited %d before ready:\n%s", code, r.stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("run not ready within 20s:\n%s", r.stderr.String())
	}
	return r
}

// get fetches an admin path and returns status and body.
func (r *runningTurnd) get(t *testing.T, path string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.admin.String()+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// allocate makes a UDP allocation on r as user/pass and returns the error
// pion's client got. A successful allocation lives until t ends.
func (r *runningTurnd) allocate(t *testing.T, user, pass string) error {
	t.Helper()
	addr := r.srv.Addr("udp").String()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: user, Password: pass, RTO: 100 * time.Millisecond,
	})
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(); conn.Close() })
	relayConn, err := cl.Allocate()
	if err != nil {
		return err
	}
	t.Cleanup(func() { relayConn.Close() })
	return nil
}

func TestRunAdminAndAllocation(t *testing.T) {
	r := startTurndRun(t, "--user", "alice:wonderland")

	for _, tc := range []struct {
		path string
		want string
	}{
		{"/healthz", "ok"},
		{"/readyz", "ready"},
		{"/metrics", "turnd_allocations_active"},
	} {
		code, body := r.get(t, tc.path)
		if code != http.StatusOK || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s = %d %.200q, want 200 containing %q", tc.path, code, body, tc.want)
		}
	}

	if err := r.allocate(t, "alice", "wonderland"); err != nil {
		t.Fatalf("allocate as alice: %v", err)
	}
	if st := r.srv.Stats(); st.ActiveAllocations != 1 || st.TotalAllocations != 1 {
		t.Errorf("stats %+v, want one active allocation", st)
	}
	if _, body := r.get(t, "/metrics"); !strings.Contains(body, "turnd_allocations_active 1") {
		t.Errorf("/metrics does not show the allocation:\n%s", body)
	}
	if strings.Contains(r.stderr.String(), "wonderland") {
		t.Error("the log contains a password")
	}
}

func TestRunReloadUsers(t *testing.T) {
	db := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(db, []byte("# users\ncarol:first-pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startTurndRun(t, "--userdb", db)
	if err := r.allocate(t, "carol", "first-pass"); err != nil {
		t.Fatalf("carol before reload: %v", err)
	}

	if err := os.WriteFile(db, []byte("dave:second-pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// run handles reload signals one at a time on its own goroutine and the
	// channel is unbuffered: once the second send is taken, the first
	// reload has been applied.
	r.reload <- os.Interrupt
	r.reload <- os.Interrupt

	if err := r.allocate(t, "dave", "second-pass"); err != nil {
		t.Errorf("dave after reload: %v", err)
	}
	err := r.allocate(t, "carol", "first-pass")
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("carol after reload: %v, want a 401 error", err)
	}
	if st := r.srv.Stats(); st.ActiveAllocations != 2 {
		t.Errorf("stats %+v: carol's first allocation must survive the reload next to dave's", st)
	}
}

func TestRunDrainsOnCancel(t *testing.T) {
	r := startTurndRun(t, "--static-auth-secret", "drain-secret")
	c := turnrest.Mint([]byte("drain-secret"), "erin", time.Now().Add(time.Hour))
	if err := r.allocate(t, c.Username, c.Password); err != nil {
		t.Fatalf("allocate with REST credential: %v", err)
	}
	r.cancel()
	select {
	case code := <-r.done:
		if code != exitOK {
			t.Errorf("run exited %d after cancel, want %d", code, exitOK)
		}
		r.done <- code // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if st := r.srv.Stats(); !st.Draining {
		t.Errorf("stats %+v after cancel, want draining", st)
	}
	if !strings.Contains(r.stderr.String(), "draining") {
		t.Errorf("no drain in the log:\n%s", r.stderr.String())
	}
}

func TestRunBadFlagsReportEveryProblem(t *testing.T) {
	var stdout, stderr bytes.Buffer
	ready := false
	code := run(context.Background(), []string{
		"--listening-ip", "not-an-ip",
		"--listening-port", "70000",
		"--log-level", "loud",
		"--user", "nocolon",
		"--min-port", "60000", "--max-port", "50000",
		"--denied-peer-ip", "10.0.0.300",
	}, runEnv{
		getenv: func(string) string { return "" }, stdout: &stdout, stderr: &stderr,
		ready: func(*relay.Server, net.Addr) { ready = true },
	})
	if code != exitConfig {
		t.Errorf("exit %d, want %d", code, exitConfig)
	}
	if ready {
		t.Error("a bad configuration started a server")
	}
	for _, want := range []string{
		`listening-ip "not-an-ip"`,
		"listening-port 70000 out of range",
		`log-level "loud"`,
		`user "nocolon:<redacted>"`,
		"relay port range 60000-50000 is invalid",
		`denied-peer-ip: "10.0.0.300"`,
		"no authentication configured",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
}

func TestRunCreds(t *testing.T) {
	secret := "creds-secret"
	before := time.Now()
	var stdout, stderr bytes.Buffer
	env := runEnv{getenv: func(string) string { return "" }, stdout: &stdout, stderr: &stderr}
	code := run(context.Background(), []string{"creds", "--secret", secret, "--user", "frank", "--ttl", "1h",
		"--url", "turn:turn.example.com:3478?transport=udp"}, env)
	if code != exitOK {
		t.Fatalf("creds exit %d: %s", code, stderr.String())
	}
	var ice struct {
		URLs       []string `json:"urls"`
		Username   string   `json:"username"`
		Credential string   `json:"credential"`
	}
	dec := json.NewDecoder(&stdout)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ice); err != nil {
		t.Fatalf("stdout is not RTCIceServer JSON: %v", err)
	}
	if len(ice.URLs) != 1 || ice.URLs[0] != "turn:turn.example.com:3478?transport=udp" {
		t.Errorf("urls = %q", ice.URLs)
	}
	if _, err := turnrest.Check([][]byte{[]byte(secret)}, ice.Username, ice.Credential, time.Now()); err != nil {
		t.Errorf("credential does not verify: %v", err)
	}
	expiry, user, err := turnrest.Parse(ice.Username)
	if err != nil || user != "frank" {
		t.Errorf("username %q: user %q, err %v", ice.Username, user, err)
	}
	if lo, hi := before.Add(time.Hour).Add(-time.Second), time.Now().Add(time.Hour); expiry.Before(lo) || expiry.After(hi) {
		t.Errorf("expiry %v, want about an hour from now", expiry)
	}
	if _, err := turnrest.Check([][]byte{[]byte("other")}, ice.Username, ice.Credential, time.Now()); err == nil {
		t.Error("credential verifies with another secret")
	}

	stdout.Reset()
	stderr.Reset()
	if code := run(context.Background(), []string{"creds", "--user", "frank", "--ttl", "-1s"}, env); code != exitConfig {
		t.Errorf("creds without secret: exit %d, want %d", code, exitConfig)
	}
	for _, want := range []string{"--secret is required", "--ttl must be positive"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q: %s", want, stderr.String())
		}
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout not empty on error: %q", stdout.String())
	}
}
