package relay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"golang.org/x/sys/unix"

	"github.com/rtcsuite/rtcsuite/internal/testenv"
	"github.com/rtcsuite/rtcsuite/internal/turnrest"
	"github.com/rtcsuite/rtcsuite/relay/internal/offload"
)

// The kernel-path lab: the test process runs in a namespace of its own
// (inNetns) holding turnd on 198.51.100.1; a second namespace holds the
// client (198.51.100.2) and the peer (198.51.100.3) behind one veth pair,
// with tx checksum offload off on their side so every datagram arrives
// fully checksummed and the program forwards both directions (docs/
// offload.md, "Checksums and local senders").
var (
	labTurnd  = netip.MustParseAddr("198.51.100.1")
	labClient = netip.MustParseAddr("198.51.100.2")
	labPeer   = netip.MustParseAddr("198.51.100.3")
)

const (
	labChan     = 0x4001
	labPayload  = 200
	labRelayMin = 20000 // below the ephemeral range: a port-0 listener never lands inside
	labRelayMax = 20999
)

// needOffload skips (or, under RTCSUITE_REQUIRE_ALL, fails) when this
// host cannot load and attach the program.
func needOffload(t *testing.T) {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ip", "iproute2")
	testenv.NeedCommand(t, "ethtool", "ethtool")
	e, err := offload.Load(offload.Config{ListenPorts: []uint16{3478}, RelayPortMin: labRelayMin, RelayPortMax: labRelayMax})
	if err != nil {
		testenv.SkipOrFail(t, fmt.Sprintf("the eBPF kernel path cannot load here (needs root and Linux ≥ 6.6 with tcx): %v", err))
	}
	e.Close()
}

// offRig is one allocation with channel labChan to the peer, served by a
// turnd whose kernel path is on.
type offRig struct {
	t      *testing.T
	srv    *Server
	cl     *rawClient
	client *net.UDPConn
	peer   *net.UDPConn
	relay  netip.AddrPort
	turnd  netip.AddrPort // where the client sends
	ns     string         // the client's and peer's namespace
	seq    uint32
}

// newOffRig builds the lab inside the current namespace (call after
// inNetns) and a server with cfg changes from mutate.
func newOffRig(t *testing.T, mutate func(*Config)) *offRig {
	t.Helper()
	w := fmt.Sprintf("offint-%d-w", os.Getpid())
	ipCmd(t, "link", "set", "lo", "up")
	ipCmd(t, "netns", "add", w)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", w).Run() })
	ipCmd(t, "link", "add", "offint0", "type", "veth", "peer", "name", "offint1", "netns", w)
	ipCmd(t, "addr", "add", labTurnd.String()+"/24", "dev", "offint0")
	ipCmd(t, "link", "set", "offint0", "up")
	ipCmd(t, "-n", w, "link", "set", "lo", "up")
	ipCmd(t, "-n", w, "addr", "add", labClient.String()+"/24", "dev", "offint1")
	ipCmd(t, "-n", w, "addr", "add", labPeer.String()+"/24", "dev", "offint1")
	ipCmd(t, "-n", w, "link", "set", "offint1", "up")
	if out, err := exec.Command("ip", "netns", "exec", w, "ethtool", "-K", "offint1", "tx", "off").CombinedOutput(); err != nil {
		t.Fatalf("ethtool -K offint1 tx off: %v: %s", err, out)
	}

	srv := newTestServer(t, func(c *Config) {
		c.Listeners = []Listener{{Network: "udp", Addr: netip.AddrPortFrom(labTurnd, 0).String()}}
		c.UDPSockets = 1
		c.RelayIPv4 = labTurnd
		c.MinPort, c.MaxPort = labRelayMin, labRelayMax
		c.Peers = PeerPolicy{Allowed: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}
		c.Offload = OffloadTC
		c.offloadPoll = time.Hour      // the tests read counters themselves
		c.offloadReconcile = time.Hour // and reconcile themselves
		if mutate != nil {
			mutate(c)
		}
	})
	r := &offRig{t: t, srv: srv, ns: w,
		client: listenUDPIn(t, w, netip.AddrPortFrom(labClient, 0)),
		peer:   listenUDPIn(t, w, netip.AddrPortFrom(labPeer, 0)),
		turnd:  netip.AddrPortFrom(labTurnd, toAddrPort(srv.Addr("udp")).Port()),
	}
	r.cl = &rawClient{t: t, conn: r.client, srv: net.UDPAddrFromAddrPort(r.turnd), user: "alice",
		key: turnrest.LongTermKey("alice", srv.cfg.Realm, "wonderland")}
	resp := r.cl.do(stun.MethodAllocate, udpTransport)
	if code := errorCode(t, resp); code != 0 {
		t.Fatalf("allocate: %d", code)
	}
	r.relay = relayedAddr(t, resp).AddrPort()
	if code := errorCode(t, r.cl.do(stun.MethodChannelBind, channelNumber(labChan),
		peerAddr{net.UDPAddrFromAddrPort(r.peerAP())})); code != 0 {
		t.Fatalf("channel bind: %d", code)
	}
	r.awaitKernel("the channel installed in the kernel", func(ids []offload.BindingID) bool { return slices.Contains(ids, r.id()) })
	return r
}

// listenUDPIn opens a UDP socket inside namespace ns (the socket stays
// there; the calling process does not move).
func listenUDPIn(t *testing.T, ns string, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	type result struct {
		c   *net.UDPConn
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked when setns back fails: the thread dies with the goroutine
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			res <- result{err: err}
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			res <- result{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			res <- result{err: err}
			return
		}
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		res <- result{c, err}
	}()
	r := <-res
	if r.err != nil {
		t.Fatalf("listen %v in %s: %v", addr, ns, r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return r.c
}

func (r *offRig) peerAP() netip.AddrPort { return r.peer.LocalAddr().(*net.UDPAddr).AddrPort() }

func (r *offRig) id() offload.BindingID { return offload.BindingID{Relay: r.relay, Peer: r.peerAP()} }

func (r *offRig) engine() *offload.Engine { return r.srv.offload.engine() }

// poll reads the kernel counters into the server now (as its poller does
// every second).
func (r *offRig) poll() { r.pollAt(time.Now()) }

// pollAt polls with the bandwidth limiters' clock at now.
func (r *offRig) pollAt(now time.Time) {
	o := r.srv.offload
	o.ctl.Lock()
	k := o.k
	o.ctl.Unlock()
	if k != nil {
		k.pollAt(now)
	}
}

// awaitKernel waits until the engine's installed bindings satisfy ok
// (bounded: the observer runs on pion's timers and callbacks).
func (r *offRig) awaitKernel(what string, ok func([]offload.BindingID) bool) {
	r.t.Helper()
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if e := r.engine(); e != nil && ok(e.Bindings()) {
			return
		}
	}
	r.t.Fatalf("kernel path: %s did not happen", what)
}

// observer returns the running kernel observer.
func (r *offRig) observer() *kernelObserver {
	r.t.Helper()
	o := r.srv.offload
	o.ctl.Lock()
	defer o.ctl.Unlock()
	if o.k == nil {
		r.t.Fatal("the kernel path is not running")
	}
	return o.k
}

func (r *offRig) counters() offload.Counters {
	r.t.Helper()
	c, err := r.engine().Counters()
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

func (r *offRig) payload() []byte {
	r.seq++
	p := bytes.Repeat([]byte{0xC3}, labPayload)
	binary.BigEndian.PutUint32(p, r.seq)
	return p
}

// exchange relays n datagrams each way in lockstep and fails on any loss
// or mismatch (veth between two namespaces does not drop).
func (r *offRig) exchange(n int) {
	r.t.Helper()
	for range n {
		p := r.payload()
		if _, err := r.client.WriteToUDPAddrPort(channelData(labChan, p), r.turnd); err != nil {
			r.t.Fatal(err)
		}
		if got, err := recv(r.peer, 5*time.Second); err != nil || !bytes.Equal(got, p) {
			r.t.Fatalf("client→peer datagram %d: got %d bytes, %v", r.seq, len(got), err)
		}
		p = r.payload()
		if _, err := r.peer.WriteToUDPAddrPort(p, r.relay); err != nil {
			r.t.Fatal(err)
		}
		if got, err := recv(r.client, 5*time.Second); err != nil || !bytes.Equal(got, channelData(labChan, p)) {
			r.t.Fatalf("peer→client datagram %d: got % x, %v", r.seq, got[:min(8, len(got))], err)
		}
	}
}

// exchangeInKernel relays n datagrams each way and checks that the
// kernel carried every one of them (its counters grew by exactly n).
func (r *offRig) exchangeInKernel(n int) {
	r.t.Helper()
	before := r.counters().Bindings[r.id()]
	r.exchange(n)
	after := r.counters().Bindings[r.id()]
	want := offload.Stats{ToPeerPackets: uint64(n), ToPeerBytes: uint64(n * labPayload),
		ToClientPackets: uint64(n), ToClientBytes: uint64(n * labPayload)}
	got := offload.Stats{ToPeerPackets: after.ToPeerPackets - before.ToPeerPackets, ToPeerBytes: after.ToPeerBytes - before.ToPeerBytes,
		ToClientPackets: after.ToClientPackets - before.ToClientPackets, ToClientBytes: after.ToClientBytes - before.ToClientBytes}
	if got != want {
		r.t.Fatalf("kernel carried %+v of %d datagrams each way, want all", got, n)
	}
}

// peerSendsPassed sends one peer datagram and waits until the program has
// handed it to user space for reason, checking it forwarded nothing.
func (r *offRig) peerSendsPassed(reason offload.Reason) {
	r.t.Helper()
	before := r.counters()
	if _, err := r.peer.WriteToUDPAddrPort(r.payload(), r.relay); err != nil {
		r.t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		after := r.counters()
		if after.Reasons[offload.ForwardedToClient] != before.Reasons[offload.ForwardedToClient] {
			r.t.Fatalf("the kernel forwarded a peer datagram it must hand to user space (%v expected)", reason)
		}
		if after.Reasons[reason] > before.Reasons[reason] {
			return
		}
		if time.Now().After(end) {
			r.t.Fatalf("the program never counted the peer datagram as %v", reason)
		}
	}
}

// clientGetsNothing checks that no datagram is waiting at the client.
func (r *offRig) clientGetsNothing(what string) {
	r.t.Helper()
	if got, err := recv(r.client, 50*time.Millisecond); !errors.Is(err, errNothing) {
		r.t.Fatalf("%s: the client received % x (%v)", what, got[:min(8, len(got))], err)
	}
}

// TestOffloadForwardsAndAccounts: with --offload=tc the kernel carries an
// established UDP channel both ways (its counters equal what was sent),
// the poller adds exactly that to the binding's totals and the metrics,
// and a wildcard listener's bindings use the address clients send to.
func TestOffloadForwardsAndAccounts(t *testing.T) {
	for _, listen := range []string{"specific", "wildcard"} {
		t.Run(listen, func(t *testing.T) {
			if os.Getenv("RELAY_HARDEN_NETNS") == "" {
				needOffload(t)
			}
			if !inNetns(t) {
				return
			}
			r := newOffRig(t, func(c *Config) {
				if listen == "wildcard" {
					c.Listeners = []Listener{{Network: "udp", Addr: "0.0.0.0:0"}}
				}
			})
			const n = 50
			r.exchangeInKernel(n)
			if v := metricValue(t, r.srv, "turnd_offload_active"); v != 1 {
				t.Errorf("turnd_offload_active = %v, want 1", v)
			}
			r.poll()
			b := r.srv.fast.find(c2pKey{listener: unmapAP(toAddrPort(r.srv.Addr("udp"))), client: r.client.LocalAddr().(*net.UDPAddr).AddrPort(), channel: labChan})
			if b == nil {
				t.Fatal("binding not in the fast-path table")
			}
			if c2p, bc2p, p2c, bp2c := b.counters(); c2p != n || p2c != n || bc2p != n*labPayload || bp2c != n*labPayload {
				t.Errorf("binding totals %d/%d B to the peer, %d/%d B to the client; want %d/%d each way (all from the kernel)",
					c2p, bc2p, p2c, bp2c, n, n*labPayload)
			}
			for _, dir := range []string{dirClientToPeer, dirPeerToClient} {
				if v := metricLabel(t, r.srv, "turnd_offload_packets_total", dir); v != n {
					t.Errorf("turnd_offload_packets_total{%s} = %v, want %d", dir, v, n)
				}
				if v := metricLabel(t, r.srv, "turnd_offload_bytes_total", dir); v != n*labPayload {
					t.Errorf("turnd_offload_bytes_total{%s} = %v, want %d", dir, v, n*labPayload)
				}
				if v := metricLabel(t, r.srv, "turnd_relayed_packets_total", dir); v != n {
					t.Errorf("turnd_relayed_packets_total{%s} = %v, want %d (kernel and user space together)", dir, v, n)
				}
			}
		})
	}
}

// inOffloadLab runs the calling (sub)test inside its own namespace with
// the kernel path available; it reports whether the caller is that copy.
func inOffloadLab(t *testing.T) bool {
	t.Helper()
	if os.Getenv("RELAY_HARDEN_NETNS") == "" {
		needOffload(t)
	}
	return inNetns(t)
}

// TestOffloadLifetimes: every way a channel stops being forwardable takes
// effect in the kernel at once — the program hands the next peer datagram
// to user space (counted by reason, nothing forwarded), and user space
// then does what RFC 8656 and the policy say. Lifetimes are pion's real
// timers, made short; the tests await their effect in the kernel.
func TestOffloadLifetimes(t *testing.T) {
	gone := func(r *offRig) func([]offload.BindingID) bool {
		return func(ids []offload.BindingID) bool { return !slices.Contains(ids, r.id()) }
	}
	t.Run("permission_expiry", func(t *testing.T) {
		if !inOffloadLab(t) {
			return
		}
		r := newOffRig(t, func(c *Config) { c.PermissionLifetime, c.ChannelLifetime = 3*time.Second, time.Minute })
		r.exchangeInKernel(5)
		r.awaitKernel("the binding removed when its permission expired", gone(r))
		r.peerSendsPassed(offload.Miss)
		awaitMetric(t, r.srv, "turnd_dropped_packets_total", dropNoPermission, 1)
		r.clientGetsNothing("after the permission expired")
	})
	t.Run("channel_expiry", func(t *testing.T) {
		if !inOffloadLab(t) {
			return
		}
		r := newOffRig(t, func(c *Config) { c.PermissionLifetime, c.ChannelLifetime = time.Minute, 3*time.Second })
		r.exchangeInKernel(5)
		r.awaitKernel("the binding removed when its channel expired", gone(r))
		r.peerSendsPassed(offload.Miss)
		// The permission lives on: user space (pion) relays the datagram
		// as a Data indication, no longer as ChannelData.
		got, err := recv(r.client, 5*time.Second)
		if err != nil || !stun.IsMessage(got) {
			t.Fatalf("after the channel expired the client got % x (%v), want a Data indication", got[:min(8, len(got))], err)
		}
		m := &stun.Message{Raw: got}
		if err := m.Decode(); err != nil || m.Type != stun.NewType(stun.MethodData, stun.ClassIndication) {
			t.Fatalf("after the channel expired the client got %v (%v), want a Data indication", m, err)
		}
	})
	t.Run("allocation_delete", func(t *testing.T) {
		if !inOffloadLab(t) {
			return
		}
		r := newOffRig(t, nil)
		r.exchangeInKernel(5)
		if code := errorCode(t, r.cl.do(stun.MethodRefresh, lifetime(0))); code != 0 {
			t.Fatalf("refresh lifetime 0: %d", code)
		}
		r.awaitKernel("the binding removed with its allocation", gone(r))
		r.peerSendsPassed(offload.Miss)
		r.clientGetsNothing("after the allocation was deleted")
	})
	t.Run("sighup_policy", func(t *testing.T) {
		if !inOffloadLab(t) {
			return
		}
		r := newOffRig(t, nil)
		r.exchangeInKernel(5)
		cfg := r.srv.cfg
		cfg.Peers = PeerPolicy{Allowed: []netip.Prefix{netip.PrefixFrom(labClient, 32)}} // the peer falls back to TEST-NET-2: denied
		if err := r.srv.Reload(cfg); err != nil {
			t.Fatalf("reload: %v", err)
		}
		r.awaitKernel("the binding removed when the policy refused its peer", gone(r))
		before := metricLabel(t, r.srv, "turnd_policy_denials_total", denyReserved)
		r.peerSendsPassed(offload.Miss)
		awaitMetric(t, r.srv, "turnd_policy_denials_total", denyReserved, before+1)
		r.clientGetsNothing("after the policy refused the peer")
	})
	t.Run("drain", func(t *testing.T) {
		if !inOffloadLab(t) {
			return
		}
		r := newOffRig(t, nil)
		r.exchangeInKernel(5)
		go r.srv.Drain(time.Minute) // returns when the test closes the server
		for end := time.Now().Add(10 * time.Second); metricValue(t, r.srv, "turnd_draining") != 1; time.Sleep(2 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatal("drain did not start")
			}
		}
		// Draining allocations still relay, in user space.
		r.peerSendsPassed(offload.Disabled)
		if got, err := recv(r.client, 5*time.Second); err != nil || !isChannelData(got) {
			t.Fatalf("while draining the client got % x (%v), want ChannelData relayed by user space", got[:min(8, len(got))], err)
		}
		before := r.counters().Bindings[r.id()]
		r.exchange(5)
		if after := r.counters().Bindings[r.id()]; after != before {
			t.Errorf("the kernel forwarded while draining: %+v → %+v", before, after)
		}
	})
}

// TestOffloadReloadSwitch: SIGHUP (Reload) turns the kernel path off and
// on under a live channel. Off, user space carries every datagram; on
// again, the live binding is replayed into a new engine and the kernel
// carries them. Nothing is lost on either switch, and the binding's totals
// count each datagram exactly once whichever path carried it.
func TestOffloadReloadSwitch(t *testing.T) {
	if !inOffloadLab(t) {
		return
	}
	r := newOffRig(t, func(c *Config) { c.Listeners = []Listener{{Network: "udp", Addr: "0.0.0.0:0"}} })
	const n = 10
	r.exchangeInKernel(n)
	cfg := r.srv.cfg
	cfg.Offload = OffloadOff
	if err := r.srv.Reload(cfg); err != nil {
		t.Fatalf("reload offload=off: %v", err)
	}
	if r.engine() != nil || metricValue(t, r.srv, "turnd_offload_active") != 0 {
		t.Fatal("offload=off by reload left the kernel path running")
	}
	r.exchange(n)
	cfg.Offload = OffloadTC
	if err := r.srv.Reload(cfg); err != nil {
		t.Fatalf("reload offload=tc: %v", err)
	}
	r.awaitKernel("the live binding replayed into the new engine", func(ids []offload.BindingID) bool { return slices.Contains(ids, r.id()) })
	r.exchangeInKernel(n)
	r.poll()
	b := r.srv.fast.find(c2pKey{listener: unmapAP(toAddrPort(r.srv.Addr("udp"))), client: r.client.LocalAddr().(*net.UDPAddr).AddrPort(), channel: labChan})
	if b == nil {
		t.Fatal("binding not in the fast-path table")
	}
	if c2p, _, p2c, _ := b.counters(); c2p != 3*n || p2c != 3*n {
		t.Errorf("binding totals %d to the peer, %d to the client; want %d each (kernel, user space, kernel)", c2p, p2c, 3*n)
	}
	if v := metricLabel(t, r.srv, "turnd_offload_packets_total", dirClientToPeer); v != 2*n {
		t.Errorf("turnd_offload_packets_total{client_to_peer} = %v, want %d", v, 2*n)
	}
}

// TestOffloadFollowsAddresses: with a wildcard listener the program is
// attached to every interface with an address; an interface that gains
// one later is attached when the kernel reports the address, and detached
// when it goes away.
func TestOffloadFollowsAddresses(t *testing.T) {
	if !inOffloadLab(t) {
		return
	}
	r := newOffRig(t, func(c *Config) { c.Listeners = []Listener{{Network: "udp", Addr: "0.0.0.0:0"}} })
	ifindex := func(name string) int {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			t.Fatal(err)
		}
		return ifi.Index
	}
	attached := func(ifi int) bool { return slices.Contains(r.engine().Attached(), ifi) }
	if !attached(ifindex("offint0")) || !attached(ifindex("lo")) {
		t.Fatalf("attached to %v, want offint0 and lo", r.engine().Attached())
	}
	ipCmd(t, "link", "add", "offint2", "type", "veth", "peer", "name", "offint3")
	ipCmd(t, "link", "set", "offint2", "up")
	idx := ifindex("offint2")
	if attached(idx) {
		t.Fatal("attached to an interface without an address")
	}
	ipCmd(t, "addr", "add", "192.0.2.1/24", "dev", "offint2")
	await := func(what string, ok func() bool) {
		t.Helper()
		for end := time.Now().Add(10 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("%s: attached to %v", what, r.engine().Attached())
			}
		}
	}
	await("attach to a new interface with an address", func() bool { return attached(idx) })
	ipCmd(t, "addr", "del", "192.0.2.1/24", "dev", "offint2")
	await("detach when its last address goes", func() bool { return !attached(idx) })
	r.exchangeInKernel(5)
}

const unprivChildEnv = "RELAY_OFFLOAD_UNPRIV_CHILD"

// TestOffloadAutoUnprivileged: a turnd without CAP_BPF/CAP_NET_ADMIN (the
// test binary re-run as nobody with every capability dropped, through
// setpriv) under --offload=auto logs exactly one line saying why the
// kernel path is off, exports turnd_offload_active 0, and relays a
// channel both ways in user space; under --offload=tc it does not start.
func TestOffloadAutoUnprivileged(t *testing.T) {
	if os.Getenv(unprivChildEnv) == "1" {
		var log lockedBuffer
		r := newFPRig(t, func(c *Config) {
			c.Offload = OffloadAuto
			c.MinPort, c.MaxPort = labRelayMin, labRelayMax // a port-0 listener never lands inside
			c.Logger = slog.New(slog.NewTextHandler(&log, nil))
		})
		r.bind(0x4001)
		r.roundTrip(0x4001, 300)
		var lines []string
		for _, l := range strings.Split(log.String(), "\n") {
			if strings.Contains(l, "offload") {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 || !strings.Contains(lines[0], "relaying in user space") || !strings.Contains(lines[0], "not permitted") {
			t.Fatalf("offload log lines %q, want one saying the kernel path is not permitted", lines)
		}
		if v := metricValue(t, r.srv, "turnd_offload_active"); v != 0 {
			t.Fatalf("turnd_offload_active = %v, want 0", v)
		}
		// An explicit tc that cannot start is a start-up error saying why.
		cfg := r.srv.cfg
		cfg.Listeners = []Listener{{Network: "udp", Addr: "127.0.0.1:0"}}
		cfg.Offload = OffloadTC
		if s, err := New(cfg); err == nil {
			s.Close()
			t.Fatal("offload=tc without privileges: New succeeded")
		} else if !strings.Contains(err.Error(), "offload=tc") || !errors.Is(err, offload.ErrPermission) {
			t.Fatalf("offload=tc without privileges: %v, want a start-up error wrapping ErrPermission", err)
		}
		fmt.Printf("unprivileged auto: %s\n", lines[0])
		return
	}
	testenv.NeedRoot(t)
	setpriv := testenv.NeedCommand(t, "setpriv", "util-linux")
	// The test binary sits in a root-only build directory: copy it where
	// nobody may run it.
	dir, err := os.MkdirTemp("", "offload-int-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "relay.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil { // nobody must be able to run the copy
		t.Fatal(err)
	}
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs",
		bin, "-test.run=^TestOffloadAutoUnprivileged$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), unprivChildEnv+"=1", "TMPDIR="+dir)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "unprivileged auto:") {
		t.Fatalf("unprivileged child: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "unprivileged auto:") {
			t.Log(l)
		}
	}
}

// lockedBuffer is a log sink safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestOffloadBandwidthCap: an allocation with MaxBPS is carried by the
// kernel until a counter poll finds its limiter in debt; then the program
// hands its datagrams to user space, which drops them until the debt is
// paid; once the limiter has recovered (the poll's clock moved on) the
// kernel carries the binding again.
func TestOffloadBandwidthCap(t *testing.T) {
	if !inOffloadLab(t) {
		return
	}
	const bps = 20000 // burst: 64 KiB, the limiter's minimum
	r := newOffRig(t, func(c *Config) { c.MaxBPS = bps })
	r.exchangeInKernel(400) // 80 kB each way: over one burst
	r.poll()
	before := metricLabel(t, r.srv, "turnd_dropped_packets_total", dropBandwidth)
	r.peerSendsPassed(offload.Throttled)
	awaitMetric(t, r.srv, "turnd_dropped_packets_total", dropBandwidth, before+1)
	r.clientGetsNothing("over the bandwidth cap")
	r.pollAt(time.Now().Add(30 * time.Second)) // the debt (≈ 16 kB at 20 kB/s) is paid long before
	r.exchangeInKernel(5)
}
