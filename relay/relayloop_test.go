//go:build linux

package relay

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/pion/stun/v4"
	"github.com/rtcsuite/rtcsuite/internal/turnrest"
)

// The UDP listener sockets are read by the relay loops (off Go's poller).
// Gathered (the start), the first loop reads every socket; spread, each
// listener socket and its clients' relay sockets go to loop slot%n;
// gathered again, all return to the first. Close ends every loop and
// returns its descriptors.
func TestRelayLoopsReadListeners(t *testing.T) {
	r := newFPRig(t, nil)
	r.bind(0x4001)
	r.roundTrip(0x4001, 100)
	fp := r.srv.fast
	if len(fp.loops) != 2 {
		t.Fatalf("%d relay loops, want one per UDP socket (2)", len(fp.loops))
	}
	b := r.binding(0x4001)
	if b == nil || b.rf.listener == nil {
		t.Fatal("no fast-path binding for the rig's channel")
	}
	lf := b.rf.listener.fast
	if !lf.fed || lf.sock.raw == nil || !lf.sock.raw.adopted {
		t.Fatalf("listener socket not adopted by a loop (fed %v)", lf.fed)
	}
	if b.rf.sock.raw.slot != lf.sock.raw.slot {
		t.Error("the client's relay socket does not follow its listener socket")
	}
	placed := func(spread bool) {
		t.Helper()
		listeners, relays := map[*relayLoop]int{}, 0
		for _, l := range fp.loops {
			l.mu.Lock()
			for ls := range l.socks.all() {
				want := fp.loops[0]
				if spread {
					want = fp.loops[ls.raw().slot%uint32(len(fp.loops))]
				}
				if l != want {
					t.Errorf("spread %v: a socket (slot %d) read by loop %d, want %d", spread, ls.raw().slot, l.idx, want.idx)
				}
				if ls.lf != nil {
					listeners[l]++
				}
				if ls.rf == b.rf {
					relays++
				}
			}
			l.mu.Unlock()
		}
		if n := listeners[fp.loops[0]] + listeners[fp.loops[1]]; n != 2 {
			t.Errorf("loops read %d listener sockets, want 2", n)
		}
		if spread && (listeners[fp.loops[0]] != 1 || listeners[fp.loops[1]] != 1) {
			t.Errorf("spread: listener sockets per loop %d and %d, want one each", listeners[fp.loops[0]], listeners[fp.loops[1]])
		}
		if relays != 1 {
			t.Errorf("the client's relay socket is read by %d loops", relays)
		}
	}
	placed(false)
	for _, spread := range []bool{true, false} {
		fp.setSpread(spread)
		for _, l := range fp.loops {
			l.rebalance(nil)
		}
		placed(spread)
		r.roundTrip(0x4001, 100)
	}

	loops := fp.loops
	if err := r.srv.Close(); err != nil {
		t.Fatal(err)
	}
	// fp.loops stays listed (pion's read loops may still read it); each
	// loop is closed and refuses new sockets.
	late, err := listenRawUDP("udp4", netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	for i, l := range loops {
		l.mu.Lock()
		if !l.closed {
			t.Errorf("loop %d not closed", i)
		}
		l.mu.Unlock()
		if err := l.register(late, loopSock{}); !errors.Is(err, errNoLoop) {
			t.Errorf("loop %d took a socket after Close: %v", i, err)
		}
	}
	lf.sock.raw.mu.RLock()
	closed := lf.sock.raw.closed
	lf.sock.raw.mu.RUnlock()
	if !closed {
		t.Error("listener socket still open after Close")
	}
}

// Sockets move between loops while datagrams flow both ways, and every
// datagram arrives, once and in order: a move loses no edge-triggered
// wake-up.
func TestRelayLoopsMoveUnderTraffic(t *testing.T) {
	r := newFPRig(t, nil)
	r.bind(0x4004)
	r = r.clientOnSlot(1, 0x4005) // gathered and spread put it on different loops
	r.roundTrip(0x4005, 100)
	fp := r.srv.fast
	stop := make(chan struct{})
	moved := make(chan int)
	go func() {
		n := 0
		defer func() { moved <- n }()
		for i := 0; i < 2000; i++ { // bounded; usually ended by stop
			select {
			case <-stop:
				return
			default:
			}
			fp.setSpread(i%2 == 0)
			for _, l := range fp.loops {
				l.rebalance(nil)
			}
			n++
		}
	}()
	const rounds = 200
	for i := 0; i < rounds; i++ {
		p := []byte(fmt.Sprintf("move %d", i))
		r.sendC2P(0x4005, p)
		if got, err := recv(r.peer, 10*time.Second); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("client→peer %d: got %q, %v", i, got, err)
		}
		r.sendP2C(p)
		if got, err := recv(r.client, 10*time.Second); err != nil || !bytes.Equal(got, channelData(0x4005, p)) {
			t.Fatalf("peer→client %d: got %q, %v", i, got, err)
		}
	}
	close(stop)
	if n := <-moved; n == 0 {
		t.Fatal("no mode change ran during the traffic")
	}
}

// The loops hold no P while they wait: with GOMAXPROCS 1 (an embedding
// program's own sizing, as signal --procs auto may set) two loops and the
// rest of the server share one P and still relay both ways.
func TestRelayLoopsOneProc(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) }) // after the server's own cleanup
	r := newFPRig(t, nil)
	r.bind(0x4002)
	runtime.GOMAXPROCS(1)
	for i := 0; i < 5; i++ {
		r.roundTrip(0x4002, 500)
	}
}

// An idle loop waits parked in Go's poller (goroutine state "IO wait"), not
// in a system call that would hold a thread and a P. The first loop's
// raw wait (rawwait_linux.go, on by default) ends after Config.RawWait,
// even when stopping the world for runtime.Stack interrupts it again and
// again.
func TestRelayLoopsParkInPoller(t *testing.T) {
	r := newFPRig(t, nil)
	r.bind(0x4003)
	r.roundTrip(0x4003, 10)
	awaitLoopsParked(t, len(r.srv.fast.loops)) // rawwait_test.go
}

// clientOnSlot returns a rig on r's server and peer with a client of its
// own (an allocation, channel ch bound to the peer) whose datagrams the
// server reads on listener socket slot: the client's source address
// (127.0.0.x) picks the listener socket.
func (r *fpRig) clientOnSlot(slot uint32, ch uint16) *fpRig {
	t := r.t
	t.Helper()
	for x := 2; x < 34; x++ {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(x))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cl := &rawClient{t: t, conn: c, srv: r.srv.Addr("udp"), user: "alice",
			key: turnrest.LongTermKey("alice", r.srv.cfg.Realm, "wonderland")}
		resp := cl.do(stun.MethodAllocate, udpTransport)
		if code := errorCode(t, resp); code != 0 {
			t.Fatalf("allocate from %v: %d", c.LocalAddr(), code)
		}
		r2 := &fpRig{t: t, srv: r.srv, obs: r.obs, cl: cl, client: c, relay: relayedAddr(t, resp).AddrPort(),
			peer: r.peer, peerAP: r.peerAP}
		r2.bind(ch)
		if b := r2.binding(ch); b != nil && b.rf.sock.raw.slot%uint32(len(r.srv.fast.loops)) == slot {
			return r2
		}
	}
	t.Fatalf("no client source address in 127.0.0.2-33 lands on listener socket %d", slot)
	return nil
}

// The first loop alone busy past loopSpreadBusy for loopSpreadAfter
// windows in a row spreads the loops; all together under loopGatherBusy
// for loopGatherAfter windows gathers them; a loop whose figure is stale
// (parked all along) counts as idle. The loops here are bare: windows end
// in calls of woke, as at a wake-up, with no socket and no goroutine.
func TestRelayLoopsSpreadDecision(t *testing.T) {
	fp := &fastPath{s: newTestServer(t, nil)}
	l0, l1 := &relayLoop{fp: fp, idx: 0}, &relayLoop{fp: fp, idx: 1}
	fp.loops = []*relayLoop{l0, l1}
	now := monoNow()
	// One window of a loop, busy per mille, ended by a wake-up.
	step := func(l *relayLoop, busy int64) {
		l.load.winStart = now
		now += loopWindowNS
		l.load.busyNS = busy * loopWindowNS / 1000
		l.woke(now)
	}
	for i := 1; i < loopSpreadAfter; i++ {
		step(l0, loopSpreadBusy+1)
	}
	step(l1, 1000)           // only the first loop's figure spreads
	step(l0, loopSpreadBusy) // not past: the streak starts again
	for i := 1; i < loopSpreadAfter; i++ {
		step(l0, 1000)
	}
	if fp.loopSpread.Load() {
		t.Fatal("spread before the first loop was busy for enough windows in a row")
	}
	step(l0, 1000)
	if !fp.loopSpread.Load() {
		t.Fatal("the first loop busy for enough windows did not spread the loops")
	}

	// Spread: l1 busy, l0 reports little; the sum keeps them spread.
	for i := 0; i < 2*loopGatherAfter; i++ {
		step(l1, loopGatherBusy)
		step(l0, 0)
	}
	if !fp.loopSpread.Load() {
		t.Fatal("gathered while the loops together were busy enough for two")
	}
	// l1 goes quiet and then stale (parked); l0 alone decides.
	step(l1, loopGatherBusy/2)
	now += loopLoadStaleFor
	for i := 1; i < loopGatherAfter; i++ {
		step(l0, loopGatherBusy-1)
	}
	if !fp.loopSpread.Load() {
		t.Fatal("gathered before enough quiet windows")
	}
	step(l0, loopGatherBusy-1)
	if fp.loopSpread.Load() {
		t.Fatal("quiet loops did not gather")
	}
}

// A loop parks when an epoll_wait finds its set empty; that loses no
// wake-up: datagrams that arrive just then, after the empty epoll_wait and
// before the loop parks, on the socket it just drained (the listener) and
// on one it did not read in that wake-up (the relay socket), are relayed
// without any further traffic. With GOMAXPROCS 1 no other thread can run
// Go's netpoll meanwhile, so the readiness must survive until the loop's
// own park.
func TestRelayLoopNoLostWakeup(t *testing.T) {
	for _, procs := range []int{0, 1} {
		t.Run(fmt.Sprintf("procs=%d", procs), func(t *testing.T) {
			before := runtime.GOMAXPROCS(0)
			t.Cleanup(func() { runtime.GOMAXPROCS(before) })
			r := newFPRig(t, nil)
			const ch = 0x4004
			r.bind(ch)
			r.roundTrip(ch, 100) // everything set up; the loops are parked
			if procs > 0 {
				runtime.GOMAXPROCS(procs)
			}
			late := []byte("late client→peer")
			lateP2C := []byte("late peer→client")
			var fired atomic.Bool
			sent := make(chan error, 1)
			hook := func() {
				if !fired.CompareAndSwap(false, true) {
					return
				}
				// Synchronous on loopback: when these return, the datagrams
				// are queued at the server's sockets.
				_, err1 := r.client.WriteToUDPAddrPort(channelData(ch, late), toAddrPort(r.cl.srv))
				_, err2 := r.peer.WriteToUDPAddrPort(lateP2C, r.relay)
				sent <- errors.Join(err1, err2)
			}
			afterDrain.Store(&hook)
			t.Cleanup(func() { afterDrain.Store(nil) })

			first := []byte("first")
			r.sendC2P(ch, first) // one datagram: a wake-up with one ready socket
			// The hook may run in an earlier wake-up than the one "first"
			// causes, so the two may come in either order.
			seen := map[string]bool{}
			for range 2 {
				got, err := recv(r.peer, 5*time.Second)
				if err != nil {
					t.Fatalf("peer: %v after %d of 2 datagrams (%v)", err, len(seen), seen)
				}
				seen[string(got)] = true
			}
			if !seen[string(first)] || !seen[string(late)] {
				t.Fatalf("peer got %v, want %q and %q", seen, first, late)
			}
			select {
			case err := <-sent:
				if err != nil {
					t.Fatal(err)
				}
			default:
				t.Fatal("no wake-up reached the park point (the path under test did not run)")
			}
			got, err := recv(r.client, 5*time.Second)
			if want := channelData(ch, lateP2C); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("client: got % x (%v), want % x: a datagram that arrived just before the loop parked was not relayed", got, err, want)
			}
		})
	}
}

// A wake-up that finds a relay socket and a listener socket ready drains
// the listener first, whatever order they became ready in: its
// client→peer datagram goes out before the loop spends a recvmmsg on a
// peer→client one that waits for the end of the wake-up anyway.
func TestRelayLoopDrainsClientsFirst(t *testing.T) {
	r := newFPRig(t, nil)
	const ch = 0x4005
	r.bind(ch)
	r.roundTrip(ch, 100)
	var fired atomic.Bool
	sent := make(chan error, 1)
	park := func() {
		if !fired.CompareAndSwap(false, true) {
			return
		}
		// The relay socket first, so epoll's ready list has it first.
		// Synchronous on loopback: both are queued when these return,
		// before this loop (the only one reading) wakes again.
		_, err1 := r.peer.WriteToUDPAddrPort([]byte("p2c"), r.relay)
		_, err2 := r.client.WriteToUDPAddrPort(channelData(ch, []byte("c2p")), toAddrPort(r.cl.srv))
		sent <- errors.Join(err1, err2)
	}
	order := make(chan string, 16)
	seen := func(ls loopSock) {
		if !fired.Load() {
			return
		}
		kind := "stream"
		switch {
		case ls.rf != nil:
			kind = "relay"
		case ls.lf != nil:
			kind = "listener"
		}
		select {
		case order <- kind:
		default:
		}
	}
	afterDrain.Store(&park)
	drainOrder.Store(&seen)
	t.Cleanup(func() { afterDrain.Store(nil); drainOrder.Store(nil) })

	// The loops are parked: a datagram wakes the first, and the hook runs
	// when it parks again.
	r.sendC2P(ch, []byte("wake"))
	select {
	case err := <-sent:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the loop never parked after a wake-up (the path under test did not run)")
	}
	for _, want := range []string{"wake", "c2p"} {
		if got, err := recv(r.peer, 5*time.Second); err != nil || string(got) != want {
			t.Fatalf("peer: got %q (%v), want %q", got, err, want)
		}
	}
	want := channelData(ch, []byte("p2c"))
	if got, err := recv(r.client, 5*time.Second); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("client: got % x (%v), want % x", got, err, want)
	}
	var drained []string
	for len(drained) < 2 {
		select {
		case k := <-order:
			drained = append(drained, k)
		case <-time.After(5 * time.Second):
			t.Fatalf("drains seen: %v, want a listener and a relay socket", drained)
		}
	}
	if drained[0] != "listener" || drained[1] != "relay" {
		t.Fatalf("drain order %v, want [listener relay]: the wake-up read the relay socket before the listener", drained)
	}
}

// A relay socket's per-datagram fields share its first cache line, and the
// struct fills a size class of whole cache lines (192 bytes), so every
// rawUDP starts on one.
func TestRawUDPLayout(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the layout is laid out for 64-bit platforms")
	}
	var c rawUDP
	if got := unsafe.Sizeof(c); got <= 176 || got > 192 {
		t.Errorf("rawUDP is %d bytes, want 177-192 (size class 192)", got)
	}
	if end := unsafe.Offsetof(c.closed) + 1; end > 64 {
		t.Errorf("rawUDP's hot fields end at %d, past the first cache line", end)
	}
}
