package e2e

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/turn/v5"

	"github.com/rtcsuite/rtcsuite/internal/testenv"
)

// hygiene_root is the module's root directory.
func hygiene_root(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the e2e directory")
	}
	return filepath.Dir(filepath.Dir(file))
}

// hygiene_buildVCS builds ./cmd/name with VCS stamping on, whatever GOFLAGS
// says (a -buildvcs flag on the command line beats GOFLAGS). The go
// command finds a repository only where .git is a directory; in a linked
// worktree (.git is a file) it stamps nothing, so there the revision is
// passed with -ldflags, as deploy/install.sh and the Containerfiles do.
func hygiene_buildVCS(t *testing.T, dir, name string) string {
	t.Helper()
	bin := filepath.Join(dir, name)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"build", "-buildvcs=true", "-o", bin}
	if fi, err := os.Stat(filepath.Join(hygiene_root(t), ".git")); err == nil && !fi.IsDir() {
		out, err := exec.Command("git", "-C", hygiene_root(t), "rev-parse", "HEAD").Output()
		if err != nil {
			t.Fatalf("git rev-parse: %v", err)
		}
		t.Logf("linked git worktree: stamping the revision with -ldflags")
		args = append(args, "-ldflags", "-X github.com/rtcsuite/rtcsuite/internal/buildinfo.revision="+strings.TrimSpace(string(out)))
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/"+name)...)
	cmd.Dir = hygiene_root(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=true ./cmd/%s: %v\n%s", name, err, out)
	}
	return bin
}

// TestBinaryHygiene builds every binary once (with VCS stamping) and
// checks --version and the second-signal exit on them.
func TestBinaryHygiene(t *testing.T) {
	testenv.NeedCommand(t, "git", "git")
	dir := t.TempDir()
	bins := map[string]string{}
	for _, name := range []string{"turnd", "signal", "natprobe"} {
		bins[name] = hygiene_buildVCS(t, dir, name)
	}
	t.Run("VersionShowsRevision", func(t *testing.T) { hygiene_version(t, bins) })
	t.Run("TurndSecondSignalExitsDuringDrain", func(t *testing.T) { hygiene_turndSecondSignal(t, bins["turnd"]) })
	t.Run("SignalSecondSignalExitsDuringDrain", func(t *testing.T) { hygiene_signalSecondSignal(t, bins["signal"]) })
}

// hygiene_version: every binary's --version names the commit it was built
// from.
func hygiene_version(t *testing.T, bins map[string]string) {
	root := hygiene_root(t)
	out, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		testenv.SkipOrFail(t, "not a git checkout: "+err.Error())
	}
	head := strings.TrimSpace(string(out))
	for _, name := range []string{"turnd", "signal", "natprobe"} {
		bin := bins[name]
		got, err := exec.Command(bin, "--version").Output()
		if err != nil {
			t.Errorf("%s --version: %v", name, err)
			continue
		}
		line := strings.TrimSpace(string(got))
		if !strings.HasPrefix(line, name+" ") || !strings.Contains(line, "(revision "+head) {
			t.Errorf("%s --version = %q, want the name and revision %s", name, line, head)
		}
	}
}

// hygiene_turndSecondSignal: SIGTERM starts a drain that would wait for a
// live allocation for 10 minutes; a second SIGTERM ends the process at
// once with 143.
func hygiene_turndSecondSignal(t *testing.T, bin string) {
	cmd := exec.Command(bin, "--listening-ip", "127.0.0.1", "--listening-port", "0", "--udp-sockets", "1",
		"--admin-listen", "", "--user", "alice:wonderland-2026", "--drain-timeout", "10m", "--log-format", "json")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 256)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() }) // by pid; harmless once it exited

	deadline := time.NewTimer(2 * time.Minute) // a bound, not a measurement
	defer deadline.Stop()
	var log strings.Builder
	await := func(what string) string {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("turnd ended before %q:\n%s", what, log.String())
				}
				log.WriteString(l + "\n")
				if strings.Contains(l, what) {
					return l
				}
			case <-deadline.C:
				t.Fatalf("no %q within the bound:\n%s", what, log.String())
			}
		}
	}
	serving := await(`"msg":"turnd serving"`)
	_, rest, _ := strings.Cut(serving, `"listeners":"udp://`)
	udp, _, _ := strings.Cut(rest, " ")

	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: udp, TURNServerAddr: udp, Conn: conn,
		Username: "alice", Password: "wonderland-2026", RTO: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	relayConn, err := cl.Allocate()
	if err != nil {
		t.Fatalf("allocate on %s: %v\n%s", udp, err, log.String())
	}
	defer relayConn.Close()

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	await("draining")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	err = <-exited
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 143 {
		t.Fatalf("exit %v after the second SIGTERM, want status 143", err)
	}
}

// hygiene_signalSecondSignal: the hub's drain waits for a client that
// never answers the close handshake; a second SIGTERM ends it at once
// with 143.
func hygiene_signalSecondSignal(t *testing.T, bin string) {
	cmd := exec.Command(bin, "--allow-open", "--listen", "127.0.0.1:0", "--admin-listen", "",
		"--drain-timeout", "10m", "--log-format", "json")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 256)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() }) // by pid; harmless once it exited
	deadline := time.NewTimer(2 * time.Minute)   // a bound, not a measurement
	defer deadline.Stop()
	var log strings.Builder
	await := func(what string) string {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("signal ended before %q:\n%s", what, log.String())
				}
				log.WriteString(l + "\n")
				if strings.Contains(l, what) {
					return l
				}
			case <-deadline.C:
				t.Fatalf("no %q within the bound:\n%s", what, log.String())
			}
		}
	}
	serving := await(`"msg":"signal serving"`)
	_, rest, _ := strings.Cut(serving, `"listen":"`)
	addr, _, _ := strings.Cut(rest, `"`)

	// A client that joins and then never reads again: the hub's close
	// frame (1012) goes unanswered.
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws", http.Header{"Origin": {"http://" + addr}})
	if err != nil {
		t.Fatalf("dial %s: %v\n%s", addr, err, log.String())
	}
	defer ws.Close()
	if err := ws.WriteJSON(map[string]any{"type": "join", "room": "drain-test"}); err != nil {
		t.Fatal(err)
	}
	var joined map[string]any
	if err := ws.ReadJSON(&joined); err != nil {
		t.Fatalf("join: %v", err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	await("draining")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	err = <-exited
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 143 {
		t.Fatalf("exit %v after the second SIGTERM, want status 143\n%s", err, log.String())
	}
}
