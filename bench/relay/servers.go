//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pion/stun/v4"
)

// Credentials every server under test accepts.
const (
	benchRealm = "bench"
	benchUser  = "bench"
	benchPass  = "bench-pass"
)

// serverKind knows how to start one relay implementation.
type serverKind struct {
	name string
	// args returns the command line serving STUN/TURN on 127.0.0.1:port,
	// relaying to loopback peers, with the bench credentials.
	cmd func(port int) *exec.Cmd
}

func turndKind(bin string, extra, env []string) serverKind {
	return serverKind{name: "turnd", cmd: func(port int) *exec.Cmd {
		args := []string{
			"--listening-ip", "127.0.0.1", "--listening-port", strconv.Itoa(port),
			"--realm", benchRealm, "--user", benchUser + ":" + benchPass,
			"--allow-loopback-peers",
			// The bench opens hundreds of allocations (and, with uclient
			// -t, TCP connections) from one source IP within a second; the
			// per-IP limiters would (rightly) refuse.
			"--unauth-rate", "-1", "--auth-fail-rate", "-1", "--max-stream-conns-per-ip", "-1",
			"--admin-listen", "", "--log-level", "warn", "--drain-timeout", "1s",
			// This bench measures the user-space data path (issue 9 step
			// A); as root, turnd's default would move UDP channels into
			// the kernel. -turnd-args "--offload auto" measures that.
			"--offload", "off",
		}
		cmd := exec.Command(bin, append(args, extra...)...)
		cmd.Env = append(os.Environ(), env...)
		return cmd
	}}
}

func coturnKind(bin string, extra []string) serverKind {
	return serverKind{name: "coturn", cmd: func(port int) *exec.Cmd {
		args := []string{
			"-n", // no config file
			"--listening-ip=127.0.0.1", "--listening-port=" + strconv.Itoa(port),
			"--relay-ip=127.0.0.1", "--realm=" + benchRealm,
			"--lt-cred-mech", "--user=" + benchUser + ":" + benchPass,
			"--allow-loopback-peers",
			"--no-cli", "--no-tls", "--no-dtls", "--no-stdout-log", "--log-file=/dev/null",
			"--pidfile=" + filepath.Join(os.TempDir(), fmt.Sprintf("relaybench-coturn-%d.pid", port)),
		}
		return exec.Command(bin, append(args, extra...)...)
	}}
}

// server is one running relay process.
type server struct {
	kind string
	cmd  *exec.Cmd
	pid  int
	addr *net.UDPAddr
	out  *bytes.Buffer

	exited chan struct{}
}

// startServer starts k on a free loopback port and waits until it answers
// a STUN Binding request.
func startServer(k serverKind) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	return launchServer(k, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port},
		func(s *server) error { return s.waitReady(10 * time.Second) })
}

// launchServer starts k serving STUN/TURN on addr and waits until ready
// (which probes it) says it serves.
func launchServer(k serverKind, addr *net.UDPAddr, ready func(*server) error) (*server, error) {
	cmd := k.cmd(addr.Port)
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = &lockedWriter{w: out}, &lockedWriter{w: out}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", k.name, err)
	}
	track(cmd.Process)
	s := &server{kind: k.name, cmd: cmd, pid: cmd.Process.Pid, out: out, exited: make(chan struct{}), addr: addr}
	go func() { _ = cmd.Wait(); untrack(cmd.Process); close(s.exited) }()
	if err := ready(s); err != nil {
		s.stop()
		return nil, fmt.Errorf("%s: %w\n%s", k.name, err, out.String())
	}
	return s, nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w.Len() > 1<<20 {
		return len(p), nil // keep the start of the log only
	}
	return l.w.Write(p)
}

// waitReady sends Binding requests until one is answered.
func (s *server) waitReady(limit time.Duration) error {
	c, err := net.DialUDP("udp4", nil, s.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	deadline := time.Now().Add(limit)
	buf := make([]byte, 1500)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return errors.New("exited during start")
		default:
		}
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
		if _, err := c.Write(req.Raw); err == nil {
			_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if n, err := c.Read(buf); err == nil && stun.IsMessage(buf[:n]) {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("no STUN answer")
}

// stop terminates the server by pid: SIGTERM, then SIGKILL after 3 s.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(3 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// cpu returns the process's user+system CPU time from /proc/PID/stat
// (clock ticks of 10 ms; every thread, living or exited).
func (s *server) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: split after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed utime/stime")
	}
	const clkTck = 100 // USER_HZ, fixed by the Linux ABI
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

// schedCPU sums the nanosecond run time of the process's live threads from
// /proc/PID/task/*/schedstat: finer than utime+stime, used as a cross-check.
func (s *server) schedCPU() time.Duration { return schedCPUOf(s.pid) }

// schedCPUOf sums the run time of process pid's live threads.
func schedCPUOf(pid int) time.Duration {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			v, _ := strconv.ParseInt(f[0], 10, 64)
			sum += v
		}
	}
	return time.Duration(sum)
}

// rss returns the resident set size in bytes (VmRSS).
func (s *server) rss() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// threads returns the process's thread count.
func (s *server) threads() int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", s.pid))
	return len(tasks)
}

// freePort finds a port free for both UDP and TCP on 127.0.0.1 (racy, but
// this is a bench on a quiet loopback: a clash fails loudly at start).
func freePort() (int, error) {
	for i := 0; i < 20; i++ {
		u, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		t, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		u.Close()
		if err == nil {
			t.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free port")
}

// startPeer starts coturn's turnutils_peer UDP echo on a free port and
// proves it answers.
func startPeer(bin string) (*exec.Cmd, *net.UDPAddr, error) {
	for i := 0; i < 5; i++ {
		port, err := freePort()
		if err != nil {
			return nil, nil, err
		}
		cmd := exec.Command(bin, "-L", "127.0.0.1", "-p", strconv.Itoa(port))
		if err := cmd.Start(); err != nil {
			return nil, nil, err
		}
		track(cmd.Process)
		addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
		if echoes(addr) {
			return cmd, addr, nil
		}
		cmd.Process.Kill()
		_ = cmd.Wait()
		untrack(cmd.Process)
	}
	return nil, nil, errors.New("turnutils_peer did not come up")
}

func echoes(addr *net.UDPAddr) bool {
	c, err := net.DialUDP("udp4", nil, addr)
	if err != nil {
		return false
	}
	defer c.Close()
	buf := make([]byte, 64)
	for i := 0; i < 30; i++ {
		if _, err := c.Write([]byte("probe")); err == nil {
			_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if n, err := c.Read(buf); err == nil && string(buf[:n]) == "probe" {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// live holds every child process, so a signal to the harness can end them
// by pid instead of leaving them behind.
var live = struct {
	sync.Mutex
	procs map[*os.Process]bool
}{procs: map[*os.Process]bool{}}

func track(p *os.Process) {
	live.Lock()
	live.procs[p] = true
	live.Unlock()
}

func untrack(p *os.Process) {
	live.Lock()
	delete(live.procs, p)
	live.Unlock()
}

// killTracked kills every tracked child by pid.
func killTracked() {
	live.Lock()
	defer live.Unlock()
	for p := range live.procs {
		p.Kill()
	}
}
