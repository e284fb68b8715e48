//go:build linux

package relay

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"golang.org/x/sys/unix"

	"github.com/rtcsuite/rtcsuite/internal/testenv"
)

// inNetns runs the calling test again inside a fresh network namespace
// named harden-<pid> (deleted afterwards) and reports whether the caller
// is the copy inside, which should go on with the test body.
func inNetns(t *testing.T) bool {
	t.Helper()
	const envVar = "RELAY_HARDEN_NETNS"
	if os.Getenv(envVar) == t.Name() {
		return true
	}
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ip", "iproute2")
	name := fmt.Sprintf("harden-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		testenv.SkipOrFail(t, fmt.Sprintf("cannot create network namespace: %v: %s", err, out))
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	cmd := exec.Command("ip", "netns", "exec", name, os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envVar+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("inside namespace %s: %v\n%s", name, err, out)
	}
	t.Logf("inside namespace %s:\n%s", name, out)
	return false
}

// setupHardenLink gives the namespace 203.0.113.1/24 on a veth whose other
// end answers nothing, so ARP for any other address there never resolves;
// unresolved-neighbour queues hold everything, so a socket's send buffer is
// what fills (the attacks' effect, made deterministic).
func setupHardenLink(t *testing.T) {
	t.Helper()
	ipCmd(t, "link", "set", "lo", "up")
	ipCmd(t, "link", "add", "harden0", "type", "veth", "peer", "name", "harden1")
	ipCmd(t, "link", "set", "harden0", "up")
	ipCmd(t, "link", "set", "harden1", "up")
	ipCmd(t, "addr", "add", "203.0.113.1/24", "dev", "harden0")
	if err := os.WriteFile("/proc/sys/net/ipv4/neigh/harden0/unres_qlen_bytes", []byte("16777216"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// TestOwnAddressesNetns, in a namespace of its own with 203.0.113.1/24 on a
// veth whose other end answers nothing:
//   - every port of turnd's own address is refused, and so is the subnet's
//     broadcast address, while other hosts of an allowed subnet are not;
//   - an address added after start is refused once the kernel reports it;
//   - a TCP Connect to the port number of a live UDP relay is refused;
//   - relaying to an address whose ARP never resolves fills the relay
//     socket's send buffer, and the listener keeps answering (full-buffer
//     datagrams are dropped and counted instead of blocking the read loop).
func TestOwnAddressesNetns(t *testing.T) {
	if !inNetns(t) {
		return
	}
	setupHardenLink(t)

	refreshed := make(chan struct{}, 64)
	srv := newTestServer(t, func(c *Config) {
		c.Listeners = []Listener{{Network: "udp", Addr: "203.0.113.1:0"}, {Network: "tcp", Addr: "203.0.113.1:0"}}
		c.UDPSockets = 1
		c.Peers = PeerPolicy{Allowed: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}}
		c.onSelfRefresh = func() {
			select {
			case refreshed <- struct{}{}:
			default:
			}
		}
	})
	check := func(addr string, proto uint8) string {
		return srv.policy.Load().checkAddrPort(mustAddrPort(addr), proto)
	}
	for _, tc := range []struct{ addr, want string }{
		{"203.0.113.1:9", denySelf},
		{"203.0.113.1:8080", denySelf},
		{"203.0.113.255:9", denyBroadcast},
		{"203.0.113.50:9", ""},
	} {
		for _, proto := range []uint8{protoUDP, protoTCP} {
			if got := check(tc.addr, proto); got != tc.want {
				t.Errorf("%s (proto %d): %q, want %q", tc.addr, proto, got, tc.want)
			}
		}
	}

	// An address added while running becomes our own.
	if got := check("203.0.113.7:9", protoUDP); got != "" {
		t.Fatalf("203.0.113.7 before it is ours: %q", got)
	}
	ipCmd(t, "addr", "add", "203.0.113.7/24", "dev", "harden0")
	guard := time.After(20 * time.Second)
	for check("203.0.113.7:9", protoUDP) != denySelf {
		select {
		case <-refreshed:
		case <-guard:
			t.Fatal("address added after start not recognised as our own")
		}
	}

	// A live UDP relay port does not open the TCP port of the same number.
	cl := pionClient(t, srv, "udp", "alice", "wonderland")
	relayConn, err := cl.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relayConn.Close()
	relayPort := relayConn.LocalAddr().(*net.UDPAddr).Port
	if got := check(fmt.Sprintf("203.0.113.1:%d", relayPort), protoUDP); got != "" {
		t.Fatalf("live UDP relay address refused over UDP: %q", got)
	}
	tc := newRawStreamClient(t, srv, "alice", "wonderland")
	if code := errorCode(t, tc.do(stun.MethodAllocate, tcpTransport)); code != 0 {
		t.Fatal(code)
	}
	if code := errorCode(t, tc.do(stun.MethodConnect, peerAt(fmt.Sprintf("203.0.113.1:%d", relayPort)))); code != stun.CodeForbidden {
		t.Fatalf("TCP Connect to a UDP relay port: %d, want 403", code)
	}

	// Relay to a neighbour that never answers ARP.
	unresolved := &net.UDPAddr{IP: net.IPv4(203, 0, 113, 99), Port: 9}
	payload := make([]byte, 1000)
	for range 3000 {
		if _, err := relayConn.WriteTo(payload, unresolved); err != nil {
			t.Fatal(err)
		}
	}
	r := newRawClient(t, srv, "alice", "wonderland")
	guard = time.After(30 * time.Second)
	for metricValue(t, srv, `turnd_dropped_packets_total{reason="send_buffer_full"}`) == 0 {
		// Each Binding answer proves the listener is not stuck in a send.
		if code := errorCode(t, r.do(stun.MethodBinding)); code != 0 {
			t.Fatalf("binding: %d", code)
		}
		select {
		case <-guard:
			t.Fatal("no datagram dropped for a full send buffer")
		default:
		}
	}
	if code := errorCode(t, r.do(stun.MethodBinding)); code != 0 {
		t.Fatalf("binding after the flood: %d", code)
	}
}

// TestSpoofedSourcesNetns: Binding requests whose (spoofed) sources sit on
// the server's own subnet and never answer ARP fill the listener socket's
// send buffer with answers; the listener drops and counts what does not fit
// instead of blocking its read loop, and answers a real client again once
// the kernel gives up on those addresses. (Answers to everyone are lost
// meanwhile: the send buffer is the socket's, a limit of UDP sockets.)
func TestSpoofedSourcesNetns(t *testing.T) {
	if !inNetns(t) {
		return
	}
	setupHardenLink(t)
	srv := newTestServer(t, func(c *Config) {
		c.Listeners = []Listener{{Network: "udp", Addr: "203.0.113.1:0"}}
		c.UDPSockets = 1
	})
	if code := errorCode(t, newRawClient(t, srv, "alice", "wonderland").do(stun.MethodBinding)); code != 0 {
		t.Fatalf("binding before the flood: %d", code)
	}
	// A raw socket writes the spoofed IPv4+UDP headers itself: the requests
	// arrive locally, the answers go out to the silent subnet.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	dst := srv.Addr("udp").(*net.UDPAddr)
	bind := stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw
	for i := 100; i < 200; i++ {
		for j := range 100 { // within one source's burst of unauthenticated requests
			pkt := spoofedUDP(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), uint16(40000+j), dst, bind)
			if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: [4]byte{203, 0, 113, 1}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The socket's send buffer is full of answers the kernel holds for
	// addresses that never resolve: further answers are dropped and counted
	// (the read loop goes on reading) until the kernel gives up on them,
	// and then a real client is answered again.
	r := newRawClient(t, srv, "alice", "wonderland")
	guard := time.After(60 * time.Second)
	for {
		resp, err := r.roundTrip(stun.MustBuild(stun.TransactionID, stun.BindingRequest))
		if err == nil && errorCode(t, resp) == 0 {
			break
		}
		select {
		case <-guard:
			t.Fatal("the listener never answered again after the flood")
		default:
		}
	}
	if got := metricValue(t, srv, `turnd_dropped_packets_total{reason="send_buffer_full"}`); got == 0 {
		t.Fatal("no answer dropped for a full send buffer: the listener must have blocked instead")
	}
}

// spoofedUDP builds an IPv4 UDP datagram from src:sport to dst carrying
// payload (the kernel fills the IP checksum; a zero UDP checksum is legal).
func spoofedUDP(src netip.Addr, sport uint16, dst *net.UDPAddr, payload []byte) []byte {
	b := make([]byte, 28+len(payload))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	b[8] = 64 // TTL
	b[9] = unix.IPPROTO_UDP
	s4 := src.As4()
	copy(b[12:16], s4[:])
	copy(b[16:20], dst.IP.To4())
	binary.BigEndian.PutUint16(b[20:], sport)
	binary.BigEndian.PutUint16(b[22:], uint16(dst.Port))
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	copy(b[28:], payload)
	return b
}
