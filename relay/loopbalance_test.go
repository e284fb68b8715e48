//go:build linux

package relay

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"
)

// planBalance evens the loops' datagrams by moving relay sockets off the
// busiest loop, few at a time, and leaves loads that are even enough, too
// small to matter, or cannot be evened by whole sockets as they are.
func TestLoopBalancePlan(t *testing.T) {
	// socks builds relay sockets: loops[i] is the loop of the i-th, n[i]
	// its datagrams.
	socks := func(loops []int, n []int64) []balanceSock {
		s := make([]balanceSock, len(loops))
		for i := range loops {
			s[i] = balanceSock{from: loops[i], loop: loops[i], n: n[i]}
		}
		return s
	}
	rep := func(v, k int) []int {
		s := make([]int, k)
		for i := range s {
			s[i] = v
		}
		return s
	}
	rep64 := func(v int64, k int) []int64 {
		s := make([]int64, k)
		for i := range s {
			s[i] = v
		}
		return s
	}
	cases := []struct {
		name      string
		fixed     []int64 // listener sockets' datagrams per loop
		loops     []int
		n         []int64
		wantLoads []int64 // after the plan
		wantMoves int
	}{
		{
			// The saturation bench: 16 equal flows, 10 on listener socket 0
			// (steering), each relay socket with its listener's loop.
			name:  "bench: 10 of 16 flows on loop 0",
			fixed: []int64{10_000, 6_000},
			loops: append(rep(0, 10), rep(1, 6)...), n: rep64(1_000, 16),
			wantLoads: []int64{17_000, 15_000}, wantMoves: 3,
		},
		{
			name:  "balanced already: nothing moves",
			fixed: []int64{8_000, 8_000},
			loops: append(rep(0, 8), rep(1, 8)...), n: rep64(1_000, 16),
			wantLoads: []int64{16_000, 16_000}, wantMoves: 0,
		},
		{
			name:  "gap within the slack: nothing moves",
			fixed: []int64{8_500, 7_500},
			loops: append(rep(0, 8), rep(1, 8)...), n: rep64(1_000, 16),
			wantLoads: []int64{16_500, 15_500}, wantMoves: 0,
		},
		{
			name:  "too few datagrams to matter",
			fixed: []int64{500, 0},
			loops: []int{0, 0}, n: []int64{200, 200},
			wantLoads: []int64{900, 0}, wantMoves: 0,
		},
		{
			// One heavy flow (video) and light ones (audio): the heavy one
			// moves, not a dozen light ones.
			name:  "one big socket halves the gap",
			fixed: []int64{6_000, 2_000},
			loops: []int{0, 0, 0, 0, 0}, n: []int64{4_000, 100, 100, 100, 100},
			wantLoads: []int64{6_400, 6_000}, wantMoves: 1,
		},
		{
			// A relay socket carrying as much as the gap or more would only
			// make the other loop the busy one: it stays.
			name:  "no socket can narrow the gap",
			fixed: []int64{0, 10_000},
			loops: []int{0}, n: []int64{30_000},
			wantLoads: []int64{30_000, 10_000}, wantMoves: 0,
		},
		{
			// Loop 0's listener sockets alone are over a third: all its
			// relay sockets leave, and the rest even out below it.
			name:  "three loops",
			fixed: []int64{9_000, 3_000, 0},
			loops: append(rep(0, 9), rep(1, 3)...), n: rep64(1_000, 12),
			wantLoads: []int64{9_000, 8_000, 7_000}, wantMoves: 9,
		},
		{
			name:  "moves per period are bounded",
			fixed: []int64{0, 0},
			loops: rep(0, 400), n: rep64(10, 400),
			wantLoads: []int64{4_000 - 10*loopBalanceMoves, 10 * loopBalanceMoves}, wantMoves: loopBalanceMoves,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := socks(tc.loops, tc.n)
			fixed := slices.Clone(tc.fixed)
			moves := planBalance(fixed, s)
			if moves != tc.wantMoves || !slices.Equal(fixed, tc.wantLoads) {
				t.Fatalf("moves %d, loads %v; want %d, %v", moves, fixed, tc.wantMoves, tc.wantLoads)
			}
			// The loads it reports are the sockets' where it put them.
			got := slices.Clone(tc.fixed)
			moved := 0
			for _, x := range s {
				got[x.loop] += x.n
				if x.loop != x.from {
					moved++
				}
			}
			if !slices.Equal(got, fixed) || moved > moves {
				t.Fatalf("sockets placed for loads %v (%d moved), plan says %v (%d moves)", got, moved, fixed, moves)
			}
		})
	}
}

// The balancer counts what the loops read while spread and places relay
// sockets by it: two clients steered to listener socket 0 load loop 0 in
// both directions, loop 1 reads nothing, and the balancer moves both relay
// sockets to loop 1 (each carries half the gap); the loops move them at
// their next wake-up, and traffic keeps flowing in both directions. The
// first balance after the loops spread only starts counting.
func TestLoopBalanceMovesRelaySockets(t *testing.T) {
	r := newFPRig(t, func(c *Config) { c.UDPSockets = 2 })
	fp := r.srv.fast
	if len(fp.loops) != 2 {
		t.Skipf("%d relay loops (want 2)", len(fp.loops))
	}
	a := r.clientOnSlot(0, 0x4010)
	b := r.clientOnSlot(0, 0x4011)
	now := holdSpread(fp)
	fp.balanceLoops(now) // starts counting at the new mode
	const rounds = 600   // each way, per client: loopBalanceMin in total and more
	for i := 0; i < rounds; i++ {
		a.roundTrip(0x4010, 64)
		b.roundTrip(0x4011, 64)
	}
	for _, x := range []*fpRig{a, b} {
		c := x.binding(uint16(0x4010 + boolInt(x == b))).rf.sock.raw
		if got := fp.loopOf(c); got != fp.loops[0] {
			t.Fatalf("relay socket of a client on listener socket 0 starts on loop %d", got.idx)
		}
	}
	now += loopBalanceEvery
	fp.balanceLoops(now)
	for _, x := range []*fpRig{a, b} {
		c := x.binding(uint16(0x4010 + boolInt(x == b))).rf.sock.raw
		if p := c.place.Load(); p != 2 {
			t.Fatalf("relay socket %v placed on %d, want loop 1 (2)", c.local, p)
		}
	}
	// The loops move them at their next wake-ups, which traffic brings.
	for _, x := range []*fpRig{a, b} {
		ch := uint16(0x4010 + boolInt(x == b))
		c := x.binding(ch).rf.sock.raw
		stop := make(chan struct{})
		done := make(chan bool, 1)
		go func() { done <- awaitMove(c, fp.loops[1], stop) }()
		ok := false
		for i := 0; i < 100 && !ok; i++ { // bounded: a wake-up or two is enough
			x.roundTrip(ch, 1200)
			select {
			case ok = <-done:
			default:
			}
		}
		close(stop)
		if !ok && !<-done {
			t.Fatalf("relay socket %v not moved to loop 1 in 100 round trips", c.local)
		}
	}
	a.roundTrip(0x4010, 1200)
	b.roundTrip(0x4011, 1200)

	// Gathered, the placement does not apply: every socket is loop 0's.
	fp.setSpread(false)
	if c := a.binding(0x4010).rf.sock.raw; fp.loopOf(c) != fp.loops[0] {
		t.Fatal("a placed relay socket left loop 0 while the loops were gathered")
	}
	a.roundTrip(0x4010, 1200)
}

// holdSpread spreads the loops and keeps them so while the test runs: a
// listener backlog "in the future" holds them spread (decide), and a
// balance "in the future" keeps the loops' own balancing out of the test's
// way. It returns that future instant for the test's own balanceLoops calls.
func holdSpread(fp *fastPath) int64 {
	future := monoNow() + int64(time.Hour)
	fp.loopBal.at.Store(future - loopBalanceEvery)
	fp.loops[0].load.backlogAt.Store(future)
	fp.setSpread(true)
	return future
}

// awaitMove waits until want reads c, or stop closes (false). Only a
// socket's loop moves it, at a wake-up: the test's traffic wakes them.
func awaitMove(c *rawUDP, want *relayLoop, stop <-chan struct{}) bool {
	for {
		c.mu.RLock()
		on := c.loop
		c.mu.RUnlock()
		if on == want {
			return true
		}
		select {
		case <-stop:
			return false
		default:
			runtime.Gosched()
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Relay sockets moved by placement while both directions carry traffic,
// the listener socket staying on its loop: every datagram arrives once and
// in order.
func TestLoopBalanceMoveUnderTraffic(t *testing.T) {
	r := newFPRig(t, func(c *Config) { c.UDPSockets = 2 })
	fp := r.srv.fast
	if len(fp.loops) != 2 {
		t.Skipf("%d relay loops (want 2)", len(fp.loops))
	}
	r = r.clientOnSlot(0, 0x4012)
	r.roundTrip(0x4012, 100)
	c := r.binding(0x4012).rf.sock.raw
	holdSpread(fp)
	stop := make(chan struct{})
	moved := make(chan int)
	go func() {
		n := 0
		defer func() { moved <- n }()
		for i := 0; i < 4000; i++ { // bounded; usually ended by stop
			to := i % 2 // loop 0, loop 1, ...
			c.place.Store(int32(to) + 1)
			fp.loopBal.placed.Add(1)
			if !awaitMove(c, fp.loops[to], stop) {
				return
			}
			n++
		}
	}()
	const rounds = 300
	for i := 0; i < rounds; i++ {
		p := []byte(fmt.Sprintf("placed %d", i))
		r.sendC2P(0x4012, p)
		r.sendP2C(p)
		if got, err := recv(r.peer, 10*time.Second); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("client→peer %d: got %q, %v", i, got, err)
		}
		if got, err := recv(r.client, 10*time.Second); err != nil || !bytes.Equal(got, channelData(0x4012, p)) {
			t.Fatalf("peer→client %d: got %q, %v", i, got, err)
		}
	}
	close(stop)
	if n := <-moved; n == 0 {
		t.Fatal("no placement change ran during the traffic")
	}
	// Nothing arrived twice: the next datagram each way is a fresh one.
	end := []byte("end")
	r.sendC2P(0x4012, end)
	r.sendP2C(end)
	if got, err := recv(r.peer, 10*time.Second); err != nil || !bytes.Equal(got, end) {
		t.Fatalf("client→peer after the moves: got %q, %v", got, err)
	}
	if got, err := recv(r.client, 10*time.Second); err != nil || !bytes.Equal(got, channelData(0x4012, end)) {
		t.Fatalf("peer→client after the moves: got %q, %v", got, err)
	}
}
