//go:build linux

package relay

import (
	"slices"
	"sync"
	"sync/atomic"
)

// Which spread loop reads a relay socket.
//
// Spread, each loop reads the listener sockets of its slots
// (slot%len(loops)), and source steering (steer_linux.go) can put most
// clients on one listener socket: 5 of the saturation bench's 8 client
// addresses, 62.5% of its flows, land on socket 0. Had every relay socket
// followed its client's listener socket, that loop would read 62.5% of
// the datagrams in both directions and saturate while the other had room
// (docs/benchmarks.md, "Balanced spread loops").
//
// Relay sockets need not follow: what a relay socket reads goes to its
// client through the send batch of the loop that reads it (rf.out, set in
// move), and the send takes the listener socket's read lock, as a send
// from any loop does. So a relay socket starts on its listener's loop
// (one wake-up serves a client's datagram and its peer's answer when they
// queue together), and while the loops are spread a balancer moves relay
// sockets between loops by the datagrams each read: a listener socket's
// datagrams are load fixed on its loop, a relay socket's can move. It
// moves few sockets, each time the one that best halves the gap between
// the busiest and the least busy loop, until the gap is under
// 1/loopBalanceSlack of all datagrams. It counts datagrams, not time: a
// loop's busy time cannot see time its thread waited for a CPU
// (loopspread_linux.go), and a datagram costs about the same in either
// direction (a share of one recvmmsg, a lookup, a share of one send).
// Gathered (one loop reads everything) nothing is counted or placed.
const (
	loopBalanceEvery = 3 * loopWindowNS // how often, while spread
	loopBalanceMin   = 1000             // datagrams in a period: fewer need no balance
	loopBalanceSlack = 16               // a gap under total/loopBalanceSlack is balanced
	loopBalanceMoves = 64               // relay sockets moved per period at most
)

// loopBalance is the balancer's state; one loop at a time runs it.
type loopBalance struct {
	at     atomic.Int64  // monoNow of the last balance
	placed atomic.Uint32 // changes when relay sockets get a new place

	mu      sync.Mutex // held by the balancing loop; guards what follows and rawUDP.balSeen
	modeGen uint32     // fp.loopGen at the last balance
	fixed   []int64
	socks   []balanceSock
}

// balanceSock is a relay socket as the balancer sees it.
type balanceSock struct {
	c    *rawUDP
	from int   // the loop that reads it
	loop int   // the loop planBalance puts it on
	n    int64 // datagrams it read since the last balance
}

// loopOf returns the loop that should read c now.
func (fp *fastPath) loopOf(c *rawUDP) *relayLoop {
	if !fp.loopSpread.Load() {
		return fp.loops[0]
	}
	if p := c.place.Load(); p > 0 && int(p) <= len(fp.loops) {
		return fp.loops[p-1]
	}
	return fp.loops[c.slot%uint32(len(fp.loops))]
}

// balanceLoops runs the balancer if a period has passed and no other loop
// runs it; the loops move the sockets at their next wake-up (woke).
func (fp *fastPath) balanceLoops(now int64) {
	b := &fp.loopBal
	if len(fp.loops) < 2 || !fp.loopSpread.Load() || now-b.at.Load() < loopBalanceEvery || !b.mu.TryLock() {
		return
	}
	defer b.mu.Unlock()
	if now-b.at.Load() < loopBalanceEvery { // another loop balanced meanwhile
		return
	}
	b.at.Store(now)
	gen := fp.loopGen.Load()
	fresh := gen == b.modeGen // else the counts span a change of mode: only start counting
	b.modeGen = gen
	b.fixed = slices.Grow(b.fixed[:0], len(fp.loops))[:len(fp.loops)]
	clear(b.fixed)
	for _, l := range fp.loops {
		l.mu.Lock()
		for _, ls := range l.socks {
			c := ls.raw()
			if c == nil {
				continue // a TCP client's stream stays where it is and is not counted
			}
			n := c.reads.Load()
			d := int64(n - c.balSeen)
			c.balSeen = n
			if ls.rf != nil {
				b.socks = append(b.socks, balanceSock{c: c, from: l.idx, loop: l.idx, n: d})
			} else {
				b.fixed[l.idx] += d
			}
		}
		l.mu.Unlock()
	}
	if fresh && planBalance(b.fixed, b.socks) > 0 {
		for _, s := range b.socks {
			if s.loop != s.from {
				s.c.place.Store(int32(s.loop) + 1)
			}
		}
		b.placed.Add(1)
	}
	clear(b.socks) // no socket outlives its allocation here
	b.socks = b.socks[:0]
}

// planBalance moves relay sockets (socks[i].loop) so that the loads (fixed
// per loop, plus the datagrams of the relay sockets each reads) come
// within total/loopBalanceSlack of each other, or as close as moving whole
// sockets allows, with few moves. It returns how many moves it made; fixed
// ends as the loads after them.
func planBalance(fixed []int64, socks []balanceSock) int {
	loads := fixed
	var total int64
	for _, s := range socks {
		loads[s.loop] += s.n
	}
	for _, v := range loads {
		total += v
	}
	if len(loads) < 2 || total < loopBalanceMin {
		return 0
	}
	moves := 0
	for moves < loopBalanceMoves {
		hi, lo := 0, 0
		for i, v := range loads {
			if v > loads[hi] {
				hi = i
			}
			if v < loads[lo] {
				lo = i
			}
		}
		gap := loads[hi] - loads[lo]
		if gap*loopBalanceSlack <= total {
			break
		}
		// The socket that leaves the two loops closest: |gap - 2n| least;
		// 0 < n < gap, so every move narrows the gap.
		best, bestErr := -1, int64(0)
		for i, s := range socks {
			if s.loop != hi || s.n <= 0 || s.n >= gap {
				continue
			}
			e := gap - 2*s.n
			if e < 0 {
				e = -e
			}
			if best < 0 || e < bestErr {
				best, bestErr = i, e
			}
		}
		if best < 0 {
			break
		}
		n := socks[best].n
		socks[best].loop = lo
		loads[hi] -= n
		loads[lo] += n
		moves++
	}
	return moves
}
