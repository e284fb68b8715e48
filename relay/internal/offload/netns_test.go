//go:build linux

package offload

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/rtcsuite/rtcsuite/internal/checksum"
	"github.com/rtcsuite/rtcsuite/internal/netlab"
	"github.com/rtcsuite/rtcsuite/internal/testenv"
)

// The lab: client ns — veth — relay ns — veth — peer ns. The program sits at
// tcx ingress of both relay-side veth ends; the relay ns has no IP
// forwarding, so a packet reaching the other side got there through
// bpf_redirect_neigh. A small user-space relay in the relay ns stands in for
// turnd's own path and carries whatever the program hands on.
type lab struct {
	t                     *testing.T
	client, relay, peer   string // namespace names
	cliDev, relayCliDev   string // veth ends: client side
	relayPeerDev, peerDev string
}

var (
	labClient4, labListen4 = netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("198.51.100.1")
	labRelay4, labPeer4    = netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("203.0.113.2")
	labClient6, labListen6 = netip.MustParseAddr("2001:db8:c::2"), netip.MustParseAddr("2001:db8:c::1")
	labRelay6, labPeer6    = netip.MustParseAddr("2001:db8:e::1"), netip.MustParseAddr("2001:db8:e::2")
	// A peer inside the relay namespace (not a relay address): packets to
	// it are delivered up the local stack.
	labLocalPeer4, labLocalPeer6 = netip.MustParseAddr("192.0.2.77"), netip.MustParseAddr("2001:db8:77::1")
)

const (
	labListenPort = 3478
	labRelayPort  = 49152
	labChannel    = 0x4001
)

func newLab(t *testing.T) *lab {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ip", "iproute2")
	testenv.NeedCommand(t, "ethtool", "ethtool")
	id := strconv.Itoa(os.Getpid() % 1000000)
	l := &lab{t: t,
		client: "ebpf-" + id + "-cli", relay: "ebpf-" + id + "-rly", peer: "ebpf-" + id + "-peer",
		cliDev: "ebpfc" + id, relayCliDev: "ebpfrc" + id, relayPeerDev: "ebpfrp" + id, peerDev: "ebpfp" + id,
	}
	for _, ns := range []string{l.client, l.relay, l.peer} {
		l.ip("netns", "add", ns)
		ns := ns
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
			}
		})
		l.ip("-n", ns, "link", "set", "lo", "up")
	}
	l.ip("link", "add", l.cliDev, "netns", l.client, "type", "veth", "peer", "name", l.relayCliDev, "netns", l.relay)
	l.ip("link", "add", l.peerDev, "netns", l.peer, "type", "veth", "peer", "name", l.relayPeerDev, "netns", l.relay)
	addrs := []struct {
		ns, dev string
		v4, v6  netip.Addr
	}{
		{l.client, l.cliDev, labClient4, labClient6},
		{l.relay, l.relayCliDev, labListen4, labListen6},
		{l.relay, l.relayPeerDev, labRelay4, labRelay6},
		{l.peer, l.peerDev, labPeer4, labPeer6},
	}
	for _, a := range addrs {
		l.ip("-n", a.ns, "addr", "add", a.v4.String()+"/24", "dev", a.dev)
		l.ip("-n", a.ns, "addr", "add", a.v6.String()+"/64", "dev", a.dev, "nodad")
		l.ip("-n", a.ns, "link", "set", a.dev, "up")
	}
	l.ip("-n", l.relay, "addr", "add", labLocalPeer4.String()+"/32", "dev", "lo")
	l.ip("-n", l.relay, "addr", "add", labLocalPeer6.String()+"/128", "dev", "lo", "nodad")
	if fwd := l.output(l.relay, "cat", "/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(fwd) != "0" {
		t.Fatalf("relay namespace forwards IPv4 (%q): the test would not prove bpf_redirect_neigh", fwd)
	}
	return l
}

func (l *lab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (l *lab) output(ns string, cmd ...string) string {
	l.t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, cmd...)...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("in %s: %s: %v\n%s", ns, strings.Join(cmd, " "), err, out)
	}
	return string(out)
}

// inNS runs f on an OS thread switched into namespace ns; sockets, links
// and route lookups made by f belong to ns.
func inNS(t *testing.T, ns string, f func() error) {
	t.Helper()
	if err := netlab.Do(ns, f); err != nil {
		t.Fatalf("in namespace %s: %v", ns, err)
	}
}

func (l *lab) listenUDP(ns string, addr netip.AddrPort) *net.UDPConn {
	var c *net.UDPConn
	inNS(l.t, ns, func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	l.t.Cleanup(func() { c.Close() })
	return c
}

func (l *lab) ifindex(ns, dev string) int {
	var idx int
	inNS(l.t, ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err == nil {
			idx = ifi.Index
		}
		return err
	})
	return idx
}

// inCsumErrors reads Udp InCsumErrors and Udp6InCsumErrors of a namespace.
func (l *lab) inCsumErrors(ns string) (v4, v6 uint64) {
	l.t.Helper()
	v4, v6, err := netlab.UDPCsumErrors(ns)
	if err != nil {
		l.t.Fatal(err)
	}
	return v4, v6
}

// fallback is the stand-in for turnd's user-space path in the relay ns: it
// relays, for the bindings registered with it, whatever the program hands on.
type fallback struct {
	mu       sync.Mutex
	byChan   map[uint16]netip.AddrPort // channel → peer
	byPeer   map[netip.AddrPort]fbBinding
	toPeer   map[uint16]int // packets relayed, by channel
	toClient map[uint16]int
}

type fbBinding struct {
	client netip.AddrPort
	ch     uint16
}

func (l *lab) startFallback(listen, relay *net.UDPConn) *fallback {
	fb := &fallback{byChan: map[uint16]netip.AddrPort{}, byPeer: map[netip.AddrPort]fbBinding{},
		toPeer: map[uint16]int{}, toClient: map[uint16]int{}}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := listen.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if n < chanLen {
				continue
			}
			ch, dl := binary.BigEndian.Uint16(buf), int(binary.BigEndian.Uint16(buf[2:]))
			fb.mu.Lock()
			peer, ok := fb.byChan[ch]
			fb.mu.Unlock()
			if !ok || dl > n-chanLen {
				continue
			}
			// Count before sending: the receiver may see the datagram (and
			// the test read the count) before WriteTo returns here.
			fb.count(fb.toPeer, ch, 1)
			if _, err := relay.WriteToUDPAddrPort(buf[chanLen:chanLen+dl], peer); err != nil {
				fb.count(fb.toPeer, ch, -1)
			}
		}
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := relay.ReadFromUDPAddrPort(buf[chanLen:])
			if err != nil {
				return
			}
			fb.mu.Lock()
			b, ok := fb.byPeer[from]
			fb.mu.Unlock()
			if !ok {
				continue
			}
			binary.BigEndian.PutUint16(buf, b.ch)
			binary.BigEndian.PutUint16(buf[2:], uint16(n))
			fb.count(fb.toClient, b.ch, 1)
			if _, err := listen.WriteToUDPAddrPort(buf[:chanLen+n], b.client); err != nil {
				fb.count(fb.toClient, b.ch, -1)
			}
		}
	}()
	return fb
}

func (fb *fallback) count(m map[uint16]int, ch uint16, d int) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	m[ch] += d
}

func (fb *fallback) add(b Binding) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	fb.byChan[b.Channel] = b.Peer
	fb.byPeer[b.Peer] = fbBinding{client: b.Client, ch: b.Channel}
}

func (fb *fallback) relayed(ch uint16) (toPeer, toClient int) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return fb.toPeer[ch], fb.toClient[ch]
}

func (l *lab) capture(ns, dev string) *netlab.Capture {
	l.t.Helper()
	c, err := netlab.NewCapture(ns, dev)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { c.Close() })
	return c
}

// verifyCaptured recomputes the UDP checksum of every datagram from src to
// dst that arrived at c since the last call (internal/netlab) and returns
// how many there were.
func verifyCaptured(t *testing.T, c *netlab.Capture, src, dst netip.AddrPort) int {
	t.Helper()
	frames, dropped, err := c.Drain()
	if err != nil {
		t.Fatal(err)
	}
	if dropped != 0 {
		t.Errorf("the capture dropped %d frames", dropped)
	}
	r := netlab.VerifyUDP(frames, func(s, d netip.AddrPort) bool { return s == src && d == dst })
	for _, b := range r.Bad {
		t.Error("captured " + b)
	}
	return r.Checked
}

// TestNetnsForwarding runs real UDP sockets through the attached program in
// both directions and both families, in three placements: client and peer in
// their own namespaces; the peer inside the relay namespace (delivered up
// the local stack); the client inside the relay namespace. It runs once with
// checksum offload off on the senders (receivers verify every checksum) and
// once with default offloads (senders hand CHECKSUM_PARTIAL packets, which
// the program may only rewrite peer→client for local delivery; the rest goes
// to a user-space stand-in relay). Each placement's kernel and user-space
// shares are asserted exactly, and the kernel's counters against the bytes
// sent.
func TestNetnsForwarding(t *testing.T) {
	for _, txOff := range []bool{true, false} {
		name := "default offloads"
		if txOff {
			name = "tx checksum offload off"
		}
		t.Run(name, func(t *testing.T) { runNetns(t, txOff) })
	}
}

// leg is one client/peer placement.
type leg struct {
	name                      string
	clientNS, peerNS          string
	clientAddr, peerAddr      netip.Addr
	kernelToPeer, kernelToCli bool // expected path of each direction
}

func runNetns(t *testing.T, txOff bool) {
	l := newLab(t)
	if txOff {
		l.output(l.client, "ethtool", "-K", l.cliDev, "tx", "off")
		l.output(l.peer, "ethtool", "-K", l.peerDev, "tx", "off")
	}
	e := loadTestEngine(t, Config{
		ListenPorts:  []uint16{labListenPort},
		RelayPortMin: labRelayPort, RelayPortMax: labRelayPort + 10,
		OwnAddrs: []netip.Addr{labListen4, labRelay4, labListen6, labRelay6},
	})
	ifRC, ifRP := l.ifindex(l.relay, l.relayCliDev), l.ifindex(l.relay, l.relayPeerDev)
	// lo too: a client inside the relay namespace reaches the listener there.
	inNS(t, l.relay, func() error { return e.Attach(ifRC, ifRP, loopbackIfindex) })

	capClient := l.capture(l.client, l.cliDev)
	capPeer := l.capture(l.peer, l.peerDev)
	nss := []string{l.client, l.peer, l.relay}
	var csumBefore [3][2]uint64
	for i, ns := range nss {
		csumBefore[i][0], csumBefore[i][1] = l.inCsumErrors(ns)
	}

	const packets = 200
	var fallbacks []*fallback
	for _, fam := range []struct {
		name                                   string
		client, listen, relay, peer, localHost netip.Addr
	}{
		{"IPv4", labClient4, labListen4, labRelay4, labPeer4, labLocalPeer4},
		{"IPv6", labClient6, labListen6, labRelay6, labPeer6, labLocalPeer6},
	} {
		listenAddr := netip.AddrPortFrom(fam.listen, labListenPort)
		relayAddr := netip.AddrPortFrom(fam.relay, labRelayPort)
		fb := l.startFallback(l.listenUDP(l.relay, listenAddr), l.listenUDP(l.relay, relayAddr))
		fallbacks = append(fallbacks, fb)
		legs := []leg{
			// Remote senders hand full checksums only with tx offload off.
			{"remote client, remote peer", l.client, l.peer, fam.client, fam.peer, txOff, txOff},
			// Peer→client starts on lo (always CHECKSUM_PARTIAL) towards a
			// remote client: user space.
			{"remote client, local peer", l.client, l.relay, fam.client, fam.localHost, txOff, false},
			// Client→peer starts on lo: user space; peer→client is
			// delivered locally, partial checksum or not.
			{"local client, remote peer", l.relay, l.peer, fam.localHost, fam.peer, false, true},
		}
		for i, lg := range legs {
			t.Run(fam.name+"/"+lg.name, func(t *testing.T) {
				cli := l.listenUDP(lg.clientNS, netip.AddrPortFrom(lg.clientAddr, 0))
				peer := l.listenUDP(lg.peerNS, netip.AddrPortFrom(lg.peerAddr, 0))
				b := Binding{
					Client: cli.LocalAddr().(*net.UDPAddr).AddrPort(), Listener: listenAddr,
					Relay: relayAddr, Peer: peer.LocalAddr().(*net.UDPAddr).AddrPort(),
					Channel:       labChannel + uint16(i),
					ChannelExpiry: time.Now().Add(10 * time.Minute), PermissionExpiry: time.Now().Add(5 * time.Minute),
				}
				fb.add(b)
				// Routes are looked up in the relay namespace, as turnd would.
				inNS(t, l.relay, func() error { return e.Upsert(b) })
				before, err := e.Counters()
				must(t, err)
				sent := exchange(t, cli, peer, b, packets)
				after, err := e.Counters()
				must(t, err)
				st, err := e.Remove(b.ID())
				must(t, err)
				toPeer, toCli := fb.relayed(b.Channel)
				t.Logf("kernel %d/%d, user space %d/%d (to peer/to client); reasons %s",
					st.ToPeerPackets, st.ToClientPackets, toPeer, toCli, reasonDelta(before, after))
				want := Stats{}
				if lg.kernelToPeer {
					want.ToPeerPackets, want.ToPeerBytes = packets, sent
				}
				if lg.kernelToCli {
					want.ToClientPackets, want.ToClientBytes = packets, sent
				}
				if st != want {
					t.Errorf("kernel counters %+v, want %+v", st, want)
				}
				if toPeer+int(st.ToPeerPackets) != packets || toCli+int(st.ToClientPackets) != packets {
					t.Errorf("user space relayed %d/%d besides the kernel's %d/%d, want %d each way in total",
						toPeer, toCli, st.ToPeerPackets, st.ToClientPackets, packets)
				}
				if lg.peerNS == l.peer {
					if n := verifyCaptured(t, capPeer, relayAddr, b.Peer); n != packets {
						t.Errorf("captured %d datagrams at the peer, want %d", n, packets)
					}
				}
				if lg.clientNS == l.client {
					if n := verifyCaptured(t, capClient, listenAddr, b.Client); n != packets {
						t.Errorf("captured %d datagrams at the client, want %d", n, packets)
					}
				}
			})
		}
	}

	if txOff {
		t.Run("IPv4/switching mid-flow", func(t *testing.T) { l.switchingLeg(t, e, fallbacks[0]) })
	}

	c, err := e.Counters()
	must(t, err)
	if c.Reasons[Error] != 0 {
		t.Errorf("%d helper errors", c.Reasons[Error])
	}
	for i, ns := range nss {
		v4, v6 := l.inCsumErrors(ns)
		if v4 != csumBefore[i][0] || v6 != csumBefore[i][1] {
			t.Errorf("%s: Udp InCsumErrors %d→%d, Udp6InCsumErrors %d→%d", ns, csumBefore[i][0], v4, csumBefore[i][1], v6)
		}
	}

	// Close detaches: nothing of ours stays on the interfaces.
	must(t, e.Close())
	for _, ifi := range []int{ifRC, ifRP, loopbackIfindex} {
		inNS(t, l.relay, func() error {
			res, err := link.QueryPrograms(link.QueryOptions{Target: ifi, Attach: ebpf.AttachTCXIngress})
			if err != nil {
				return err
			}
			if len(res.Programs) != 0 {
				return fmt.Errorf("ifindex %d still has %d tcx ingress programs after Close", ifi, len(res.Programs))
			}
			return nil
		})
	}
}

// exchange sends packets ChannelData messages from cli and, for each one the
// peer receives intact, an echo back that the client must receive as
// ChannelData; lockstep, so no socket buffer can overflow. It returns the
// application bytes sent each way.
func exchange(t *testing.T, cli, peer *net.UDPConn, b Binding, packets int) uint64 {
	t.Helper()
	var sent uint64
	buf := make([]byte, 2048)
	cliAddr, peerAddr := cli.LocalAddr().(*net.UDPAddr).AddrPort(), peer.LocalAddr().(*net.UDPAddr).AddrPort()
	for i := range packets {
		data := payload(5 + i*7%1300)
		binary.BigEndian.PutUint32(data, uint32(i))
		pad := make([]byte, (4-len(data)%4)%4*(i%2)) // every other packet padded, as over TCP
		// About one datagram in 65,536 has a full checksum equal to its
		// pseudo-header sum, which the program takes for an unfinished one
		// and leaves to user space (documented). Keep the test's datagrams
		// clear of that, so every share below is exact.
		for lookalike(cliAddr, b.Listener, channelData(b.Channel, data, pad)) || lookalike(peerAddr, b.Relay, data) {
			data[4]++
		}
		sent += uint64(len(data))
		if _, err := cli.WriteToUDPAddrPort(channelData(b.Channel, data, pad), b.Listener); err != nil {
			t.Fatal(err)
		}
		must(t, peer.SetReadDeadline(time.Now().Add(5*time.Second)))
		n, from, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("packet %d to the peer: %v", i, err)
		}
		if from != b.Relay || !bytes.Equal(buf[:n], data) {
			t.Fatalf("packet %d at the peer from %v: % x, want from %v: % x", i, from, buf[:n], b.Relay, data)
		}
		if _, err := peer.WriteToUDPAddrPort(data, b.Relay); err != nil {
			t.Fatal(err)
		}
		must(t, cli.SetReadDeadline(time.Now().Add(5*time.Second)))
		n, from, err = cli.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("packet %d to the client: %v", i, err)
		}
		if want := channelData(b.Channel, data, nil); from != b.Listener || !bytes.Equal(buf[:n], want) {
			t.Fatalf("packet %d at the client from %v: % x, want from %v: % x", i, from, buf[:n], b.Listener, want)
		}
	}
	return sent
}

// switchingLeg moves one flow between the kernel and user space with every
// switch the relay has (kill switch, throttle, deadline, permission) and
// back, in lockstep: each message must arrive once, intact and in order
// whichever path carries it, and the kernel's counters must grow only
// while it is in charge.
func (l *lab) switchingLeg(t *testing.T, e *Engine, fb *fallback) {
	listenAddr := netip.AddrPortFrom(labListen4, labListenPort)
	relayAddr := netip.AddrPortFrom(labRelay4, labRelayPort)
	cli := l.listenUDP(l.client, netip.AddrPortFrom(labClient4, 0))
	peer := l.listenUDP(l.peer, netip.AddrPortFrom(labPeer4, 0))
	b := Binding{Client: cli.LocalAddr().(*net.UDPAddr).AddrPort(), Listener: listenAddr,
		Relay: relayAddr, Peer: peer.LocalAddr().(*net.UDPAddr).AddrPort(), Channel: 0x4100,
		ChannelExpiry: time.Now().Add(time.Hour), PermissionExpiry: time.Now().Add(time.Hour)}
	fb.add(b)
	inNS(t, l.relay, func() error { return e.Upsert(b) })
	id := b.ID()
	later := time.Now().Add(time.Hour)
	steps := []struct {
		name   string
		change func() error
		kernel bool
	}{
		{"installed", func() error { return nil }, true},
		{"kill switch off", func() error { return e.SetEnabled(false) }, false},
		{"kill switch on", func() error { return e.SetEnabled(true) }, true},
		{"throttled", func() error { return e.SetThrottled(id, true) }, false},
		{"unthrottled", func() error { return e.SetThrottled(id, false) }, true},
		{"channel deadline passed", func() error { return e.SetDeadlines(id, time.Now().Add(-time.Second), later) }, false},
		{"channel refreshed", func() error { return e.SetDeadlines(id, later, later) }, true},
		{"permission revoked", func() error { _, err := e.RevokePermission(b.Relay, b.Peer.Addr()); return err }, false},
		{"permission granted", func() error { _, err := e.SetPermission(b.Relay, b.Peer.Addr(), later); return err }, true},
	}
	const packets = 50
	for _, s := range steps {
		must(t, s.change())
		before, err := e.Counters()
		must(t, err)
		uPeer0, uCli0 := fb.relayed(b.Channel)
		sent := exchange(t, cli, peer, b, packets)
		after, err := e.Counters()
		must(t, err)
		uPeer, uCli := fb.relayed(b.Channel)
		k0, k := before.Bindings[id], after.Bindings[id]
		kPeer, kCli := k.ToPeerPackets-k0.ToPeerPackets, k.ToClientPackets-k0.ToClientPackets
		want := uint64(0)
		if s.kernel {
			want = packets
			if k.ToPeerBytes-k0.ToPeerBytes != sent || k.ToClientBytes-k0.ToClientBytes != sent {
				t.Errorf("%s: kernel bytes %d/%d, want %d each way", s.name,
					k.ToPeerBytes-k0.ToPeerBytes, k.ToClientBytes-k0.ToClientBytes, sent)
			}
		}
		if kPeer != want || kCli != want || uint64(uPeer-uPeer0) != packets-want || uint64(uCli-uCli0) != packets-want {
			t.Errorf("%s: kernel carried %d/%d, user space %d/%d; want the kernel %d each way",
				s.name, kPeer, kCli, uPeer-uPeer0, uCli-uCli0, want)
		}
	}
	// Nothing arrived twice.
	for _, c := range []*net.UDPConn{cli, peer} {
		must(t, c.SetReadDeadline(time.Now()))
		if n, from, err := c.ReadFromUDPAddrPort(make([]byte, 2048)); err == nil {
			t.Errorf("an extra datagram of %d bytes from %v", n, from)
		}
	}
	_, err := e.Remove(id)
	must(t, err)
}

// reasonDelta lists the reasons counted between two readings.
func reasonDelta(before, after Counters) string {
	var parts []string
	for r := range numReasons {
		if d := after.Reasons[r] - before.Reasons[r]; d != 0 {
			parts = append(parts, fmt.Sprintf("%v=%d", Reason(r), d))
		}
	}
	return strings.Join(parts, " ")
}

// lookalike reports whether a UDP datagram with this payload would carry a
// full checksum equal to its folded pseudo-header sum.
func lookalike(src, dst netip.AddrPort, pl []byte) bool {
	d := make([]byte, udpLen+len(pl))
	binary.BigEndian.PutUint16(d[0:], src.Port())
	binary.BigEndian.PutUint16(d[2:], dst.Port())
	binary.BigEndian.PutUint16(d[4:], uint16(len(d)))
	copy(d[udpLen:], pl)
	return checksum.UDP(src.Addr(), dst.Addr(), d) == checksum.Fold(checksum.PseudoHeader(src.Addr(), dst.Addr(), len(d)))
}
