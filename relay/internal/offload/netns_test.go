package offload

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/rtcsuite/rtcsuite/internal/testenv"
	"golang.org/x/sys/unix"
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
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
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
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		ferr := f()
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	if err := <-errc; err != nil {
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

// inCsumErrors reads Udp InCsumErrors (and Udp6 for IPv6) of a namespace.
func (l *lab) inCsumErrors(ns string) (v4, v6 uint64) {
	snmp := l.output(ns, "cat", "/proc/net/snmp")
	var names []string
	sc := bufio.NewScanner(strings.NewReader(snmp))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "InCsumErrors" {
				v4, _ = strconv.ParseUint(f[i], 10, 64)
			}
		}
	}
	for _, line := range strings.Split(l.output(ns, "cat", "/proc/net/snmp6"), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "Udp6InCsumErrors" {
			v6, _ = strconv.ParseUint(f[1], 10, 64)
		}
	}
	return v4, v6
}

// fallback is the stand-in for turnd's user-space path in the relay ns: it
// relays what the program hands on, for one binding.
type fallback struct {
	toPeer, toClient atomic.Uint64
}

func (l *lab) startFallback(listen, relay *net.UDPConn, client, peer netip.AddrPort) *fallback {
	fb := &fallback{}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := listen.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if from != client || n < chanLen || binary.BigEndian.Uint16(buf) != labChannel {
				continue
			}
			dl := int(binary.BigEndian.Uint16(buf[2:]))
			if dl > n-chanLen {
				continue
			}
			if _, err := relay.WriteToUDPAddrPort(buf[chanLen:chanLen+dl], peer); err == nil {
				fb.toPeer.Add(1)
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
			if from != peer {
				continue
			}
			binary.BigEndian.PutUint16(buf, labChannel)
			binary.BigEndian.PutUint16(buf[2:], uint16(n))
			if _, err := listen.WriteToUDPAddrPort(buf[:chanLen+n], client); err == nil {
				fb.toClient.Add(1)
			}
		}
	}()
	return fb
}

// capture is an AF_PACKET socket on one interface that keeps every frame
// arriving there, with the kernel's "checksum not ready" mark.
type capture struct {
	fd int
}

type captured struct {
	frame    []byte
	notReady bool // TP_STATUS_CSUMNOTREADY: a CHECKSUM_PARTIAL skb
}

func (l *lab) capture(ns, dev string) *capture {
	c := &capture{}
	inNS(l.t, ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		c.fd = fd
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Index})
	})
	l.t.Cleanup(func() { unix.Close(c.fd) })
	return c
}

// drain returns the frames that arrived (not those sent) so far.
func (c *capture) drain(t *testing.T) []captured {
	t.Helper()
	var out []captured
	buf := make([]byte, 4096)
	oob := make([]byte, 256)
	for {
		n, oobn, _, from, err := unix.Recvmsg(c.fd, buf, oob, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			return out
		}
		if err != nil {
			t.Fatalf("capture: %v", err)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		p := captured{frame: append([]byte{}, buf[:n]...)}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			t.Fatalf("capture: %v", err)
		}
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA && len(m.Data) >= 4 {
				p.notReady = binary.NativeEndian.Uint32(m.Data)&unix.TP_STATUS_CSUMNOTREADY != 0
			}
		}
		out = append(out, p)
	}
}

// verifyCaptured recomputes the UDP checksum of every captured datagram
// from src to dst and returns how many there were. A datagram the kernel
// marks "checksum not ready" must carry the pseudo-header sum (what the
// stack would complete); any other must carry the full checksum.
func verifyCaptured(t *testing.T, frames []captured, src, dst netip.AddrPort) int {
	t.Helper()
	n := 0
	for _, c := range frames {
		s, d, udp, ok := parseFrame(c.frame)
		if !ok || s != src.Addr() || d != dst.Addr() ||
			binary.BigEndian.Uint16(udp[0:]) != src.Port() || binary.BigEndian.Uint16(udp[2:]) != dst.Port() {
			continue
		}
		n++
		got := binary.BigEndian.Uint16(udp[6:])
		want := udpChecksum(s, d, udp)
		if c.notReady {
			want = fold(pseudoSum(s, d, len(udp)))
		}
		if got != want {
			t.Errorf("captured %v→%v (%d bytes, not ready %v): UDP checksum %#04x, recomputed %#04x",
				src, dst, len(udp), c.notReady, got, want)
		}
	}
	return n
}

// TestNetnsForwarding runs real UDP sockets through the attached program in
// both directions and both families: once with checksum offload off on the
// senders (receivers verify every checksum; the program forwards every
// packet), once with default offloads (senders hand CHECKSUM_PARTIAL
// packets, which the program must leave to user space for a remote
// destination).
func TestNetnsForwarding(t *testing.T) {
	for _, txOff := range []bool{true, false} {
		name := "default offloads"
		if txOff {
			name = "tx checksum offload off"
		}
		t.Run(name, func(t *testing.T) { runNetns(t, txOff) })
	}
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
	inNS(t, l.relay, func() error { return e.Attach(ifRC, ifRP) })

	capClient := l.capture(l.client, l.cliDev)
	capPeer := l.capture(l.peer, l.peerDev)
	csumBefore := [2][2]uint64{}
	csumBefore[0][0], csumBefore[0][1] = l.inCsumErrors(l.client)
	csumBefore[1][0], csumBefore[1][1] = l.inCsumErrors(l.peer)

	const packets = 200
	var sentBytes uint64
	for _, fam := range []struct {
		name                        string
		client, listen, relay, peer netip.Addr
	}{
		{"IPv4", labClient4, labListen4, labRelay4, labPeer4},
		{"IPv6", labClient6, labListen6, labRelay6, labPeer6},
	} {
		cli := l.listenUDP(l.client, netip.AddrPortFrom(fam.client, 0))
		peer := l.listenUDP(l.peer, netip.AddrPortFrom(fam.peer, 0))
		listenAddr := netip.AddrPortFrom(fam.listen, labListenPort)
		relayAddr := netip.AddrPortFrom(fam.relay, labRelayPort)
		fbListen := l.listenUDP(l.relay, listenAddr)
		fbRelay := l.listenUDP(l.relay, relayAddr)
		cliAddr := cli.LocalAddr().(*net.UDPAddr).AddrPort()
		peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()
		fb := l.startFallback(fbListen, fbRelay, cliAddr, peerAddr)

		b := Binding{Client: cliAddr, Listener: listenAddr, Relay: relayAddr, Peer: peerAddr,
			Channel: labChannel, ChannelExpiry: time.Now().Add(10 * time.Minute),
			PermissionExpiry: time.Now().Add(5 * time.Minute)}
		// Routes are looked up in the relay namespace, as turnd would.
		inNS(t, l.relay, func() error { return e.Upsert(b) })
		before, err := e.Counters()
		must(t, err)

		buf := make([]byte, 2048)
		for i := range packets {
			data := payload(4 + i*7%1300)
			binary.BigEndian.PutUint32(data, uint32(i))
			pad := make([]byte, (4-len(data)%4)%4*(i%2)) // every other packet padded as over TCP
			sentBytes += uint64(len(data))
			if _, err := cli.WriteToUDPAddrPort(channelData(labChannel, data, pad), listenAddr); err != nil {
				t.Fatal(err)
			}
			must(t, peer.SetReadDeadline(time.Now().Add(5*time.Second)))
			n, from, err := peer.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("%s packet %d to the peer: %v", fam.name, i, err)
			}
			if from != relayAddr || !bytes.Equal(buf[:n], data) {
				t.Fatalf("%s packet %d at the peer from %v: % x, want from %v: % x", fam.name, i, from, buf[:n], relayAddr, data)
			}
			if _, err := peer.WriteToUDPAddrPort(data, relayAddr); err != nil {
				t.Fatal(err)
			}
			must(t, cli.SetReadDeadline(time.Now().Add(5*time.Second)))
			n, from, err = cli.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("%s packet %d to the client: %v", fam.name, i, err)
			}
			if want := channelData(labChannel, data, nil); from != listenAddr || !bytes.Equal(buf[:n], want) {
				t.Fatalf("%s packet %d at the client from %v: % x, want from %v: % x", fam.name, i, from, buf[:n], listenAddr, want)
			}
		}

		after, err := e.Counters()
		must(t, err)
		st := after.Bindings[b.ID()]
		fwdPeer := after.Reasons[ForwardedToPeer] - before.Reasons[ForwardedToPeer]
		fwdCli := after.Reasons[ForwardedToClient] - before.Reasons[ForwardedToClient]
		partial := after.Reasons[ChecksumPartial] - before.Reasons[ChecksumPartial]
		t.Logf("%s: kernel forwarded %d/%d, user space %d/%d, partial-checksum passes %d",
			fam.name, fwdPeer, fwdCli, fb.toPeer.Load(), fb.toClient.Load(), partial)
		if txOff {
			// Every packet went through the kernel, and the counters say so.
			if st.ToPeerPackets != packets || st.ToClientPackets != packets || st.ToPeerBytes != sentBytes || st.ToClientBytes != sentBytes {
				t.Errorf("%s binding counters %+v, want %d packets and %d bytes each way", fam.name, st, packets, sentBytes)
			}
			if fb.toPeer.Load() != 0 || fb.toClient.Load() != 0 {
				t.Errorf("%s: user space relayed %d/%d packets the kernel should have", fam.name, fb.toPeer.Load(), fb.toClient.Load())
			}
		} else {
			// Senders' packets arrive CHECKSUM_PARTIAL: the program must
			// not rewrite them for a remote destination.
			if partial != 2*packets || fb.toPeer.Load() != packets || fb.toClient.Load() != packets {
				t.Errorf("%s: %d partial-checksum passes and %d/%d relayed in user space, want %d and %d/%d",
					fam.name, partial, fb.toPeer.Load(), fb.toClient.Load(), 2*packets, packets, packets)
			}
		}
		if _, err := e.Remove(b.ID()); err != nil {
			t.Fatal(err)
		}

		nPeer := verifyCaptured(t, capPeer.drain(t), relayAddr, peerAddr)
		nCli := verifyCaptured(t, capClient.drain(t), listenAddr, cliAddr)
		if nPeer != packets || nCli != packets {
			t.Errorf("%s: captured %d datagrams at the peer and %d at the client, want %d each", fam.name, nPeer, nCli, packets)
		}
		sentBytes = 0
	}

	for i, ns := range []string{l.client, l.peer} {
		v4, v6 := l.inCsumErrors(ns)
		if v4 != csumBefore[i][0] || v6 != csumBefore[i][1] {
			t.Errorf("%s: Udp InCsumErrors %d→%d, Udp6InCsumErrors %d→%d", ns, csumBefore[i][0], v4, csumBefore[i][1], v6)
		}
	}

	// Close detaches: nothing of ours stays on the interfaces.
	must(t, e.Close())
	for _, ifi := range []int{ifRC, ifRP} {
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
