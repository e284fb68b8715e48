//go:build linux

package relay

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Waiting for datagrams without Go's scheduler.
//
// A loop that parks in Go's poller pays, per wake-up, Go's park and unpark
// path (park_m, findRunnable, netpoll, execute: 8-14% of turnd's CPU at 10
// flows) and four epoll_pwait calls where coturn pays one
// (docs/benchmarks.md, fifth pass). Blocking in the loop's own epoll_wait
// through a normal system call costs more still: entersyscall wakes sysmon
// from its deep sleep, which then polls every 20 µs for a millisecond.
//
// So, before it parks, the loop may block in its own epoll_pwait through
// a raw system call (no entersyscall: sysmon is not woken, and the
// goroutine keeps its P and its thread), for at most Config.RawWait. A
// datagram in that time is served by the same thread without the
// scheduler; when the wait times out the loop parks in Go's poller as
// before, so an idle relay costs nothing.
//
// The contract that makes this safe:
//   - A raw wait holds a P that Go cannot hand to anyone else. It is only
//     taken with GOMAXPROCS 2 or more, and only by the first loop while
//     the loops are gathered (it then reads every UDP socket; the others
//     read none), so never by two loops at once: pion, the timers, the
//     metrics server and GC always have a P. Spread loops park in Go's
//     poller; only the first loop has a gate.
//   - The runtime stops the world (GC, GOMAXPROCS) and preempts long
//     runners (sysmon, after 10 ms) with a signal; the signal ends the
//     epoll_pwait with EINTR, and the loop then calls runtime.Gosched, a
//     point where the runtime can stop or reschedule it, before it waits
//     again. Without that the retry would never give the P back and a GC
//     would wait forever (TestRelayLoopRawWaitLetsGCRun).
//   - Go's poller must not see the loop's epoll set while the loop waits
//     on it raw: every datagram would also wake the thread blocked in
//     Go's netpoll, for a goroutine that is not waiting there. So Go's
//     poller watches a gate, a second epoll set that holds the loop's set
//     only while the loop parks: added just before serve returns false
//     (EPOLL_CTL_ADD reports a set that is already readable, so nothing
//     that arrived after the last empty wait is lost), removed before the
//     next raw wait. Steady traffic touches the gate at neither end.
//   - close writes the eventfd in the loop's set: a raw wait returns at
//     once, as a parked loop is woken through the gate.
//   - A goroutine the loop readied (pion's reader, through a pionQueue or
//     a stream's queue; a stream's flusher) goes into the run queue of
//     the loop's P, usually its runnext slot, which other Ps steal only
//     late. A raw wait keeps that P, so such a goroutine could sit there
//     until the wait ends, or, under steady traffic, until sysmon
//     preempts the loop. So a loop that may have readied one since its
//     last wait (l.handoff) parks in Go's poller instead, which runs it.
//   - Raw waits are for a lightly loaded relay: a loop one of whose last
//     rawWaitLightWindows load windows (100 ms each) read more than
//     rawWaitMaxRate datagrams a second parks, as without raw waits. At
//     500 flows × 50 packets/s (50,000 datagrams/s) the ungated raw wait
//     lost datagrams and had a p99.9 of 62-578 ms (docs/benchmarks.md,
//     sixth pass).
//
// Raw waits are on by default (Config.RawWait, turnd --loop-raw-wait). A
// soak failure that once had them turned off was the soak's own doing
// (docs/benchmarks.md, ninth pass).

// defaultRawWaitMaxRate is the datagram rate (per second, over one load
// window) above which the loop does not wait raw: 10 flows × 50 packets/s
// (1,000 datagrams/s, both directions) and 100 flows (10,000) wait raw,
// 500 flows (50,000) do not.
const defaultRawWaitMaxRate = 20000

// rawWaitMaxRate is the rate in force; tests set it (0: any datagram in
// a window makes it heavy).
var rawWaitMaxRate atomic.Int64

func init() { rawWaitMaxRate.Store(defaultRawWaitMaxRate) }

// rawWaitLightWindows is how many load windows in a row (100 ms each)
// must be light before the loop waits raw again after a heavy one. One
// light window is not enough: a loaded relay that the machine stalls for
// a few tens of ms reads little in that window, and a raw wait then would
// begin exactly when a backlog builds. During one such spell the build
// with the one-window gate lost datagrams at 500 flows in 4 of 33 rounds,
// builds without raw waits none beyond 50 datagrams; that the raw wait
// caused it is not shown (docs/benchmarks.md, eighth pass).
const rawWaitLightWindows = 10

// lightStreak counts a loop's light load windows in a row. A new loop
// counts as light (it has seen no load).
type lightStreak struct {
	heavySeen bool
	n         int
}

// window records a closed load window.
func (s *lightStreak) window(heavy bool) {
	switch {
	case heavy:
		s.heavySeen, s.n = true, 0
	case s.n < rawWaitLightWindows:
		s.n++
	}
}

// light reports whether the loop may wait raw as far as load goes.
func (s *lightStreak) light() bool { return !s.heavySeen || s.n >= rawWaitLightWindows }

// heavyRate reports whether dgrams datagrams in a window of ns
// nanoseconds exceed rawWaitMaxRate.
func heavyRate(dgrams, ns int64) bool {
	return dgrams*int64(time.Second) > rawWaitMaxRate.Load()*max(ns, 1)
}

// rawWaitMS converts Config.RawWait (validated: negative, or 1 ms to
// maxRawWait) to epoll_pwait's milliseconds; 0: no raw waits.
func rawWaitMS(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(d / time.Millisecond)
}

// Test hooks: beforeRawWait runs where a loop is about to block raw.
var beforeRawWait atomic.Pointer[func()]

// mayWaitRaw reports whether l may block in its own epoll set now: only
// the first loop, which reads every UDP socket while the loops are
// gathered (the others then have none), only while they are gathered,
// and only with a P to spare.
func (l *relayLoop) mayWaitRaw() bool {
	return l.gate >= 0 && !l.fp.loopSpread.Load() && runtime.GOMAXPROCS(0) >= 2
}

// rawWaitNow reports whether the wait that follows may be raw: mayWaitRaw,
// the loop readied no goroutine since its last wait, and its load has
// been light (lightStreak). It clears l.handoff: the loop parks, and the
// P runs what the loop readied.
func (l *relayLoop) rawWaitNow() bool {
	handed := l.handoff
	l.handoff = false
	switch {
	case !l.mayWaitRaw():
		return false
	case handed:
		l.rawHanded.Add(1)
		return false
	case !l.light.light():
		l.rawBusy.Add(1)
		return false
	}
	return true
}

// waitRaw blocks in l's epoll set until *until (a monoNow time; 0: set
// it l.rawMS from now) and returns the number of events in l.events; 0
// when it timed out or was not allowed (the loop parks), again when a
// signal ended it (the loop polls and waits again, to the same *until: a
// loop interrupted by every GC still parks), or the error that ends the
// loop.
func (l *relayLoop) waitRaw(until *int64) (n int, again bool, err error) {
	ms := l.rawMS.Load()
	if ms <= 0 {
		return 0, false, nil
	}
	now := monoNow()
	if *until == 0 {
		*until = now + ms*int64(time.Millisecond)
	}
	ms = (*until - now + int64(time.Millisecond) - 1) / int64(time.Millisecond)
	if ms <= 0 { // this wake-up's raw wait is over: park
		l.handoff = false
		return 0, false, nil
	}
	if !l.rawWaitNow() {
		return 0, false, nil
	}
	if l.gated { // parked before: Go's poller must not see this wait
		if err := unix.EpollCtl(l.gate, unix.EPOLL_CTL_DEL, l.epfd, nil); err != nil {
			return 0, false, fmt.Errorf("relay loop gate: %w", err)
		}
		l.gated = false
	}
	l.rawWaits.Add(1)
	if f := beforeRawWait.Load(); f != nil {
		(*f)()
	}
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.epfd),
		uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), uintptr(ms), 0, 0)
	switch e {
	case 0:
		if r > 0 {
			l.rawWakes.Add(1)
		}
		return int(r), false, nil
	case unix.EINTR:
		// A stop-the-world or a preemption: give the runtime its safe
		// point. The caller's next non-blocking epoll_wait picks up what
		// arrived meanwhile.
		l.rawSignals.Add(1)
		runtime.Gosched()
		return 0, true, nil
	}
	return 0, false, e
}

// openGate lets Go's poller see l's epoll set, before the loop parks.
func (l *relayLoop) openGate() error {
	if l.gate < 0 || l.gated {
		return nil
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET}
	if err := unix.EpollCtl(l.gate, unix.EPOLL_CTL_ADD, l.epfd, &ev); err != nil {
		return fmt.Errorf("relay loop gate: %w", err)
	}
	l.gated = true
	return nil
}
