//go:build linux

package natlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Role names one of the lab's three namespaces.
type Role string

// The three namespaces of a lab.
const (
	Public Role = "pub" // the internet side: servers on PublicIP1/PublicIP2, a peer on PeerIP
	Router Role = "rtr" // the NAT: ExternalIP outside, RouterLANIP inside
	LAN    Role = "lan" // the host behind the NAT: LANIP
)

// Addresses, all from the documentation ranges of RFC 5737, so nothing in a
// lab can ever reach or shadow a real network.
var (
	PublicIP1   = netip.MustParseAddr("203.0.113.10") // primary server address
	PublicIP2   = netip.MustParseAddr("203.0.113.11") // alternate server address
	PeerIP      = netip.MustParseAddr("203.0.113.20") // a third public host
	ExternalIP  = netip.MustParseAddr("198.51.100.2") // the router's outside address
	RouterLANIP = netip.MustParseAddr("192.0.2.1")    // the router's inside address
	LANIP       = netip.MustParseAddr("192.0.2.10")   // the LAN host
)

// Prefix starts the name of every lab namespace: "rtcnatlab-<pid>-<hex>-<role>".
// Sweep removes the namespaces whose pid no longer runs.
const Prefix = "rtcnatlab-"

// Lab is one topology: public, router and LAN namespaces with the router's
// nftables rules for one Case. Build it with New (tests) or Build (programs);
// Close removes everything it made.
type Lab struct {
	Case Case
	id   string // "<pid>-<hex>"

	mu      sync.Mutex
	closed  bool
	made    []string // namespaces created, in order
	procs   []*Proc
	closers []func() error
}

// New builds the lab for c and removes it when t ends, pass or fail. It
// fails the test when the lab cannot be built. Callers check root and the
// needed commands first (internal/testenv).
func New(t testing.TB, c Case) *Lab {
	t.Helper()
	l, err := Build(context.Background(), c)
	if l != nil {
		t.Cleanup(func() {
			if err := l.Close(); err != nil {
				t.Errorf("natlab cleanup: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("natlab %s: %v", c.Name(), err)
	}
	return l
}

// Build makes the lab for c. On error the returned Lab (if not nil) holds
// what was made so far, and Close removes it. Build first sweeps namespaces
// left by crashed runs.
func Build(ctx context.Context, c Case) (*Lab, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	Sweep()
	suffix := make([]byte, 3)
	if _, err := rand.Read(suffix); err != nil {
		return nil, err
	}
	l := &Lab{Case: c, id: strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(suffix)}
	if err := l.build(ctx); err != nil {
		return l, fmt.Errorf("build lab %s: %w", c.Name(), err)
	}
	return l, nil
}

// NS returns the namespace name of role (for `ip netns exec`).
func (l *Lab) NS(r Role) string { return Prefix + l.id + "-" + string(r) }

func (l *Lab) build(ctx context.Context) error {
	for _, r := range []Role{Public, Router, LAN} {
		if _, err := runCmd(ctx, nil, "ip", "netns", "add", l.NS(r)); err != nil {
			return err
		}
		l.mu.Lock()
		l.made = append(l.made, l.NS(r))
		l.mu.Unlock()
	}
	pub, rtr, lan := l.NS(Public), l.NS(Router), l.NS(LAN)
	ipcmds := [][]string{
		{"-n", pub, "link", "set", "dev", "lo", "up"},
		{"-n", rtr, "link", "set", "dev", "lo", "up"},
		{"-n", lan, "link", "set", "dev", "lo", "up"},
		{"-n", pub, "link", "add", "name", pubIf, "type", "veth", "peer", "name", wanIf, "netns", rtr},
		{"-n", rtr, "link", "add", "name", lanIf, "type", "veth", "peer", "name", hostIf, "netns", lan},
		{"-n", pub, "addr", "add", PublicIP1.String() + "/24", "dev", pubIf},
		{"-n", pub, "addr", "add", PublicIP2.String() + "/24", "dev", pubIf},
		{"-n", pub, "addr", "add", PeerIP.String() + "/24", "dev", pubIf},
		{"-n", pub, "link", "set", "dev", pubIf, "up"},
		{"-n", pub, "route", "add", "198.51.100.0/24", "dev", pubIf},
		{"-n", rtr, "addr", "add", ExternalIP.String() + "/24", "dev", wanIf},
		{"-n", rtr, "link", "set", "dev", wanIf, "up"},
		{"-n", rtr, "route", "add", "203.0.113.0/24", "dev", wanIf},
		{"-n", rtr, "addr", "add", RouterLANIP.String() + "/24", "dev", lanIf},
		{"-n", rtr, "link", "set", "dev", lanIf, "up"},
		{"-n", lan, "addr", "add", LANIP.String() + "/24", "dev", hostIf},
		{"-n", lan, "link", "set", "dev", hostIf, "up"},
		{"-n", lan, "route", "add", "default", "via", RouterLANIP.String()},
	}
	if l.Case.NoNAT {
		ipcmds = append(ipcmds, []string{"-n", pub, "route", "add", "192.0.2.0/24", "via", ExternalIP.String()})
	}
	for _, args := range ipcmds {
		if _, err := runCmd(ctx, nil, "ip", args...); err != nil {
			return err
		}
	}
	sysctls := []struct {
		r  Role
		kv string
	}{
		{Router, "net.ipv4.ip_forward=1"},
		{Router, "net.ipv4.conf.all.rp_filter=0"},
		{Router, "net.ipv4.conf.default.rp_filter=0"},
		{Router, "net.ipv4.conf." + wanIf + ".rp_filter=0"},
		{Router, "net.ipv4.conf." + lanIf + ".rp_filter=0"},
		{LAN, fmt.Sprintf("net.ipv4.ip_local_port_range=%d %d", lanPortMin, lanPortMax)},
	}
	for _, s := range sysctls {
		if _, err := l.Exec(ctx, s.r, "sysctl", "-q", "-w", s.kv); err != nil {
			return err
		}
	}
	if _, err := runCmd(ctx, strings.NewReader(Ruleset(l.Case)), "ip", "netns", "exec", rtr, "nft", "-f", "-"); err != nil {
		return fmt.Errorf("load nft ruleset: %w", err)
	}
	// A veth drops what it is given until the kernel's link watcher has
	// activated it (up to a second after "up"): wait for operstate UP on
	// every end, which the same work item sets.
	for _, end := range []struct {
		ns, dev string
	}{{pub, pubIf}, {rtr, wanIf}, {rtr, lanIf}, {lan, hostIf}} {
		if err := waitLinkUp(ctx, end.ns, end.dev); err != nil {
			return err
		}
	}
	return nil
}

// waitLinkUp polls the operstate of dev in ns until it is UP (bounded: 10 s).
func waitLinkUp(ctx context.Context, ns, dev string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := runCmd(ctx, nil, "ip", "-n", ns, "-o", "link", "show", "dev", dev)
		if err != nil {
			return err
		}
		if strings.Contains(string(out), "state UP") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s in %s not up after 10s: %s", dev, ns, bytes.TrimSpace(out))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ResetNAT forgets every mapping: it empties the router's recorded mapping
// maps and flushes its conntrack table, so the next probe meets the NAT as
// if new (needs the conntrack tool). Processes and sockets stay.
func (l *Lab) ResetNAT(ctx context.Context) error {
	if _, err := l.Exec(ctx, Router, "nft", "flush map ip natlab byport; flush map ip natlab byaddr"); err != nil {
		return err
	}
	if _, err := l.Exec(ctx, Router, "conntrack", "-F"); err != nil {
		return err
	}
	return nil
}

// Exec runs name with args in the namespace of role and returns its
// combined output. The error carries the output when the command fails.
func (l *Lab) Exec(ctx context.Context, r Role, name string, args ...string) ([]byte, error) {
	return runCmd(ctx, nil, "ip", append([]string{"netns", "exec", l.NS(r), name}, args...)...)
}

func runCmd(ctx context.Context, stdin *strings.Reader, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Proc is a background process started in a lab namespace.
type Proc struct {
	Cmd  *exec.Cmd
	Name string
	out  *syncBuffer
	done chan struct{}
	err  error // set before done closes
}

// Output returns what the process wrote to stdout and stderr so far.
func (p *Proc) Output() string { return p.out.String() }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit error; valid after Done is closed.
func (p *Proc) Err() error { <-p.done; return p.err }

// Start runs name with args in the namespace of role in the background. The
// lab stops it (SIGTERM, then SIGKILL after 5 s) by its pid on Close.
func (l *Lab) Start(r Role, name string, args ...string) (*Proc, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.New("natlab: lab closed")
	}
	p, err := startIn(l.NS(r), name, args...)
	if err != nil {
		return nil, err
	}
	l.procs = append(l.procs, p)
	return p, nil
}

// startIn runs name with args in namespace ns in the background.
func startIn(ns, name string, args ...string) (*Proc, error) {
	buf := &syncBuffer{}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.Stdout, cmd.Stderr = buf, buf
	// ip netns exec execs the program, so the pid is the program's, and
	// the death signal survives the exec: if this process dies without
	// cleaning up, the kernel kills the child (Sweep removes the rest).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", name, ns, err)
	}
	p := &Proc{Cmd: cmd, Name: name, out: buf, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// Stop ends p: SIGTERM, then SIGKILL if it has not exited within grace.
func (p *Proc) Stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// Close stops the lab's processes, closes its sockets and deletes its
// namespaces. It is idempotent and reports every failure.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	procs, closers, made := l.procs, l.closers, l.made
	l.mu.Unlock()

	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop(5 * time.Second)
	}
	for i := len(closers) - 1; i >= 0; i-- {
		if err := closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(made) - 1; i >= 0; i-- {
		if err := deleteNS(made[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// onClose registers f to run on Close, before the namespaces go.
func (l *Lab) onClose(f func() error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("natlab: lab closed")
	}
	l.closers = append(l.closers, f)
	return nil
}

// deleteNS kills whatever still runs in ns (processes a lab started, found
// by pid) and deletes it.
func deleteNS(ns string) error {
	if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if _, err := runCmd(context.Background(), nil, "ip", "netns", "delete", ns); err != nil {
		return err
	}
	return nil
}

// Sweep deletes lab namespaces left behind by processes that no longer run
// (a crashed or killed test binary), with whatever runs inside them. It
// returns the names it removed.
func Sweep() []string { return sweep(Prefix) }

// sweep is Sweep for the namespaces named prefix + "<pid>-...".
func sweep(prefix string) []string {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil
	}
	var removed []string
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.HasPrefix(fields[0], prefix) {
			continue
		}
		name := fields[0]
		pidStr, _, ok := strings.Cut(strings.TrimPrefix(name, prefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid <= 0 {
			continue // not ours in the expected shape: leave it alone
		}
		if err := syscall.Kill(pid, 0); pid == os.Getpid() || err == nil || errors.Is(err, syscall.EPERM) {
			continue // its owner still runs
		}
		if deleteNS(name) == nil {
			removed = append(removed, name)
		}
	}
	return removed
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 { // bound what a chatty process can hold
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
