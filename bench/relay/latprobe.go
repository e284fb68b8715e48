//go:build linux

package main

import (
	"flag"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The work probe (-lat-probe): a stall-robust view of a latency phase.
//
// On this project's 2 vCPU VM, under load, the processes on the loopback
// path fall behind at once for tens of milliseconds every ~1.5 s (docs/
// benchmarks.md, "The periodic stall (diagnosis)"), and whichever server
// such an episode hits gets the worse p99 of its round. The probe watches
// the machine independently of the servers: one thread pinned to each CPU
// runs the same fixed piece of arithmetic every -lat-probe-every and times
// it in its own thread CPU time, so waiting for a CPU does not count, only
// how fast the CPU worked while the thread held it. Outside the episodes
// almost every run takes the median time; a run interrupted by an
// interrupt or a softirq charged to it takes 3-8x as long, at random. In
// some episodes the runs on both CPUs take 1.5-2x as long for 100-300 ms:
// the CPUs themselves were slower. (Those episodes hold a small part of
// the tail: docs/benchmarks.md, "seventeenth pass".) A 100 ms slot with latProbeMinSlowed
// runs (all CPUs together) in that band is disturbed, and so are the slots
// before and after it (echoes sent just before the episode wait in it;
// the queues it built drain after it). The phase's "clean" quantiles are
// those of the echoes sent in undisturbed slots. A relay's own slowness (a
// backlog of its making, a wake-up it misses) does not slow the probe's
// arithmetic, so it stays in the clean figures. Episodes that leave the
// CPUs' speed alone (the probe does not see them) stay in too.
var (
	latProbe      = flag.Bool("lat-probe", false, "latload: run the work probe beside every phase and report p50/p99 over the 100 ms slots in which no CPU slowed down (the clean figures)")
	latProbeEvery = flag.Duration("lat-probe-every", 2*time.Millisecond, "latload: the work probe's period on each CPU")
	latProbeWork  = flag.Duration("lat-probe-work", 10*time.Microsecond, "latload: the work probe's piece of work, calibrated in CPU time at start")
)

const (
	// A run that took latProbeSlowedLo to latProbeSlowedHi times the
	// phase's median run was slowed; a longer one was interrupted.
	latProbeSlowedLo  = 1.4
	latProbeSlowedHi  = 2.5
	latProbeMinSlowed = 6 // slowed runs in one slot, all CPUs, that disturb it
)

// probeRun is one timed piece of work: when it started (ns since the
// phase's start) and the thread CPU time it took.
type probeRun struct {
	cpu   int
	at    int64
	costN int64
}

// probeSink keeps the work's result alive so the compiler cannot drop it.
var probeSink atomic.Uint64

// probeSpin is the fixed work: n rounds of xorshift, all in registers, no
// memory traffic, so a cache or memory-bandwidth neighbour barely moves it.
func probeSpin(n int) {
	x := uint64(88172645463325252)
	for i := 0; i < n; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	probeSink.Add(x)
}

func threadCPUNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return ts.Nano()
}

// validProbeFlags checks the probe's period and work: a period the work
// fills would keep both CPUs busy and measure nothing.
func validProbeFlags(every, work time.Duration) error {
	switch {
	case every < 100*time.Microsecond:
		return fmt.Errorf("-lat-probe-every %v: at least 100µs", every)
	case work <= 0 || work > every/10:
		return fmt.Errorf("-lat-probe-work %v: above 0 and at most a tenth of -lat-probe-every (%v)", work, every)
	}
	return nil
}

// probeIters is how many rounds of probeSpin take about work of CPU time
// here: the fastest of 200 timed runs of a fixed count, scaled.
func probeIters(work time.Duration) int {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const n = 20_000
	best := int64(1 << 62)
	for i := 0; i < 200; i++ {
		t0 := threadCPUNow()
		probeSpin(n)
		best = min(best, threadCPUNow()-t0)
	}
	return max(int(float64(n)*float64(work.Nanoseconds())/float64(max(best, 1))), 1)
}

// workProbe runs the fixed work on every CPU until stopped.
type workProbe struct {
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	runs []probeRun
}

// startWorkProbe starts one pinned thread per CPU; each runs iters rounds
// every period, timing them from start, until finish.
func startWorkProbe(start time.Time, period time.Duration, iters int) *workProbe {
	p := &workProbe{stop: make(chan struct{})}
	for cpu := 0; cpu < runtime.NumCPU(); cpu++ {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			runs := p.runCPU(cpu, start, period, iters)
			p.mu.Lock()
			p.runs = append(p.runs, runs...)
			p.mu.Unlock()
		}()
	}
	return p
}

func (p *workProbe) runCPU(cpu int, start time.Time, period time.Duration, iters int) []probeRun {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return nil // a CPU this process may not use: the others still report
	}
	runs := make([]probeRun, 0, int(20*time.Second/period))
	ts := unix.NsecToTimespec(period.Nanoseconds())
	for {
		at := time.Since(start).Nanoseconds()
		t0 := threadCPUNow()
		probeSpin(iters)
		runs = append(runs, probeRun{cpu: cpu, at: at, costN: threadCPUNow() - t0})
		select {
		case <-p.stop:
			return runs // at least one run per CPU, however early the stop
		default:
		}
		_ = unix.Nanosleep(&ts, nil)
	}
}

// finish stops the probe and returns its runs.
func (p *workProbe) finish() []probeRun {
	close(p.stop)
	p.wg.Wait()
	return p.runs
}

// probeVerdict is what the probe saw over one phase.
type probeVerdict struct {
	medianNS  int64
	slowed    int    // runs in the slowed band
	disturbed []bool // per latSlotNS slot of the phase
}

// judgeProbe marks the disturbed slots of a phase of n slots: each slot
// with latProbeMinSlowed slowed runs, and its neighbours.
func judgeProbe(runs []probeRun, n int) probeVerdict {
	v := probeVerdict{disturbed: make([]bool, n)}
	if len(runs) == 0 || n == 0 {
		return v
	}
	costs := make([]int64, len(runs))
	for i, r := range runs {
		costs[i] = r.costN
	}
	slices.Sort(costs)
	v.medianNS = costs[len(costs)/2]
	lo, hi := latProbeSlowedLo*float64(v.medianNS), latProbeSlowedHi*float64(v.medianNS)
	slowed := make([]int, n)
	for _, r := range runs {
		if c := float64(r.costN); c < lo || c > hi {
			continue
		}
		v.slowed++
		if s := int(r.at / latSlotNS); s >= 0 && s < n {
			slowed[s]++
		}
	}
	for s, c := range slowed {
		if c >= latProbeMinSlowed {
			for d := max(s-1, 0); d <= min(s+1, n-1); d++ {
				v.disturbed[d] = true
			}
		}
	}
	return v
}

// cleanQuantiles returns the p50 and p99 (µs) of the RTTs (µs, by send
// slot) in the slots not disturbed, and how many RTTs that is. They are
// exact ranks of whole microseconds; latHist's quantiles are bucket upper
// edges, so a raw figure reads up to 1 µs above the clean one of the same
// echoes.
func cleanQuantiles(bySlot [][]int32, disturbed []bool) (p50, p99 float64, n int) {
	var all []int32
	for s, rtts := range bySlot {
		if s < len(disturbed) && disturbed[s] {
			continue
		}
		all = append(all, rtts...)
	}
	if len(all) == 0 {
		return 0, 0, 0
	}
	slices.Sort(all)
	// Nearest rank: the smallest value with at least f of all at or below it.
	q := func(f float64) float64 {
		return float64(all[min(max(int(math.Ceil(f*float64(len(all))))-1, 0), len(all)-1)])
	}
	return q(0.5), q(0.99), len(all)
}

// disturbedList names the disturbed slots by their start in seconds.
func disturbedList(d []bool) []string {
	var out []string
	for i, x := range d {
		if x {
			out = append(out, fmt.Sprintf("%.1f", float64(i)*latSlotNS/1e9))
		}
	}
	return out
}
