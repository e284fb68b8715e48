//go:build linux

package e2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/rtcsuite/rtcsuite/internal/netlab"
	"github.com/rtcsuite/rtcsuite/internal/testenv"
)

// The offload lab (issue 9, step B): the turnd binary in its own network
// namespace between a client namespace and a peer namespace (veth pairs,
// documentation addresses, no IP forwarding in turnd's namespace), started
// with the eBPF data path (`offload=tc` in its config file, re-read on
// SIGHUP). One lab and one turnd serve every case, each run once:
//
//   - uclient, tx checksum offload off on the senders: 1,000 packets per
//     flow over channels, no loss; the kernel path carried them (offload
//     counters against uclient's packets and bytes); every datagram at both
//     receivers has a valid UDP checksum (AF_PACKET capture, recomputed in
//     Go) and no namespace's Udp InCsumErrors moved.
//   - uclient with default offloads (CHECKSUM_PARTIAL senders: the program
//     hands these to user space): no loss, captured checksums valid.
//   - a sequenced flow while SIGHUP switches tc -> off -> tc: nothing lost,
//     duplicated or reordered, the kernel counters grow only while on.
//   - relay-only pion data channels with offload on, then off.
func TestTurndOffloadLab(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ip", "iproute2")
	testenv.NeedCommand(t, "ethtool", "ethtool")
	uclient := testenv.NeedCommand(t, "turnutils_uclient", "coturn")
	peerBin := testenv.NeedCommand(t, "turnutils_peer", "coturn")
	bin := turnd_build(t)

	lab := turnd_newOffloadLab(t, bin)
	peer := lab.startEchoPeer(t, peerBin)

	t.Run("uclient/tx-csum-off", func(t *testing.T) {
		must(t, lab.topo.SetSendersTxChecksum(false))
		lab.uclientCase(t, uclient, peer, true)
	})
	t.Run("uclient/default-offloads", func(t *testing.T) {
		must(t, lab.topo.SetSendersTxChecksum(true))
		lab.uclientCase(t, uclient, peer, false)
	})
	// From here on the senders hand full checksums, so the kernel path can
	// carry the traffic whose placement the cases assert.
	must(t, lab.topo.SetSendersTxChecksum(false))
	t.Run("sighup-switch-mid-flow", lab.switchCase)
	t.Run("webrtc-relay-only", lab.webrtcCase)
}

// turnd_offloadLab is the topology plus the turnd running in it.
type turnd_offloadLab struct {
	topo    *netlab.Topology
	d       *turnd_proc
	config  string // turnd's config file; "offload=..." is rewritten for SIGHUP
	metrics *http.Client
}

const (
	turnd_labPort  = 3478
	turnd_labRealm = "offload.test"
	turnd_labUser  = "alice"
	turnd_labPass  = "wonderland"
)

func turnd_newOffloadLab(t *testing.T, bin string) *turnd_offloadLab {
	t.Helper()
	// Names carry the branch's tag and the pid: parallel runs do not clash.
	topo, err := netlab.NewTopology(fmt.Sprintf("oe%d", os.Getpid()%100000))
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	lab := &turnd_offloadLab{topo: topo, config: filepath.Join(t.TempDir(), "turnd.conf"),
		metrics: turnd_nsHTTPClient(topo.Relay)}
	lab.setOffload(t, "tc")
	lab.d = turnd_run(t, netlab.Command(topo.Relay, bin,
		"--config", lab.config,
		"--realm", turnd_labRealm,
		"--user", turnd_labUser+":"+turnd_labPass,
		"--listening-ip", netlab.ListenAddr.String(),
		"--listening-port", strconv.Itoa(turnd_labPort),
		"--relay-ip", netlab.RelayAddr.String(),
		"--min-port", "49152", "--max-port", "49999",
		"--udp-sockets", "1",
		"--no-tls",
		// 203.0.113.0/24 is a documentation range, denied by default.
		"--allowed-peer-ip", "203.0.113.0/24",
		"--admin-listen", "127.0.0.1:0",
		"--log-format", "json",
	))
	if m := lab.scrape(t); m["turnd_offload_active"] != 1 {
		t.Fatalf("turnd_offload_active = %v with offload=tc, want 1", m["turnd_offload_active"])
	}
	return lab
}

// setOffload (re)writes turnd's config file with offload=mode.
func (l *turnd_offloadLab) setOffload(t *testing.T, mode string) {
	t.Helper()
	if err := os.WriteFile(l.config, []byte("# written by TestTurndOffloadLab\noffload="+mode+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// switchOffload rewrites the config file, sends SIGHUP by pid and waits
// (bounded) until /metrics shows the new state.
func (l *turnd_offloadLab) switchOffload(t *testing.T, mode string) {
	t.Helper()
	l.setOffload(t, mode)
	if err := l.d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP: %v", err)
	}
	want := 0.0
	if mode == "tc" {
		want = 1
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got := l.scrape(t)["turnd_offload_active"]; got == want {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("turnd_offload_active = %v 10 s after SIGHUP with offload=%s, want %v", got, mode, want)
		}
		// turnd gives no other sign that a reload finished; poll, bounded.
		time.Sleep(50 * time.Millisecond)
	}
}

func (l *turnd_offloadLab) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	return turnd_metricsVia(t, l.metrics, l.d.Admin)
}

// turnd_offloadTotals are the kernel path's counters from /metrics.
type turnd_offloadTotals struct {
	toPeerPkts, toPeerBytes, toClientPkts, toClientBytes float64
	// lookalikes: datagrams handed to user space as "checksum_partial".
	// With full checksums (tx offload off) these are the documented 1 in
	// 65,536 whose checksum equals the pseudo-header sum.
	lookalikes float64
}

func turnd_kernelTotals(m map[string]float64) turnd_offloadTotals {
	return turnd_offloadTotals{
		toPeerPkts:    m[`turnd_offload_packets_total{direction="client_to_peer"}`],
		toPeerBytes:   m[`turnd_offload_bytes_total{direction="client_to_peer"}`],
		toClientPkts:  m[`turnd_offload_packets_total{direction="peer_to_client"}`],
		toClientBytes: m[`turnd_offload_bytes_total{direction="peer_to_client"}`],
		lookalikes:    m[`turnd_offload_passed_packets_total{reason="checksum_partial"}`],
	}
}

func (a turnd_offloadTotals) sub(b turnd_offloadTotals) turnd_offloadTotals {
	return turnd_offloadTotals{a.toPeerPkts - b.toPeerPkts, a.toPeerBytes - b.toPeerBytes,
		a.toClientPkts - b.toClientPkts, a.toClientBytes - b.toClientBytes, a.lookalikes - b.lookalikes}
}

// turnd_relayedTotals are all relayed packets, kernel and user space.
func turnd_relayedTotals(m map[string]float64) (toPeer, toClient float64) {
	return m[`turnd_relayed_packets_total{direction="client_to_peer"}`],
		m[`turnd_relayed_packets_total{direction="peer_to_client"}`]
}

// turnd_passedDelta lists the kernel path's pass-to-user-space reasons
// counted between two scrapes.
func turnd_passedDelta(before, after map[string]float64) string {
	var parts []string
	for k, v := range after {
		if strings.HasPrefix(k, "turnd_offload_passed_packets_total") && v != before[k] {
			parts = append(parts, fmt.Sprintf("%s=%v", strings.TrimPrefix(k, "turnd_offload_passed_packets_total"), v-before[k]))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// settledTotals polls /metrics until the kernel counters stop changing
// between two scrapes (turnd polls the per-CPU maps about once a second),
// bounded, and returns them.
func (l *turnd_offloadLab) settledTotals(t *testing.T) map[string]float64 {
	t.Helper()
	prev := l.scrape(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The counters are published by a 1 s poller: wait a period.
		time.Sleep(1100 * time.Millisecond)
		m := l.scrape(t)
		if turnd_kernelTotals(m) == turnd_kernelTotals(prev) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("offload counters still moving after 10 s")
		}
		prev = m
	}
}

// startEchoPeer runs turnutils_peer (UDP echo) in the peer namespace.
func (l *turnd_offloadLab) startEchoPeer(t *testing.T, bin string) netip.AddrPort {
	t.Helper()
	const port = 3480 // the peer namespace is ours alone
	cmd := netlab.Command(l.topo.Peer, bin, "-L", netlab.PeerAddr.String(), "-p", strconv.Itoa(port))
	out := &turnd_logBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start turnutils_peer: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill() // by pid
		<-exited
	})
	addr := netip.AddrPortFrom(netlab.PeerAddr, port)
	// Prove it up from the relay namespace (the only one with a route).
	var up bool
	must(t, netlab.Do(l.topo.Relay, func() error { up = turnd_echoes(addr.String(), exited); return nil }))
	if !up {
		t.Fatalf("turnutils_peer in %s never answered:\n%s", l.topo.Peer, out.String())
	}
	return addr
}

// uclientCase runs turnutils_uclient in the client namespace: 2 flows x
// 1,000 channel packets of 1,200 bytes to the echo peer, with captures at
// both receivers. kernel says whether the senders hand full checksums, in
// which case the kernel path must carry the channel traffic.
func (l *turnd_offloadLab) uclientCase(t *testing.T, bin string, peer netip.AddrPort, kernel bool) {
	const (
		flows    = 2
		packets  = 1000
		pktBytes = 1200
	)
	capClient, err := netlab.NewCapture(l.topo.Client, l.topo.ClientDev)
	must(t, err)
	defer capClient.Close()
	capPeer, err := netlab.NewCapture(l.topo.Peer, l.topo.PeerDev)
	must(t, err)
	defer capPeer.Close()
	nss := []string{l.topo.Client, l.topo.Relay, l.topo.Peer}
	csum0 := make([][2]uint64, len(nss))
	for i, ns := range nss {
		v4, v6, err := netlab.UDPCsumErrors(ns)
		must(t, err)
		csum0[i] = [2]uint64{v4, v6}
	}
	m0 := l.scrape(t)

	args := []string{"-c", "-m", strconv.Itoa(flows), "-n", strconv.Itoa(packets),
		"-l", strconv.Itoa(pktBytes), "-z", "3",
		"-u", turnd_labUser, "-w", turnd_labPass,
		"-e", peer.Addr().String(), "-r", strconv.Itoa(int(peer.Port())),
		"-p", strconv.Itoa(turnd_labPort), netlab.ListenAddr.String()}
	res := turnd_runUclient(t, "ip", append([]string{"netns", "exec", l.topo.Client, bin}, args...))
	if res.sent != flows*packets || res.received != res.sent || res.lost != 0 || res.sendDropped != 0 {
		t.Errorf("uclient: sent %d, received %d, lost %d, send dropped %d; want %d each way, none lost",
			res.sent, res.received, res.lost, res.sendDropped, flows*packets)
	}

	m := l.settledTotals(t)
	k := turnd_kernelTotals(m).sub(turnd_kernelTotals(m0))
	r0p, r0c := turnd_relayedTotals(m0)
	rp, rc := turnd_relayedTotals(m)
	allPeer, allClient := rp-r0p, rc-r0c
	t.Logf("kernel %+v; all paths %v to peer, %v to client; passed to user space: %s",
		k, allPeer, allClient, turnd_passedDelta(m0, m))
	// Every channel message was relayed exactly once, by one path or the
	// other (turnd_relayed_packets_total counts both).
	if allPeer != float64(res.sent) || allClient != float64(res.received) {
		t.Errorf("turnd relayed %v packets to the peer and %v to the client; want %d and %d",
			allPeer, allClient, res.sent, res.received)
	}
	if k.toPeerPkts > allPeer || k.toClientPkts > allClient {
		t.Errorf("kernel counters %+v exceed all relayed packets %v/%v", k, allPeer, allClient)
	}
	// Bytes are application bytes: 1,200 per packet, whatever the headers.
	if k.toPeerBytes != k.toPeerPkts*pktBytes || k.toClientBytes != k.toClientPkts*pktBytes {
		t.Errorf("kernel bytes %v/%v for %v/%v packets, want %d bytes each", k.toPeerBytes, k.toClientBytes,
			k.toPeerPkts, k.toClientPkts, pktBytes)
	}
	if kernel {
		// A flow's first packets may beat the binding into the kernel (it is
		// installed from pion's channel event); the rest must be offloaded.
		if k.toPeerPkts < 0.9*float64(res.sent) || k.toClientPkts < 0.9*float64(res.received) {
			t.Errorf("the kernel carried %v/%v of %d packets each way, want nearly all", k.toPeerPkts, k.toClientPkts, res.sent)
		}
	} else if k.toPeerPkts != 0 || k.toClientPkts != 0 {
		// Default veth offloads: CHECKSUM_PARTIAL to remote hosts stays in
		// user space (docs/offload.md).
		t.Errorf("kernel carried %v/%v packets from CHECKSUM_PARTIAL senders, want 0", k.toPeerPkts, k.toClientPkts)
	}

	relayed := netip.AddrFrom4(netlab.RelayAddr.As4())
	for _, c := range []struct {
		name  string
		cap   *netlab.Capture
		match func(src, dst netip.AddrPort) bool
		want  int
	}{
		{"peer", capPeer, func(src, dst netip.AddrPort) bool {
			return src.Addr() == relayed && dst == peer
		}, res.sent},
		{"client", capClient, func(src, dst netip.AddrPort) bool {
			return src == netip.AddrPortFrom(netlab.ListenAddr, turnd_labPort) && dst.Addr() == netlab.ClientAddr
		}, res.received},
	} {
		frames, dropped, err := c.cap.Drain()
		must(t, err)
		r := netlab.VerifyUDP(frames, c.match)
		for i, b := range r.Bad {
			if i == 10 {
				t.Errorf("... %d bad checksums in all", len(r.Bad))
				break
			}
			t.Errorf("at the %s: %s", c.name, b)
		}
		// At least: relayed ChannelData plus the STUN answers turnd sends.
		if dropped != 0 || r.Checked < c.want {
			t.Errorf("captured %d datagrams at the %s (capture dropped %d), want at least %d", r.Checked, c.name, dropped, c.want)
		}
		t.Logf("%s: %d datagrams checked, %d frames marked checksum-not-ready, %d segmentation offload frames", c.name, r.Checked, r.NotReady, r.Merged)
	}
	for i, ns := range nss {
		v4, v6, err := netlab.UDPCsumErrors(ns)
		must(t, err)
		if v4 != csum0[i][0] || v6 != csum0[i][1] {
			t.Errorf("%s: Udp InCsumErrors %d -> %d, Udp6InCsumErrors %d -> %d", ns, csum0[i][0], v4, csum0[i][1], v6)
		}
	}
	if t.Failed() {
		t.Logf("uclient output:\n%s", res.output)
	}
}

// turnd_seqFlow is one TURN client in the client namespace with a channel
// to an echo socket in the peer namespace.
type turnd_seqFlow struct {
	conn   net.PacketConn
	client *turn.Client
	relay  net.PacketConn
	peer   *net.UDPConn
	next   uint32 // next sequence number to send
}

func (l *turnd_offloadLab) newSeqFlow(t *testing.T) *turnd_seqFlow {
	t.Helper()
	f := &turnd_seqFlow{}
	must(t, netlab.Do(l.topo.Client, func() (err error) {
		f.conn, err = net.ListenPacket("udp4", netlab.ClientAddr.String()+":0")
		return err
	}))
	t.Cleanup(func() { f.conn.Close() })
	must(t, netlab.Do(l.topo.Peer, func() (err error) {
		f.peer, err = net.ListenUDP("udp4", &net.UDPAddr{IP: netlab.PeerAddr.AsSlice()})
		return err
	}))
	t.Cleanup(func() { f.peer.Close() })
	server := netip.AddrPortFrom(netlab.ListenAddr, turnd_labPort).String()
	cl, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server, Conn: f.conn,
		Username: turnd_labUser, Password: turnd_labPass, Realm: turnd_labRealm,
	})
	must(t, err)
	f.client = cl
	t.Cleanup(cl.Close)
	must(t, cl.Listen())
	f.relay, err = cl.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	t.Cleanup(func() { f.relay.Close() })
	return f
}

// step sends the next sequence number through the relay, echoes it at the
// peer and reads it back: lockstep, so exactly one datagram is in flight
// and each must come back once, intact and in order.
func (f *turnd_seqFlow) step() error {
	seq := f.next
	f.next++
	msg := make([]byte, 200)
	binary.BigEndian.PutUint32(msg, seq)
	copy(msg[4:], "turnd-offload-seq")
	if _, err := f.relay.WriteTo(msg, f.peer.LocalAddr()); err != nil {
		return fmt.Errorf("seq %d: send: %w", seq, err)
	}
	buf := make([]byte, 1500)
	_ = f.peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := f.peer.ReadFromUDP(buf)
	if err != nil {
		return fmt.Errorf("seq %d: at the peer: %w", seq, err)
	}
	if got := binary.BigEndian.Uint32(buf); n != len(msg) || got != seq {
		return fmt.Errorf("seq %d: the peer got %d bytes with seq %d", seq, n, got)
	}
	if _, err := f.peer.WriteToUDP(buf[:n], from); err != nil {
		return fmt.Errorf("seq %d: echo: %w", seq, err)
	}
	_ = f.relay.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err = f.relay.ReadFrom(buf)
	if err != nil {
		return fmt.Errorf("seq %d: echo at the client: %w", seq, err)
	}
	if got := binary.BigEndian.Uint32(buf); n != len(msg) || got != seq {
		return fmt.Errorf("seq %d: the client got %d bytes with seq %d back", seq, n, got)
	}
	return nil
}

// switchCase runs two sequenced flows while SIGHUP moves turnd from tc to
// off and back. The flows stop at checkpoints, where the test reads the
// kernel's counters. A phase with a switch goes on until turnd reports the
// new state and perPhase rounds more, so traffic flows before, during and
// after each switch; the phases without a switch must be carried wholly by
// the kernel (tc) or wholly by user space (off). Lockstep means one
// datagram in flight per flow: loss, duplication and corruption are
// caught; reordering between the two paths at a switch cannot occur by
// construction and is not what this case measures.
func (l *turnd_offloadLab) switchCase(t *testing.T) {
	flows := []*turnd_seqFlow{l.newSeqFlow(t), l.newSeqFlow(t)}
	const (
		perPhase = 500 // lockstep rounds per flow after a phase's switch
		phases   = 6
	)
	checkpoint := make(chan struct{})
	// resume starts the next phase, which lasts until the channel it
	// carries is closed and perPhase rounds more have run.
	resume := make(chan chan struct{})
	quit := make(chan struct{})
	finished := make(chan struct{})
	var flowErr error // written before finished is closed
	go func() {
		defer close(finished)
		until := make(chan struct{})
		close(until)
		for range phases {
			after := 0 // rounds since until was closed
			for rounds := 0; after < perPhase; rounds++ {
				if turnd_closed(until) {
					after++
				}
				if turnd_closed(quit) {
					return
				}
				if rounds >= 100*perPhase {
					flowErr = fmt.Errorf("a phase ran %d rounds without its switch completing", rounds)
					return
				}
				for _, f := range flows {
					if flowErr = f.step(); flowErr != nil {
						return
					}
				}
			}
			select {
			case checkpoint <- struct{}{}:
			case <-quit:
				return
			}
			select {
			case until = <-resume:
			case <-quit:
				return
			}
		}
	}()
	defer func() {
		close(quit)
		<-finished
		if flowErr != nil {
			t.Error(flowErr)
		}
	}()
	// at waits for the flows' next checkpoint and returns the settled
	// kernel counters there.
	at := func(what string) turnd_offloadTotals {
		t.Helper()
		select {
		case <-checkpoint:
		case <-finished:
			t.Fatalf("%s: flows ended early: %v", what, flowErr)
		case <-time.After(60 * time.Second):
			t.Fatalf("%s: no checkpoint within 60 s", what)
		}
		return turnd_kernelTotals(l.settledTotals(t))
	}
	next := func() {
		done := make(chan struct{})
		close(done)
		resume <- done
	}
	switchMidFlow := func(mode string) {
		t.Helper()
		switched := make(chan struct{})
		resume <- switched
		l.switchOffload(t, mode)
		close(switched)
	}

	// Phase 1 binds the channels.
	k0 := at("warm-up")
	next()
	k1 := at("offload tc")
	switchMidFlow("off")
	k2 := at("switching off")
	next()
	k3 := at("offload off")
	switchMidFlow("tc")
	k4 := at("switching on")
	next()
	k5 := at("offload tc again")

	t.Logf("kernel packets to peer/client per phase: tc %v/%v, switching off %v/%v, off %v/%v, switching on %v/%v, tc again %v/%v",
		k1.toPeerPkts-k0.toPeerPkts, k1.toClientPkts-k0.toClientPkts,
		k2.toPeerPkts-k1.toPeerPkts, k2.toClientPkts-k1.toClientPkts,
		k3.toPeerPkts-k2.toPeerPkts, k3.toClientPkts-k2.toClientPkts,
		k4.toPeerPkts-k3.toPeerPkts, k4.toClientPkts-k3.toClientPkts,
		k5.toPeerPkts-k4.toPeerPkts, k5.toClientPkts-k4.toClientPkts)
	want := float64(len(flows) * perPhase)
	for _, ph := range []struct {
		name     string
		d        turnd_offloadTotals
		inKernel float64
	}{
		{"offload tc", k1.sub(k0), want},
		{"offload off", k3.sub(k2), 0},
		{"offload tc again", k5.sub(k4), want},
	} {
		// A datagram whose full checksum happens to equal its pseudo-header
		// sum (about 1 in 65,536) is left to user space by design; it is
		// counted as checksum_partial, so the shares stay exact.
		d := ph.d
		if d.toPeerPkts > ph.inKernel || d.toClientPkts > ph.inKernel || d.lookalikes > 2 ||
			d.toPeerPkts+d.toClientPkts+d.lookalikes != 2*ph.inKernel {
			t.Errorf("%s: the kernel carried %v/%v packets to peer/client (%v checksum lookalikes passed), want %v of %v each way",
				ph.name, d.toPeerPkts, d.toClientPkts, d.lookalikes, ph.inKernel, want)
		}
	}
	// Nothing extra arrived anywhere: a duplicate would be waiting here.
	for _, f := range flows {
		for _, c := range []net.PacketConn{f.relay, f.peer} {
			_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if n, from, err := c.ReadFrom(make([]byte, 1500)); err == nil {
				t.Errorf("a duplicate or stray datagram of %d bytes from %v", n, from)
			}
		}
	}
}

// turnd_closed reports whether c is closed, without waiting.
func turnd_closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
