//go:build linux

package natlab

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// Side names one of the two LANs of a Pair.
type Side int

// The two sides of a Pair.
const (
	SideA Side = iota
	SideB
)

func (s Side) String() string { return [...]string{"a", "b"}[s] }

// PairPrefix starts the name of every namespace of a Pair:
// "trvlab-<pid>-<hex>-<role>". The "trv" marks the traversal lab, so other
// labs on the same machine (which sweep their own prefixes) never touch it.
const PairPrefix = "trvlab-"

// Addresses of the two-sided lab, all from documentation ranges (RFC 5737,
// RFC 3849). The internet namespace holds the servers on its loopback
// device and one point-to-point link to each router.
var (
	// ServerIP is the primary address of turnd and the hub; ServerIP2 is
	// turnd's RFC 5780 alternate address.
	ServerIP  = netip.MustParseAddr("203.0.113.10")
	ServerIP2 = netip.MustParseAddr("203.0.113.11")
	// ServerIP6 and ServerIP6b are the same for IPv6.
	ServerIP6  = netip.MustParseAddr("2001:db8:f::10")
	ServerIP6b = netip.MustParseAddr("2001:db8:f::11")
)

// PairSide holds one side's addresses.
type PairSide struct {
	NetLink    netip.Addr // the internet namespace's end of the router link
	External   netip.Addr // the router's outside address (the NAT's public IP)
	RouterLAN  netip.Addr
	Host       netip.Addr // the LAN host
	LANPrefix  netip.Prefix
	NetLink6   netip.Addr
	External6  netip.Addr
	RouterLAN6 netip.Addr
	Host6      netip.Addr
	LANPrefix6 netip.Prefix
}

// PairSides are the addresses of side A and side B. The LANs are halves of
// TEST-NET-1 so that a host candidate of one side never names an address
// of the other.
var PairSides = [2]PairSide{
	{
		NetLink: netip.MustParseAddr("198.51.100.1"), External: netip.MustParseAddr("198.51.100.2"),
		RouterLAN: netip.MustParseAddr("192.0.2.1"), Host: netip.MustParseAddr("192.0.2.10"),
		LANPrefix: netip.MustParsePrefix("192.0.2.0/25"),
		NetLink6:  netip.MustParseAddr("2001:db8:a0::1"), External6: netip.MustParseAddr("2001:db8:a0::2"),
		RouterLAN6: netip.MustParseAddr("2001:db8:a1::1"), Host6: netip.MustParseAddr("2001:db8:a1::10"),
		LANPrefix6: netip.MustParsePrefix("2001:db8:a1::/64"),
	},
	{
		NetLink: netip.MustParseAddr("198.51.100.5"), External: netip.MustParseAddr("198.51.100.6"),
		RouterLAN: netip.MustParseAddr("192.0.2.129"), Host: netip.MustParseAddr("192.0.2.138"),
		LANPrefix: netip.MustParsePrefix("192.0.2.128/25"),
		NetLink6:  netip.MustParseAddr("2001:db8:b0::1"), External6: netip.MustParseAddr("2001:db8:b0::2"),
		RouterLAN6: netip.MustParseAddr("2001:db8:b1::1"), Host6: netip.MustParseAddr("2001:db8:b1::10"),
		LANPrefix6: netip.MustParsePrefix("2001:db8:b1::/64"),
	},
}

// Pair is the two-sided lab: an internet namespace with the servers, and
// per side a router namespace (the side's Case for IPv4; for IPv6 a
// stateful firewall without NAT, filtering as the Case says) and a LAN
// namespace with one host. Build it with NewPair or BuildPair; Close
// removes everything.
type Pair struct {
	Cases [2]Case
	id    string

	mu     sync.Mutex
	closed bool
	made   []string
	procs  []*Proc
}

// NewPair builds a Pair for cases a and b and removes it when t ends.
func NewPair(t testing.TB, a, b Case) *Pair {
	t.Helper()
	p, err := BuildPair(context.Background(), a, b)
	if p != nil {
		t.Cleanup(func() {
			if err := p.Close(); err != nil {
				t.Errorf("natlab pair cleanup: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("natlab pair %s x %s: %v", a.Name(), b.Name(), err)
	}
	return p
}

// BuildPair makes the two-sided lab. On error the returned Pair (if not
// nil) holds what was made so far, and Close removes it.
func BuildPair(ctx context.Context, a, b Case) (*Pair, error) {
	for _, c := range []Case{a, b} {
		if err := c.Validate(); err != nil {
			return nil, err
		}
		if c.Hairpin || c.LossPercent > 0 {
			return nil, errors.New("natlab: a Pair side has no hairpinning or loss")
		}
	}
	sweep(PairPrefix)
	suffix := make([]byte, 3)
	if _, err := rand.Read(suffix); err != nil {
		return nil, err
	}
	p := &Pair{Cases: [2]Case{a, b}, id: strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(suffix)}
	if err := p.build(ctx); err != nil {
		return p, fmt.Errorf("build pair %s x %s: %w", a.Name(), b.Name(), err)
	}
	return p, nil
}

// NetNS is the internet namespace.
func (p *Pair) NetNS() string { return PairPrefix + p.id + "-net" }

// RouterNS is side s's router namespace.
func (p *Pair) RouterNS(s Side) string { return PairPrefix + p.id + "-r" + s.String() }

// LANNS is side s's LAN host namespace.
func (p *Pair) LANNS(s Side) string { return PairPrefix + p.id + "-l" + s.String() }

func (p *Pair) build(ctx context.Context) error {
	for _, ns := range []string{p.NetNS(), p.RouterNS(SideA), p.LANNS(SideA), p.RouterNS(SideB), p.LANNS(SideB)} {
		if _, err := runCmd(ctx, nil, "ip", "netns", "add", ns); err != nil {
			return err
		}
		p.mu.Lock()
		p.made = append(p.made, ns)
		p.mu.Unlock()
		// No duplicate address detection, link-local addresses included:
		// until it ends (about a second) neighbour discovery stalls and
		// the first IPv6 packets of a test are lost.
		for _, kv := range []string{"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"} {
			if _, err := runCmd(ctx, nil, "ip", "netns", "exec", ns, "sysctl", "-q", "-w", kv); err != nil {
				return err
			}
		}
	}
	net := p.NetNS()
	cmds := [][]string{
		{"-n", net, "link", "set", "dev", "lo", "up"},
		{"-n", net, "addr", "add", ServerIP.String() + "/32", "dev", "lo"},
		{"-n", net, "addr", "add", ServerIP2.String() + "/32", "dev", "lo"},
		{"-n", net, "-6", "addr", "add", ServerIP6.String() + "/128", "dev", "lo"},
		{"-n", net, "-6", "addr", "add", ServerIP6b.String() + "/128", "dev", "lo"},
	}
	var links []struct{ ns, dev string }
	for s := SideA; s <= SideB; s++ {
		a := PairSides[s]
		rtr, lan := p.RouterNS(s), p.LANNS(s)
		netIf := "to" + s.String()
		cmds = append(cmds,
			[]string{"-n", rtr, "link", "set", "dev", "lo", "up"},
			[]string{"-n", lan, "link", "set", "dev", "lo", "up"},
			[]string{"-n", net, "link", "add", "name", netIf, "type", "veth", "peer", "name", wanIf, "netns", rtr},
			[]string{"-n", rtr, "link", "add", "name", lanIf, "type", "veth", "peer", "name", hostIf, "netns", lan},
			[]string{"-n", net, "addr", "add", a.NetLink.String() + "/30", "dev", netIf},
			[]string{"-n", net, "-6", "addr", "add", a.NetLink6.String() + "/64", "dev", netIf, "nodad"},
			[]string{"-n", net, "link", "set", "dev", netIf, "up"},
			[]string{"-n", rtr, "addr", "add", a.External.String() + "/30", "dev", wanIf},
			[]string{"-n", rtr, "-6", "addr", "add", a.External6.String() + "/64", "dev", wanIf, "nodad"},
			[]string{"-n", rtr, "link", "set", "dev", wanIf, "up"},
			[]string{"-n", rtr, "route", "add", "default", "via", a.NetLink.String()},
			[]string{"-n", rtr, "-6", "route", "add", "default", "via", a.NetLink6.String()},
			[]string{"-n", rtr, "addr", "add", a.RouterLAN.String() + "/25", "dev", lanIf},
			[]string{"-n", rtr, "-6", "addr", "add", a.RouterLAN6.String() + "/64", "dev", lanIf, "nodad"},
			[]string{"-n", rtr, "link", "set", "dev", lanIf, "up"},
			[]string{"-n", lan, "addr", "add", a.Host.String() + "/25", "dev", hostIf},
			[]string{"-n", lan, "-6", "addr", "add", a.Host6.String() + "/64", "dev", hostIf, "nodad"},
			[]string{"-n", lan, "link", "set", "dev", hostIf, "up"},
			[]string{"-n", lan, "route", "add", "default", "via", a.RouterLAN.String()},
			[]string{"-n", lan, "-6", "route", "add", "default", "via", a.RouterLAN6.String()},
			// IPv6 is routed without NAT, as at home: the LAN prefix is
			// reachable from the internet, the router's firewall filters.
			[]string{"-n", net, "-6", "route", "add", a.LANPrefix6.String(), "via", a.External6.String()},
		)
		if p.Cases[s].NoNAT {
			cmds = append(cmds, []string{"-n", net, "route", "add", a.LANPrefix.String(), "via", a.External.String()})
		}
		links = append(links, struct{ ns, dev string }{net, netIf}, struct{ ns, dev string }{rtr, wanIf},
			struct{ ns, dev string }{rtr, lanIf}, struct{ ns, dev string }{lan, hostIf})
	}
	for _, args := range cmds {
		if _, err := runCmd(ctx, nil, "ip", args...); err != nil {
			return err
		}
	}
	// The internet namespace routes between the two sides.
	for _, kv := range []string{"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"} {
		if _, err := runCmd(ctx, nil, "ip", "netns", "exec", p.NetNS(), "sysctl", "-q", "-w", kv); err != nil {
			return err
		}
	}
	for s := SideA; s <= SideB; s++ {
		for _, kv := range []string{"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
			"net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"} {
			if _, err := runCmd(ctx, nil, "ip", "netns", "exec", p.RouterNS(s), "sysctl", "-q", "-w", kv); err != nil {
				return err
			}
		}
		if _, err := runCmd(ctx, nil, "ip", "netns", "exec", p.LANNS(s), "sysctl", "-q", "-w",
			fmt.Sprintf("net.ipv4.ip_local_port_range=%d %d", lanPortMin, lanPortMax)); err != nil {
			return err
		}
		rules := ruleset(p.Cases[s], PairSides[s].External, "trv") + firewall6(p.Cases[s])
		if _, err := runCmd(ctx, strings.NewReader(rules), "ip", "netns", "exec", p.RouterNS(s), "nft", "-f", "-"); err != nil {
			return fmt.Errorf("side %s: load nft ruleset: %w", s, err)
		}
	}
	for _, l := range links {
		if err := waitLinkUp(ctx, l.ns, l.dev); err != nil {
			return err
		}
	}
	return nil
}

// firewall6 is the IPv6 table of a side's router: no NAT, and a stateful
// firewall whose filtering is the case's. Outbound UDP records its source
// (EIF: any remote may answer) or its source and remote address (ADF);
// APDF is plain conntrack (only the exact remote address and port).
func firewall6(c Case) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("table ip6 trv6 {")
	w("\tset eif { type ipv6_addr . inet_service; flags dynamic, timeout; timeout %s; }", mapTimeout)
	w("\tset adf { type ipv6_addr . inet_service . ipv6_addr; flags dynamic, timeout; timeout %s; }", mapTimeout)
	w("\tchain forward {")
	w("\t\ttype filter hook forward priority filter; policy accept;")
	if c.UDPBlocked {
		w("\t\tmeta l4proto udp drop")
	}
	w("\t\tiifname %q meta l4proto udp update @eif { ip6 saddr . udp sport } update @adf { ip6 saddr . udp sport . ip6 daddr }", lanIf)
	w("\t\tiifname %q ct state established,related accept", wanIf)
	switch c.Filtering {
	case EndpointIndependent:
		w("\t\tiifname %q meta l4proto udp ip6 daddr . udp dport @eif accept", wanIf)
	case AddressDependent:
		w("\t\tiifname %q meta l4proto udp ip6 daddr . udp dport . ip6 saddr @adf accept", wanIf)
	}
	w("\t\tiifname %q meta l4proto udp drop", wanIf)
	w("\t}")
	w("}")
	return b.String()
}

// ResetNAT forgets every mapping and firewall state on both routers.
func (p *Pair) ResetNAT(ctx context.Context) error {
	for s := SideA; s <= SideB; s++ {
		ns := p.RouterNS(s)
		if _, err := runCmd(ctx, nil, "ip", "netns", "exec", ns, "nft",
			"flush map ip trv byport; flush map ip trv byaddr; flush set ip6 trv6 eif; flush set ip6 trv6 adf"); err != nil {
			return err
		}
		if _, err := runCmd(ctx, nil, "ip", "netns", "exec", ns, "conntrack", "-F"); err != nil {
			return err
		}
	}
	return nil
}

// Start runs name with args in namespace ns (one of the Pair's) in the
// background; Close stops it by its pid.
func (p *Pair) Start(ns, name string, args ...string) (*Proc, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("natlab: pair closed")
	}
	proc, err := startIn(ns, name, args...)
	if err != nil {
		return nil, err
	}
	p.procs = append(p.procs, proc)
	return proc, nil
}

// Exec runs name with args in namespace ns and returns its combined output.
func (p *Pair) Exec(ctx context.Context, ns, name string, args ...string) ([]byte, error) {
	return runCmd(ctx, nil, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Close stops the Pair's processes and deletes its namespaces; idempotent.
func (p *Pair) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	procs, made := p.procs, p.made
	p.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop(5 * time.Second)
	}
	var errs []error
	for i := len(made) - 1; i >= 0; i-- {
		if err := deleteNS(made[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// PairCases are the seven cases of the traversal matrix (issue 12): no
// NAT, full cone, restricted cone, port-restricted cone, address-dependent
// NAT, symmetric NAT, and a firewall that drops all UDP. Their names are
// the keys of natclass.PeerClasses.
func PairCases() []Case {
	return []Case{
		{NoNAT: true, Filtering: EndpointIndependent},
		{Mapping: EndpointIndependent, Filtering: EndpointIndependent, PortPreserve: true},
		{Mapping: EndpointIndependent, Filtering: AddressDependent, PortPreserve: true},
		{Mapping: EndpointIndependent, Filtering: AddressPortDependent, PortPreserve: true},
		{Mapping: AddressDependent, Filtering: AddressDependent},
		{Mapping: AddressPortDependent, Filtering: AddressPortDependent},
		{Mapping: EndpointIndependent, Filtering: AddressPortDependent, PortPreserve: true, UDPBlocked: true},
	}
}

// Key is the case's key among natclass.PeerClasses ("nonat", "eim-apdf",
// "blocked", ...), for the seven PairCases.
func (c Case) Key() string {
	switch {
	case c.UDPBlocked:
		return "blocked"
	case c.NoNAT:
		return "nonat"
	}
	return c.Mapping.Short("m") + "-" + c.Filtering.Short("f")
}

// WaitReady waits until a STUN server answers at stunAddr and a TCP
// listener accepts at tcpAddr, both asked from the internet namespace
// (every 100 ms, at most 10 s, or until proc exits).
func (p *Pair) WaitReady(ctx context.Context, stunAddr, tcpAddr netip.AddrPort, procs ...*Proc) error {
	deadline := time.Now().Add(10 * time.Second)
	for attempt := 0; ; attempt++ {
		for _, proc := range procs {
			select {
			case <-proc.Done():
				return fmt.Errorf("%s exited before it was ready: %v\n%s", proc.Name, proc.Err(), proc.Output())
			default:
			}
		}
		err := inNamespace(p.NetNS(), func() error { return probeOnce(stunAddr, tcpAddr) })
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("servers not ready after 10s: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func probeOnce(stunAddr, tcpAddr netip.AddrPort) error {
	if tcpAddr.IsValid() {
		c, err := net.DialTimeout("tcp", tcpAddr.String(), 100*time.Millisecond)
		if err != nil {
			return err
		}
		c.Close()
	}
	if !stunAddr.IsValid() {
		return nil
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(stunAddr))
	if err != nil {
		return err
	}
	defer c.Close()
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	if _, err := c.Write(req.Raw); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	buf := make([]byte, 1500)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		m := stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if m.Decode() == nil && m.TransactionID == req.TransactionID {
			return nil
		}
	}
}

// StartLines is Start, with every line the process writes to stdout also
// sent on the returned channel (closed when stdout ends); stderr goes to
// the Proc's output only.
func (p *Pair) StartLines(ns, name string, args ...string) (*Proc, <-chan string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, nil, errors.New("natlab: pair closed")
	}
	buf := &syncBuffer{}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.Stderr = buf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start %s in %s: %w", name, ns, err)
	}
	lines := make(chan string, 16)
	proc := &Proc{Cmd: cmd, Name: name, out: buf, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			_, _ = buf.Write(append(sc.Bytes(), '\n'))
			select {
			case lines <- sc.Text():
			default: // nobody reads more than the first lines
			}
		}
		close(lines)
		proc.err = cmd.Wait()
		close(proc.done)
	}()
	p.procs = append(p.procs, proc)
	return proc, lines, nil
}
