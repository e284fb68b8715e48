package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rtcsuite/rtcsuite/relay"
)

// fakeSyslog records what turnd sends to syslog.
type fakeSyslog struct {
	mu       sync.Mutex
	facility syslogPriority
	lines    []string
	closed   bool
}

func (f *fakeSyslog) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lines = append(f.lines, string(p))
	return len(p), nil
}

func (f *fakeSyslog) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fakeSyslog) text() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.lines, "")
}

func TestRunLogFileSyslogPIDFile(t *testing.T) {
	dir := t.TempDir()
	logPath, pidPath := filepath.Join(dir, "turn.log"), filepath.Join(dir, "turnd.pid")
	fake := &fakeSyslog{}
	old := syslogDial
	syslogDial = func(p syslogPriority) (io.WriteCloser, error) { fake.facility = p; return fake, nil }
	t.Cleanup(func() { syslogDial = old }) // runs after startTurndRun's cleanup has awaited run

	conf := filepath.Join(dir, "turnserver.conf")
	lines := "log-file=" + logPath + "\nsimple-log\nsyslog\nsyslog-facility=local3\nno-stdout-log\npidfile=\"" + pidPath + "\"\n"
	if err := os.WriteFile(conf, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startTurndRun(t, "--config", conf, "--user", "alice:wonderland-2026")

	pid, err := os.ReadFile(pidPath)
	if err != nil || strings.TrimSpace(string(pid)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("pidfile = %q, %v; want %d", pid, err, os.Getpid())
	}
	logged, _ := os.ReadFile(logPath)
	if !bytes.Contains(logged, []byte("turnd serving")) {
		t.Errorf("log file lacks the start line:\n%s", logged)
	}
	if !strings.Contains(fake.text(), "turnd serving") || fake.facility != 19<<3 /* LOG_LOCAL3: RFC 5424 facility 19 */ {
		t.Errorf("syslog (facility %v) lacks the start line: %q", fake.facility, fake.text())
	}
	if s := r.stderr.String(); s != "" {
		t.Errorf("no-stdout-log: stderr got %q", s)
	}

	// logrotate: move the file away, SIGHUP, turnd writes a new one.
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	r.reload <- os.Interrupt
	r.reload <- os.Interrupt
	if _, err := os.Stat(logPath); err != nil {
		t.Errorf("log file not reopened after SIGHUP: %v", err)
	}

	r.cancel()
	code := <-r.done
	r.done <- code
	if _, err := os.Stat(pidPath); !os.IsNotExist(err) {
		t.Errorf("pidfile left behind after exit: %v", err)
	}
	if !fake.closed {
		t.Error("syslog connection not closed")
	}
}

func TestRunAdminPortBusy(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	var stderr bytes.Buffer
	code := run(context.Background(), []string{
		"--listening-ip", "127.0.0.1", "--listening-port", "0", "--udp-sockets", "1",
		"--user", "alice:wonderland-2026", "--admin-listen", busy.Addr().String(),
	}, runEnv{getenv: func(string) string { return "" }, stdout: io.Discard, stderr: &stderr,
		ready: func(*relay.Server, net.Addr) { t.Error("started with a busy admin port") }})
	if code != exitFail {
		t.Errorf("exit %d, want %d", code, exitFail)
	}
	if !strings.Contains(stderr.String(), "--admin-listen") || !strings.Contains(stderr.String(), "address already in use") {
		t.Errorf("error does not name the flag and the cause:\n%s", stderr.String())
	}
}

func TestRunSecrets(t *testing.T) {
	r := startTurndRun(t, "--static-auth-secret", "tiny5")
	if log := r.stderr.String(); !strings.Contains(log, "only 5 bytes") || strings.Contains(log, "tiny5") {
		t.Errorf("short secret: want a warning that does not quote it:\n%s", log)
	}

	for _, args := range [][]string{
		{"--static-auth-secret", "change-me-to-a-long-random-string"},
		{"creds", "--secret", "change-me-to-a-long-random-string", "--user", "u"},
	} {
		var stderr bytes.Buffer
		code := run(context.Background(), args, runEnv{getenv: func(string) string { return "" }, stdout: io.Discard, stderr: &stderr})
		if code != exitConfig || !strings.Contains(stderr.String(), "placeholder") {
			t.Errorf("%q: exit %d, %s; want a placeholder refusal", args, code, stderr.String())
		}
	}
}

func TestRunVersion(t *testing.T) {
	var stdout bytes.Buffer
	code := run(context.Background(), []string{"--version"}, runEnv{getenv: func(string) string { return "" }, stdout: &stdout, stderr: io.Discard})
	if code != exitOK || !strings.HasPrefix(stdout.String(), "turnd ") || !strings.Contains(stdout.String(), "revision") {
		t.Errorf("--version: exit %d, %q", code, stdout.String())
	}
}

func TestRunHelpUsesDoubleDashes(t *testing.T) {
	var stdout bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, runEnv{getenv: func(string) string { return "" }, stdout: &stdout, stderr: io.Discard}); code != exitOK {
		t.Fatalf("--help exit %d", code)
	}
	for _, line := range strings.Split(stdout.String(), "\n") {
		if strings.HasPrefix(line, "  -") && !strings.HasPrefix(line, "  --") && !strings.HasPrefix(line, "  -c ") {
			t.Errorf("single-dash flag in help: %q", line)
		}
	}
	if !strings.Contains(stdout.String(), "--admin-listen string") || !strings.Contains(stdout.String(), `(default "127.0.0.1:9643")`) {
		t.Errorf("help lacks --admin-listen with its default:\n%s", stdout.String())
	}
	_ = time.Second
}
