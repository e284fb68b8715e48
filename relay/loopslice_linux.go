//go:build linux

package relay

import "time"

// The busy slice: a shorter scheduler time slice at moderate load.
//
// At light and moderate load a relay round trip is mostly wake-ups, and its
// tail is the time a woken loop thread waits for a CPU: with the load
// generator's threads running on both CPUs, one wake-up in eight waited
// over 50 µs, for turnd and coturn alike (docs/benchmarks.md, fourteenth
// pass). A thread that asks for a slice shorter than the running thread's
// preempts it instead (internal/schedslice). Measured with 500 µs on every
// thread (fourteenth and fifteenth passes): at 100 flows (10,000 datagrams
// a second) p99 fell by 10-20%, for 1.19-1.28x the CPU per round trip;
// at 10 flows (1,000 a second) p99 did not move while p50 and CPU rose
// 8-10%, which the CPU target there has no room for. So the slice
// applies from sliceMinRate datagrams a second, and up to sliceMaxRate:
// at 500 flows it bought no p99 beside the machine's stall episodes but
// cost about 20% CPU per datagram, and uclient's 500 flows reach the loop
// at about 20,000 datagrams a second (it cannot keep 50 packets a second
// per flow; the batched generator's 500 flows bring 50,000), so the bound
// sits below that (docs/benchmarks.md, fifteenth pass). Spread loops,
// which only happen under heavy load, keep the default too.
//
// The first loop decides, at the end of each load window: sliceAfter
// windows in a row in the band switch it on, as many outside switch it
// off, so a load near a bound does not flap. Switching sets every thread
// of the process (a few system calls per thread) once per change. A
// kernel that refuses (before 6.12, or a sandbox) gets one log line and
// no further attempts.
const (
	sliceMinRate = 4000  // datagrams a second, over one load window
	sliceMaxRate = 15000 // the same; 100 flows × 50 packets/s bring 10,000
	sliceAfter   = 3
)

// sliceGate is the first loop's view of the busy slice.
type sliceGate struct {
	on     bool
	streak int  // windows in a row that want the other state
	failed bool // the kernel refused: stay off
}

// window records a closed load window that wants the slice on or off, and
// reports whether the slice should change now (to the opposite of g.on).
func (g *sliceGate) window(want bool) bool {
	return runOf(&g.streak, !g.failed && want != g.on, sliceAfter) // loopspread_linux.go
}

// sliceBand reports whether a window of dgrams datagrams over ns
// nanoseconds is in the busy slice's band.
func sliceBand(dgrams, ns int64, spread bool) bool {
	perSec, ns := dgrams*int64(time.Second), max(ns, 1)
	return !spread && perSec >= sliceMinRate*ns && perSec <= sliceMaxRate*ns
}

// sliceWindow is the first loop's decision at the end of a load window.
func (l *relayLoop) sliceWindow(dgrams, ns int64) {
	fp := l.fp
	if l.idx != 0 || fp.busySlice <= 0 {
		return
	}
	if !l.slice.window(sliceBand(dgrams, ns, fp.loopSpread.Load())) {
		return
	}
	on := !l.slice.on
	d := time.Duration(0)
	if on {
		d = fp.busySlice
	}
	n, err := fp.setSlice(d)
	if err != nil {
		l.slice.failed = true
		fp.s.log.Info("busy slice unavailable: threads keep the kernel's time slice", "err", err)
		if l.slice.on {
			_, _ = fp.setSlice(0)
			l.slice.on = false
		}
		return
	}
	l.slice.on = on
	fp.s.log.Debug("busy slice", "on", on, "slice", d, "threads", n,
		"datagrams_per_s", dgrams*int64(time.Second)/max(ns, 1))
}

// endSlice gives the threads the kernel's slice back when the loops stop.
// Called after the loops have ended.
func (fp *fastPath) endSlice() {
	if len(fp.loops) > 0 && fp.loops[0].slice.on {
		_, _ = fp.setSlice(0)
		fp.loops[0].slice.on = false
	}
}
