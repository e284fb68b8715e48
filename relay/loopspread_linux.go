//go:build linux

package relay

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// How many loops read sockets. Every loop wakes for its own sockets, so
// with traffic on every listener socket two loops cost two wake-ups where
// one would do: at 10, 100 and 500 flows one loop spent about 30%, 15%
// and 6% less CPU per relayed datagram than two (docs/benchmarks.md,
// "Event loops in Go's poller"). One loop has one CPU, though. So the
// loops start gathered: the first reads every socket, the others wait with
// nothing to read (parked, so free). When the first is busy for more than
// loopSpreadBusy of loopSpreadAfter windows in a row, the loops spread:
// each listener socket, with its clients' relay sockets, goes to loop
// slot%len(loops), and every loop has a CPU's worth of work again. When
// all loops together are busy less than loopGatherBusy for loopGatherAfter
// windows in a row (one loop would then be busy about that much, well
// below loopSpreadBusy, so the mode does not flap), they gather again.
// Busy is wall time from a wake-up to the next park, measured at wake-ups
// only: a parked loop measures nothing and costs nothing. Several windows,
// because a loop thread the kernel sets aside for other processes, or a
// burst of allocations (requests the loop queues for pion), fills a window
// or two without traffic that needs a second CPU.
//
// Busy time alone spreads too late on a machine the relay shares. It
// counts a loop from wake-up to park, not the time a woken loop's thread
// waits for a CPU; with a load generator's or other processes' threads
// runnable on every core, the kernel shares the CPUs out thread by
// thread, so a lone loop thread ran about half the time, spent the other
// half runnable but waiting, measured itself 50-70% busy and never
// spread, while its listener sockets' queues filled to the last byte and
// dropped (docs/benchmarks.md, "Saturation: why turnd dropped before it
// was CPU-bound"). So a listener drain that finds a backlog, a quarter of
// the socket's receive buffer or more, spreads the loops at once
// (noteListenerDrain), and loops that found one in the last
// loopBacklogHolds windows do not gather.
//
// A loop moves its sockets itself, at a wake-up, before it reads. A move
// holds the socket's lock, so no drain runs during it and Close sees one
// loop or the other; a drain checks under that lock that the socket is
// still its loop's, so only one loop ever reads a socket; and the new
// loop's epoll_ctl reports data already waiting, so edge-triggered
// reading loses nothing in the move.
const (
	loopWindowNS     = int64(100 * time.Millisecond)
	loopSpreadBusy   = 750 // per mille of a window, the first loop alone
	loopSpreadAfter  = 3
	loopGatherBusy   = 400 // per mille of a window, all loops together
	loopGatherAfter  = 5
	loopLoadStaleFor = 2 * loopWindowNS

	// A listener drain of fewer datagrams is never a backlog (a burst).
	loopBacklogMin = 64
	// Receive-buffer memory one full-size datagram takes in a socket's
	// queue (skb truesize, about 2.3 KB for 1,200 bytes of payload); the
	// estimate counts every datagram as full-size, so small ones spread
	// the loops early, never late.
	loopBacklogTruesize = 2304
	// A backlog is a quarter of the receive buffer (a 4 MiB buffer holds
	// about 1,800 such datagrams; a quarter is ~450).
	loopBacklogShare = 4
	// Windows after a backlog in which the loops do not gather.
	loopBacklogHolds = loopGatherAfter
)

// loopLoad is a loop's busy accounting and its view of the spread mode.
type loopLoad struct {
	busy      atomic.Int64 // busy per mille of the last window
	busyAt    atomic.Int64 // monoNow when busy was published
	backlogAt atomic.Int64 // monoNow of the last listener backlog (noteListenerDrain); 0: none

	// Owned by the loop goroutine.
	winStart int64
	busyNS   int64
	dgrams   int64      // datagrams read in this window (a stream wake-up counts one)
	streak   int        // windows in a row past the current mode's threshold
	gen      uint32     // fp.loopGen when the loop last placed its sockets
	moving   []loopSock // scratch for rebalance
}

// loopFor returns the loop that reads a socket of this slot now.
func (fp *fastPath) loopFor(slot uint32) *relayLoop {
	if !fp.loopSpread.Load() {
		return fp.loops[0]
	}
	return fp.loops[slot%uint32(len(fp.loops))]
}

// setSpread switches between gathered and spread loops; the loops move
// their sockets at their next wake-up.
func (fp *fastPath) setSpread(spread bool) {
	if fp.loopSpread.CompareAndSwap(!spread, spread) {
		fp.loopGen.Add(1)
	}
}

// woke is called at every wake-up of the loop: it closes a window that
// has run out (and decides on spreading) and moves sockets that belong to
// another loop since the mode changed.
func (l *relayLoop) woke(now int64) {
	ld := &l.load
	place := false
	if now-ld.winStart >= loopWindowNS {
		busy := ld.busyNS * 1000 / max(now-ld.winStart, 1)
		ld.busy.Store(busy)
		ld.busyAt.Store(now)
		l.light.window(heavyRate(ld.dgrams, now-ld.winStart)) // rawwait_linux.go
		l.sliceWindow(ld.dgrams, now-ld.winStart)             // loopslice_linux.go
		ld.winStart, ld.busyNS, ld.dgrams = now, 0, 0
		l.decide(now, busy)
		place = true // also catches a socket attached while the mode changed
	}
	if g := l.fp.loopGen.Load(); g != ld.gen {
		ld.gen, ld.streak = g, 0 // a streak counts windows of one mode
		place = true
	}
	if place {
		ld.moving = l.rebalance(ld.moving)
	}
}

// decide spreads the loops when the first alone is busy, and gathers them
// when all together are idle enough for one.
func (l *relayLoop) decide(now, busy int64) {
	fp := l.fp
	if len(fp.loops) < 2 {
		return
	}
	if !fp.loopSpread.Load() {
		if l.idx == 0 && l.load.past(busy > loopSpreadBusy, loopSpreadAfter) {
			fp.setSpread(true)
			fp.s.log.Debug("relay loops spread", "busy_permille", busy)
		}
		return
	}
	var total int64
	backlog := false
	for _, o := range fp.loops {
		if now-o.load.busyAt.Load() <= loopLoadStaleFor { // else parked all along
			total += o.load.busy.Load()
		}
		if at := o.load.backlogAt.Load(); at != 0 && now-at < loopBacklogHolds*loopWindowNS {
			backlog = true
		}
	}
	if l.load.past(total < loopGatherBusy && !backlog, loopGatherAfter) {
		fp.setSpread(false)
		fp.s.log.Debug("relay loops gathered", "busy_permille", total)
	}
}

// noteListenerDrain is told how many datagrams one drain of a listener
// socket (descriptor fd) read; a drain that long means they had queued
// while the loop was not reading (busy elsewhere, or its thread waiting
// for a CPU), and the loops spread at once.
func (l *relayLoop) noteListenerDrain(fd, n int) {
	if n < loopBacklogMin || len(l.fp.loops) < 2 {
		return
	}
	rcvbuf, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF) // as the kernel set it
	if err != nil {
		return
	}
	l.backlog(monoNow(), n, rcvbuf)
}

// backlog decides on a listener drain of n datagrams from a socket with
// rcvbuf bytes of receive buffer.
func (l *relayLoop) backlog(now int64, n, rcvbuf int) {
	if n < loopBacklogMin || n*loopBacklogTruesize*loopBacklogShare < rcvbuf {
		return
	}
	l.load.backlogAt.Store(now)
	if !l.fp.loopSpread.Load() {
		l.fp.setSpread(true)
		l.fp.s.log.Debug("relay loops spread: listener backlog", "datagrams", n, "rcvbuf", rcvbuf)
	}
}

// past counts the windows in a row for which over held and reports
// whether n have passed (and starts counting again).
func (ld *loopLoad) past(over bool, n int) bool { return runOf(&ld.streak, over, n) }

// runOf counts in *streak the windows in a row for which over held, and
// reports whether n have passed (and starts counting again); a window
// without over resets the count.
func runOf(streak *int, over bool, n int) bool {
	if !over {
		*streak = 0
		return false
	}
	*streak++
	if *streak < n {
		return false
	}
	*streak = 0
	return true
}

// rebalance hands the loop's sockets that another loop should read now to
// that loop; moving is scratch space, returned for reuse.
func (l *relayLoop) rebalance(moving []loopSock) []loopSock {
	l.mu.Lock()
	for ls := range l.socks.all() {
		if ls.st != nil {
			continue // a TCP client's stream stays on the loop that took it
		}
		if l.fp.loopFor(ls.raw().slot) != l {
			moving = append(moving, ls)
		}
	}
	l.mu.Unlock()
	for _, ls := range moving {
		l.move(ls)
	}
	clear(moving)
	return moving[:0]
}

// move re-registers one socket with the loop its slot picks.
func (l *relayLoop) move(ls loopSock) {
	c := ls.raw()
	c.mu.Lock()
	defer c.mu.Unlock()
	to := l.fp.loopFor(c.slot)
	if c.closed || c.loop != l || to == l {
		return
	}
	l.remove(c)
	c.loop = nil
	if ls.rf != nil {
		ls.rf.out = &to.out // written under c.mu: the next drain reads it under c.mu
	}
	if err := to.register(c, ls); err != nil {
		// The target is closing (the server stops) or epoll_ctl failed:
		// keep reading it here.
		if ls.rf != nil {
			ls.rf.out = &l.out
		}
		if err := l.register(c, ls); err != nil {
			l.fp.s.log.Warn("relay socket left without a loop", "addr", c.local, "err", err)
		}
	}
}

// raw returns the UDP socket a loop reads for ls (nil for a stream).
func (ls loopSock) raw() *rawUDP {
	switch {
	case ls.rf != nil:
		return ls.rf.sock.raw
	case ls.lf != nil:
		return ls.lf.sock.raw
	}
	return nil
}
