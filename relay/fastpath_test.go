package relay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// fpEvent is one binding-table change seen by recObserver.
type fpEvent struct {
	kind string // "installed", "changed", "removed"
	snap BindingSnapshot
}

// recObserver records the table's changes, as an offload engine would see
// them, so tests await events instead of sleeping.
type recObserver struct{ ch chan fpEvent }

func (o *recObserver) put(kind string, s BindingSnapshot) {
	select {
	case o.ch <- fpEvent{kind, s}:
	default: // a test that floods the table fails on its own wait
	}
}
func (o *recObserver) bindingInstalled(s BindingSnapshot) { o.put("installed", s) }
func (o *recObserver) bindingChanged(s BindingSnapshot)   { o.put("changed", s) }
func (o *recObserver) bindingRemoved(s BindingSnapshot)   { o.put("removed", s) }

// await returns the first event matching pred; it fails the test if none
// comes within a generous bound (a hang guard, not a timing assertion).
func (o *recObserver) await(t *testing.T, what string, pred func(fpEvent) bool) fpEvent {
	t.Helper()
	deadline := time.After(20 * time.Second)
	var seen []string // for the failure message: what came instead
	for {
		select {
		case ev := <-o.ch:
			if pred(ev) {
				return ev
			}
			if len(seen) < 16 {
				s := ev.snap
				seen = append(seen, fmt.Sprintf("%s ch %#x relay %v peer %v enabled %v removed %v",
					ev.kind, s.Channel, s.Relay, s.Peer, s.Enabled, s.Removed))
			}
		case <-deadline:
			t.Fatalf("no binding event: %s; %d others came: %s", what, len(seen), strings.Join(seen, "; "))
			return fpEvent{}
		}
	}
}

// fpRig is a server, a hand-driven TURN client with one allocation, and a
// peer socket the test reads and writes itself.
type fpRig struct {
	t      *testing.T
	srv    *Server
	obs    *recObserver
	cl     *rawClient
	client *net.UDPConn
	relay  netip.AddrPort
	peer   *net.UDPConn
	peerAP netip.AddrPort
}

func newFPRig(t *testing.T, mutate func(*Config)) *fpRig {
	t.Helper()
	srv := newTestServer(t, mutate)
	obs := &recObserver{ch: make(chan fpEvent, 4096)}
	srv.fast.setObserver(obs)
	cl := newRawClient(t, srv, "alice", "wonderland")
	resp := cl.do(stun.MethodAllocate, udpTransport)
	if code := errorCode(t, resp); code != 0 {
		t.Fatalf("allocate: %d", code)
	}
	pc, err := net.ListenPacket("udp", localFor(srv.Addr("udp").String()))
	if err != nil {
		t.Fatal(err)
	}
	peer := pc.(*net.UDPConn)
	t.Cleanup(func() { peer.Close() })
	return &fpRig{
		t: t, srv: srv, obs: obs, cl: cl, client: cl.conn.(*net.UDPConn),
		relay: relayedAddr(t, resp).AddrPort(), peer: peer, peerAP: peer.LocalAddr().(*net.UDPAddr).AddrPort(),
	}
}

// bind binds ch to the rig's peer and waits until the table has it.
func (r *fpRig) bind(ch uint16) {
	r.t.Helper()
	if code := errorCode(r.t, r.cl.do(stun.MethodChannelBind, channelNumber(ch), peerAddr{net.UDPAddrFromAddrPort(r.peerAP)})); code != 0 {
		r.t.Fatalf("channel bind: %d", code)
	}
	r.obs.await(r.t, "binding installed", func(e fpEvent) bool { return e.kind == "installed" && e.snap.Channel == ch })
}

func (r *fpRig) binding(ch uint16) *binding {
	return r.srv.fast.find(c2pKey{
		listener: unmapAP(toAddrPort(r.srv.Addr("udp"))),
		client:   unmapAP(r.client.LocalAddr().(*net.UDPAddr).AddrPort()),
		channel:  ch,
	})
}

func channelData(ch uint16, payload []byte) []byte {
	b := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint16(b[0:2], ch)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(payload)))
	copy(b[4:], payload)
	return b
}

// sendC2P sends ChannelData from the client.
func (r *fpRig) sendC2P(ch uint16, payload []byte) {
	r.t.Helper()
	if _, err := r.client.WriteToUDPAddrPort(channelData(ch, payload), toAddrPort(r.cl.srv)); err != nil {
		r.t.Fatal(err)
	}
}

// sendP2C sends a datagram from the peer to the relay address.
func (r *fpRig) sendP2C(payload []byte) {
	r.t.Helper()
	if _, err := r.peer.WriteToUDPAddrPort(payload, r.relay); err != nil {
		r.t.Fatal(err)
	}
}

var errNothing = errors.New("nothing received")

// recv reads one datagram within wait (a hang guard).
func recv(c *net.UDPConn, wait time.Duration) ([]byte, error) {
	buf := make([]byte, 70000)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	n, _, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, errNothing
		}
		return nil, err
	}
	return buf[:n], nil
}

// roundTrip sends a fresh payload each way and checks the exact bytes:
// the peer gets the payload, the client gets ChannelData on ch. UDP on
// loopback may drop under load, so each way retries a few times.
func (r *fpRig) roundTrip(ch uint16, size int) {
	r.t.Helper()
	payload := bytes.Repeat([]byte{0xA5}, size)
	binary.BigEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
	var got []byte
	for try := 0; try < 5 && !bytes.Equal(got, payload); try++ {
		r.sendC2P(ch, payload)
		got, _ = recv(r.peer, time.Second)
	}
	if !bytes.Equal(got, payload) {
		r.t.Fatalf("client→peer %d bytes: peer got %d bytes", size, len(got))
	}
	r.peerToClient(ch, size)
}

// peerToClient sends a fresh payload from the peer and checks that the
// client gets it as ChannelData on ch, exactly.
func (r *fpRig) peerToClient(ch uint16, size int) {
	r.t.Helper()
	payload := bytes.Repeat([]byte{0x5A}, size)
	binary.BigEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
	want := channelData(ch, payload)
	var got []byte
	for try := 0; try < 5 && !bytes.Equal(got, want); try++ {
		r.sendP2C(payload)
		got, _ = recv(r.client, time.Second)
	}
	if !bytes.Equal(got, want) {
		r.t.Fatalf("peer→client %d bytes: client got %d bytes (% x...)", size, len(got), got[:min(8, len(got))])
	}
}

// expectNoC2P checks that ChannelData no longer reaches the peer: it waits
// for the server to count the drop (reason), then finds the peer's socket
// empty.
func (r *fpRig) expectNoC2P(ch uint16, metric string, label string) {
	r.t.Helper()
	before := metricLabel(r.t, r.srv, metric, label)
	for try := 0; try < 50 && metricLabel(r.t, r.srv, metric, label) == before; try++ {
		r.sendC2P(ch, []byte("must not arrive"))
		time.Sleep(20 * time.Millisecond) // pacing retries on a lossy loopback, not synchronisation
	}
	if metricLabel(r.t, r.srv, metric, label) == before {
		r.t.Fatalf("client→peer: no %s{%s} drop counted", metric, label)
	}
	if got, err := recv(r.peer, time.Millisecond); err != errNothing {
		r.t.Fatalf("client→peer: peer received %q after the drop", got)
	}
}

// awaitMetric waits until a labelled counter reaches want (hang guard:
// 10 s).
func awaitMetric(t *testing.T, srv *Server, name, label string, want float64) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if metricLabel(t, srv, name, label) >= want {
			return
		}
	}
	t.Fatalf("%s{%s} stayed at %v, want >= %v", name, label, metricLabel(t, srv, name, label), want)
}

// metricLabel reads one labelled series of a counter vector.
func metricLabel(t *testing.T, srv *Server, name, label string) float64 {
	t.Helper()
	mfs, err := srv.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

func TestFastPathChannelDataBothWays(t *testing.T) {
	for _, tc := range []struct {
		name string
		off  bool
	}{{"fastpath", false}, {"pion", true}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newFPRig(t, func(c *Config) { c.DisableFastPath = tc.off })
			r.bind(0x4001)
			// 1600 bytes and more: pion's own relay buffer cut those
			// before. Client→peer, pion's path takes what fits its 1600-byte
			// read buffer (inboundMTU); the fast path takes any size.
			sizes := []int{8, 1200, 1600, 9000, 65000}
			if tc.off {
				sizes = []int{8, 1200, 1500}
				for _, size := range []int{1600, 9000, 65000} {
					r.peerToClient(0x4001, size)
				}
			}
			for _, size := range sizes {
				r.roundTrip(0x4001, size)
			}
			// The reader counts after its send returns: await the
			// counters rather than read them once.
			bd := r.binding(0x4001)
			c2p, _, p2c, _ := bd.counters()
			for end := time.Now().Add(10 * time.Second); !tc.off && (c2p < 5 || p2c < 5) && time.Now().Before(end); {
				time.Sleep(5 * time.Millisecond)
				c2p, _, p2c, _ = bd.counters()
			}
			// Off, only datagrams too large for pion's 1600-byte relay
			// buffer (1600, 9000, 65000) are framed by our reader.
			if tc.off && (c2p != 0 || p2c > 3) {
				t.Fatalf("fast path off but it forwarded %d/%d", c2p, p2c)
			}
			if !tc.off && (c2p < 5 || p2c < 5) {
				t.Fatalf("fast path forwarded %d client→peer and %d peer→client datagrams, want >= 5 each", c2p, p2c)
			}
			// Tallies reach Prometheus once per burst, when a reader
			// parks: await them.
			awaitMetric(t, r.srv, "turnd_relayed_packets_total", dirPeerToClient, 5)
			awaitMetric(t, r.srv, "turnd_relayed_packets_total", dirClientToPeer, float64(len(sizes)))
		})
	}
}

// Both tables' look-ups, the integer-keyed ones of IPv4 and the byte-keyed
// ones every binding is also in, find the binding; an IPv6 client and
// peer (byte keys only) are forwarded both ways by the shortcut too.
func TestFastPathKeyFamilies(t *testing.T) {
	for _, tc := range []struct {
		name   string
		listen string
		in64   bool
	}{{"ipv4", "127.0.0.1:0", true}, {"ipv6", "[::1]:0", false}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "ipv6" && !HostHasIPv6() {
				t.Skip("no IPv6 loopback on this host")
			}
			r := newFPRig(t, func(c *Config) { c.Listeners = []Listener{{Network: "udp", Addr: tc.listen}} })
			r.bind(0x4ABC)
			bd := r.binding(0x4ABC)
			if bd == nil || bd.in64 != tc.in64 {
				t.Fatalf("binding %v: in the integer-keyed table %v, want %v", bd != nil, bd != nil && bd.in64, tc.in64)
			}
			k := bd.key
			if got := r.srv.fast.lookup(k, -1); got != bd {
				t.Fatal("the byte-keyed table (listeners without an id) lacks the binding")
			}
			other := k
			other.channel = 0x4ABD
			if r.srv.fast.find(other) != nil {
				t.Fatal("an unbound channel of the same client found a binding")
			}
			rf := bd.rf
			if got := rf.lookupPeer(r.peerAP); got != bd {
				t.Fatal("the peer look-up misses the binding")
			}
			// A second peer: the one-peer slot gives way to the map.
			pc, err := net.ListenPacket("udp", localFor(tc.listen))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { pc.Close() })
			peer2 := unmapAP(pc.LocalAddr().(*net.UDPAddr).AddrPort())
			if rf.lookupPeer(peer2) != nil {
				t.Fatal("a peer without a channel found the other peer's binding")
			}
			if code := errorCode(t, r.cl.do(stun.MethodChannelBind, channelNumber(0x4ABD), peerAddr{net.UDPAddrFromAddrPort(peer2)})); code != 0 {
				t.Fatalf("channel bind to a second peer: %d", code)
			}
			r.obs.await(t, "second binding installed", func(e fpEvent) bool { return e.kind == "installed" && e.snap.Channel == 0x4ABD })
			bd2 := r.binding(0x4ABD)
			if bd2 == nil || rf.lookupPeer(peer2) != bd2 || rf.lookupPeer(r.peerAP) != bd {
				t.Fatal("with two peers, a peer look-up finds the wrong binding")
			}
			want := channelData(0x4ABD, []byte("from the second peer"))
			var got []byte
			for try := 0; try < 5 && !bytes.Equal(got, want); try++ {
				if _, err := pc.WriteTo([]byte("from the second peer"), net.UDPAddrFromAddrPort(r.relay)); err != nil {
					t.Fatal(err)
				}
				got, _ = recv(r.client, time.Second)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("second peer→client: client got % x", got)
			}
			for i := 0; i < 3; i++ {
				r.roundTrip(0x4ABC, 100)
			}
			c2p, _, p2c, _ := bd.counters()
			for end := time.Now().Add(10 * time.Second); (c2p < 3 || p2c < 3) && time.Now().Before(end); {
				time.Sleep(5 * time.Millisecond) // the reader counts after its send returns
				c2p, _, p2c, _ = bd.counters()
			}
			if c2p < 3 || p2c < 3 {
				t.Fatalf("shortcut forwarded %d client→peer and %d peer→client, want >= 3 each", c2p, p2c)
			}
			if code := errorCode(t, r.cl.do(stun.MethodRefresh, lifetime(0))); code != 0 {
				t.Fatalf("refresh 0: %d", code)
			}
			removed := map[uint16]bool{}
			r.obs.await(t, "both bindings removed", func(e fpEvent) bool {
				if e.kind == "removed" {
					removed[e.snap.Channel] = true
				}
				return removed[0x4ABC] && removed[0x4ABD]
			})
			if r.srv.fast.find(k) != nil || r.srv.fast.lookup(k, -1) != nil || rf.lookupPeer(r.peerAP) != nil || rf.lookupPeer(peer2) != nil {
				t.Fatal("a closed allocation's binding is still in a table")
			}
		})
	}
}

// A peer datagram larger than pion's 1600-byte buffer, on a permission
// without a channel, arrives whole as a Data indication.
func TestFastPathLargeDataIndication(t *testing.T) {
	for _, off := range []bool{false, true} {
		r := newFPRig(t, func(c *Config) { c.DisableFastPath = off })
		if code := errorCode(t, r.cl.do(stun.MethodCreatePermission, peerAddr{net.UDPAddrFromAddrPort(r.peerAP)})); code != 0 {
			t.Fatalf("create permission: %d", code)
		}
		payload := bytes.Repeat([]byte("x"), 5000)
		var data []byte
		for try := 0; try < 5 && !bytes.Equal(data, payload); try++ {
			r.sendP2C(payload)
			b, err := recv(r.client, time.Second)
			if err != nil {
				continue
			}
			m := &stun.Message{Raw: b}
			if m.Decode() != nil || m.Type != stun.NewType(stun.MethodData, stun.ClassIndication) {
				t.Fatalf("off=%v: client got %d bytes, not a Data indication", off, len(b))
			}
			var xpa stun.XORMappedAddress
			if err := xpa.GetFromAs(m, stun.AttrXORPeerAddress); err != nil || xpa.Port != int(r.peerAP.Port()) {
				t.Fatalf("off=%v: Data indication peer %v (%v)", off, xpa, err)
			}
			data, _ = m.Get(stun.AttrData)
		}
		if !bytes.Equal(data, payload) {
			t.Fatalf("off=%v: Data indication carried %d bytes, want %d", off, len(data), len(payload))
		}
	}
}

// RFC 8656: data needs a live permission. pion v5.1.1 forwards channel data
// on the channel alone; neither path may.
func TestFastPathPermissionExpiryStopsForwarding(t *testing.T) {
	r := newFPRig(t, func(c *Config) {
		c.PermissionLifetime = time.Second
		c.ChannelLifetime = time.Hour
	})
	r.bind(0x4002)
	r.roundTrip(0x4002, 100)
	r.obs.await(t, "permission expiry disables the binding", func(e fpEvent) bool {
		return e.kind == "changed" && e.snap.Channel == 0x4002 && !e.snap.Enabled
	})
	if st := r.srv.FastPathStats(); st.Bindings != 1 || st.Active != 0 {
		t.Fatalf("after permission expiry: %+v, want the channel kept but inactive", st)
	}
	r.expectNoC2P(0x4002, "turnd_dropped_packets_total", dropNoPermission)

	before := metricLabel(t, r.srv, "turnd_dropped_packets_total", dropNoPermission)
	for try := 0; try < 50 && metricLabel(t, r.srv, "turnd_dropped_packets_total", dropNoPermission) == before; try++ {
		r.sendP2C([]byte("must not arrive"))
		time.Sleep(20 * time.Millisecond) // pacing retries, not synchronisation
	}
	if got, err := recv(r.client, time.Millisecond); err != errNothing {
		t.Fatalf("peer→client after permission expiry: client got %q", got)
	}

	// A new permission (CreatePermission) brings the channel back.
	if code := errorCode(t, r.cl.do(stun.MethodCreatePermission, peerAddr{net.UDPAddrFromAddrPort(r.peerAP)})); code != 0 {
		t.Fatalf("create permission: %d", code)
	}
	r.obs.await(t, "binding re-enabled", func(e fpEvent) bool { return e.kind == "changed" && e.snap.Enabled })
	r.roundTrip(0x4002, 100)
}

func TestFastPathChannelExpiry(t *testing.T) {
	r := newFPRig(t, func(c *Config) {
		c.ChannelLifetime = time.Second
		c.PermissionLifetime = time.Hour
	})
	r.bind(0x4003)
	r.roundTrip(0x4003, 100)
	r.obs.await(t, "channel expiry removes the binding", func(e fpEvent) bool {
		return e.kind == "removed" && e.snap.Channel == 0x4003
	})
	if st := r.srv.FastPathStats(); st.Bindings != 0 {
		t.Fatalf("after channel expiry: %+v", st)
	}
	// The permission lives on: peer data now comes as a Data indication.
	var m *stun.Message
	for try := 0; try < 5 && m == nil; try++ {
		r.sendP2C([]byte("after expiry"))
		if b, err := recv(r.client, time.Second); err == nil {
			m = &stun.Message{Raw: b}
			if m.Decode() != nil || m.Type.Method != stun.MethodData {
				t.Fatalf("peer data after channel expiry: got % x, want a Data indication", b[:min(8, len(b))])
			}
		}
	}
	if m == nil {
		t.Fatal("peer data after channel expiry never arrived")
	}
}

func TestFastPathAllocationClose(t *testing.T) {
	r := newFPRig(t, nil)
	r.bind(0x4004)
	r.roundTrip(0x4004, 100)
	if code := errorCode(t, r.cl.do(stun.MethodRefresh, lifetime(0))); code != 0 {
		t.Fatalf("refresh 0: %d", code)
	}
	r.obs.await(t, "allocation close removes the binding", func(e fpEvent) bool { return e.kind == "removed" })
	fp := r.srv.fast
	fp.mu.RLock()
	n, n64, relays, clients := len(fp.c2p), 0, len(fp.relays), len(fp.byClient)
	for _, m := range fp.c2p64 {
		n64 += len(m)
	}
	fp.mu.RUnlock()
	if n != 0 || n64 != 0 || relays != 0 || clients != 0 {
		t.Fatalf("after close: %d+%d bindings, %d relays, %d clients left", n, n64, relays, clients)
	}
	r.sendC2P(0x4004, []byte("gone"))
	if got, err := recv(r.peer, 200*time.Millisecond); err != errNothing {
		t.Fatalf("peer got %q from a closed allocation", got)
	}
}

// Refreshes learned from pion's success responses move the deadlines, and
// refreshing more often than the lifetime keeps the binding forwarding
// past it.
func TestFastPathRefreshKeepsAlive(t *testing.T) {
	const life = 3 * time.Second
	r := newFPRig(t, func(c *Config) {
		c.ChannelLifetime = life
		c.PermissionLifetime = life
	})
	r.bind(0x4005)
	first := r.binding(0x4005).snapshot()
	start := time.Now()
	tick := time.NewTicker(life / 6)
	defer tick.Stop()
	for time.Since(start) < 2*life {
		<-tick.C
		if code := errorCode(t, r.cl.do(stun.MethodChannelBind, channelNumber(0x4005), peerAddr{net.UDPAddrFromAddrPort(r.peerAP)})); code != 0 {
			t.Fatalf("channel refresh: %d", code)
		}
		r.roundTrip(0x4005, 200)
	}
	b := r.binding(0x4005)
	if b == nil {
		t.Fatal("binding gone although refreshed")
	}
	last := b.snapshot()
	if last.ChannelDeadline <= first.ChannelDeadline || last.PermissionDeadline <= first.PermissionDeadline || !last.Enabled {
		t.Fatalf("deadlines not refreshed: first %+v, last %+v", first, last)
	}
	if c2p, _, p2c, _ := b.counters(); c2p == 0 || p2c == 0 {
		t.Fatalf("refreshed binding carried %d/%d on the fast path", c2p, p2c)
	}
}

func TestFastPathPolicyReloadRevokes(t *testing.T) {
	var cfg Config
	r := newFPRig(t, func(c *Config) { cfg = *c })
	r.bind(0x4006)
	r.roundTrip(0x4006, 100)

	cfg.Peers = PeerPolicy{} // loopback peers no longer allowed
	if err := r.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	r.obs.await(t, "reload disables the binding", func(e fpEvent) bool { return e.kind == "changed" && !e.snap.Enabled })
	r.expectNoC2P(0x4006, "turnd_policy_denials_total", denyLoopback)

	before := metricLabel(t, r.srv, "turnd_policy_denials_total", denyLoopback)
	for try := 0; try < 50 && metricLabel(t, r.srv, "turnd_policy_denials_total", denyLoopback) == before; try++ {
		r.sendP2C([]byte("must not arrive"))
		time.Sleep(20 * time.Millisecond) // pacing retries, not synchronisation
	}
	if got, err := recv(r.client, time.Millisecond); err != errNothing {
		t.Fatalf("peer→client after reload: client got %q", got)
	}

	cfg.Peers = PeerPolicy{AllowLoopback: true}
	if err := r.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	r.obs.await(t, "reload re-enables the binding", func(e fpEvent) bool { return e.kind == "changed" && e.snap.Enabled })
	r.roundTrip(0x4006, 100)
}

// The hot path allocates nothing in either direction: the whole process
// (listener batch read, lookup, relay send; relay read, in-place framing,
// listener send) is measured, with zero-allocation sockets on the test's
// side.
func TestFastPathZeroAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation measurement skipped in -short")
	}
	r := newFPRig(t, nil)
	r.bind(0x4007)
	r.roundTrip(0x4007, 1200)
	srvAP := toAddrPort(r.cl.srv)
	frame := channelData(0x4007, bytes.Repeat([]byte{1}, 1200))
	payload := frame[4:]
	buf := make([]byte, 2048)
	deadline := time.Now().Add(time.Minute)
	_ = r.peer.SetReadDeadline(deadline)
	_ = r.client.SetReadDeadline(deadline)

	lost := 0
	c2p := testing.AllocsPerRun(300, func() {
		if _, err := r.client.WriteToUDPAddrPort(frame, srvAP); err != nil {
			lost++
			return
		}
		if n, _, err := r.peer.ReadFromUDPAddrPort(buf); err != nil || n != len(payload) {
			lost++
		}
	})
	p2c := testing.AllocsPerRun(300, func() {
		if _, err := r.peer.WriteToUDPAddrPort(payload, r.relay); err != nil {
			lost++
			return
		}
		if n, _, err := r.client.ReadFromUDPAddrPort(buf); err != nil || n != len(frame) {
			lost++
		}
	})
	if lost > 0 {
		t.Fatalf("%d of 600 datagrams lost or wrong", lost)
	}
	if c2p != 0 || p2c != 0 {
		t.Fatalf("allocations per relayed datagram: client→peer %v, peer→client %v; want 0", c2p, p2c)
	}
	// The last datagram's counter may trail its delivery by a moment.
	if a, _, b, _ := r.binding(0x4007).counters(); a < 299 || b < 299 {
		t.Fatalf("fast path carried %d/%d of 300/300", a, b)
	}
}

// awaitChannelTraffic relays round trips through a pion client's
// allocation until the fast path's bindings that match carry traffic both
// ways, and returns their packet counts (client→peer, peer→client). pion's
// client sends Send indications until its ChannelBind, which runs in the
// background, has its answer: on a loaded machine that can outlast a fixed
// number of round trips. Bounded: 40 rounds of 5; the caller checks the
// counts.
func awaitChannelTraffic(t *testing.T, srv *Server, relayConn net.PacketConn, peer net.Addr, match func(*binding) bool) (c2p, p2c uint64) {
	t.Helper()
	fp := srv.fast
	for round := 0; round < 40 && (c2p == 0 || p2c == 0); round++ {
		relayRoundTrips(t, relayConn, peer, 5)
		c2p, p2c = 0, 0
		fp.mu.RLock()
		for _, b := range fp.c2p {
			if match(b) {
				a, _, c, _ := b.counters()
				c2p, p2c = c2p+a, p2c+c
			}
		}
		fp.mu.RUnlock()
	}
	return c2p, p2c
}

// A pion client (which binds channels itself) relays through the fast path.
func TestFastPathPionClient(t *testing.T) {
	srv := newTestServer(t, nil)
	cl := pionClient(t, srv, "udp", "alice", "wonderland")
	relayConn, err := cl.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relayConn.Close()
	peer := echoPeer(t, "127.0.0.1:0")
	c2p, p2c := awaitChannelTraffic(t, srv, relayConn, peer.LocalAddr(), func(*binding) bool { return true })
	if c2p == 0 || p2c == 0 {
		t.Fatalf("pion client's channel traffic bypassed the fast path (%d/%d)", c2p, p2c)
	}
}

// An offload engine's counter deltas land in the binding's counters and in
// the relayed totals.
func TestFastPathOffloadedCounters(t *testing.T) {
	r := newFPRig(t, nil)
	r.bind(0x4008)
	b := r.binding(0x4008)
	before := metricLabel(t, r.srv, "turnd_relayed_packets_total", dirPeerToClient)
	b.addOffloaded(3, 300, 5, 500)
	if a, ab, c, cb := b.counters(); a != 3 || ab != 300 || c != 5 || cb != 500 {
		t.Fatalf("binding counters %d/%d/%d/%d, want 3/300/5/500", a, ab, c, cb)
	}
	if got := metricLabel(t, r.srv, "turnd_relayed_packets_total", dirPeerToClient); got != before+5 {
		t.Fatalf("relayed peer→client %v, want %v", got, before+5)
	}
	snap := b.snapshot()
	if snap.Channel != 0x4008 || snap.Peer != r.peerAP || !snap.Enabled || !snap.ClientUDP || snap.Capped {
		t.Fatalf("snapshot %+v", snap)
	}
}

// TCP and TLS clients' ChannelData frames take the shortcut to the peer;
// peer data comes back to them through the shortcut too.
func TestFastPathStreamClients(t *testing.T) {
	srv := newTestServer(t, func(c *Config) {
		c.Listeners = append(c.Listeners, Listener{Network: "tls", Addr: "127.0.0.1:0"})
		c.Certificate = selfSigned(t)
	})
	for _, network := range []string{"tcp", "tls"} {
		t.Run(network, func(t *testing.T) {
			cl := pionClient(t, srv, network, "alice", "wonderland")
			relayConn, err := cl.Allocate()
			if err != nil {
				t.Fatal(err)
			}
			defer relayConn.Close()
			peer := echoPeer(t, "127.0.0.1:0")
			relayAP := unmapAP(toAddrPort(relayConn.LocalAddr()))
			c2p, p2c := awaitChannelTraffic(t, srv, relayConn, peer.LocalAddr(), func(b *binding) bool { return b.rf.key == relayAP })
			if c2p == 0 {
				t.Fatalf("%s client's ChannelData bypassed the fast path", network)
			}
			if p2c == 0 {
				t.Fatalf("%s client's peer data bypassed the fast path", network)
			}
		})
	}
}
