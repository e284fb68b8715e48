//go:build linux

package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// -hiccup: one thread pinned to each CPU reads the clock in a tight loop
// and logs every gap between two reads of more than -hiccup-gap, with how
// much of it the guest kernel accounted as the thread's own run time
// (schedstat) and as its runqueue wait. A gap the guest scheduler did not
// cause (run time ≈ gap, no wait) is time the vCPU did not run this
// thread while the guest thought it did: the hypervisor, or interrupt
// work. This is how the periodic stalls of the latency phases were placed
// (docs/benchmarks.md, "The periodic stall (diagnosis)").
var (
	hiccupDur = flag.Duration("hiccup", 0, "instead of the benchmark: run the per-CPU clock-gap detector this long and print its gaps")
	hiccupGap = flag.Duration("hiccup-gap", time.Millisecond, "hiccup: smallest gap logged")
)

// hiccupGapRec is one gap on one CPU.
type hiccupGapRec struct {
	cpu       int
	at, gap   time.Duration // since start
	run, wait time.Duration // schedstat deltas from the last read before the gap to the first after it
}

// schedstat is the thread's run and runqueue-wait time so far.
func threadSchedstat() (run, wait time.Duration) {
	b, err := os.ReadFile("/proc/thread-self/schedstat")
	if err != nil {
		return 0, 0
	}
	return parseSchedstat(string(b))
}

// parseSchedstat reads the first two fields of a schedstat line.
func parseSchedstat(s string) (run, wait time.Duration) {
	f := strings.Fields(s)
	if len(f) < 2 {
		return 0, 0
	}
	r, _ := strconv.ParseInt(f[0], 10, 64)
	w, _ := strconv.ParseInt(f[1], 10, 64)
	return time.Duration(r), time.Duration(w)
}

func hiccupCPU(cpu int, start time.Time, dur, minGap time.Duration) ([]hiccupGapRec, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return nil, err
	}
	var out []hiccupGapRec
	prev := time.Now()
	lastRead := prev
	run0, wait0 := threadSchedstat()
	for {
		now := time.Now()
		if g := now.Sub(prev); g > minGap {
			run1, wait1 := threadSchedstat()
			out = append(out, hiccupGapRec{cpu: cpu, at: prev.Sub(start), gap: g, run: run1 - run0, wait: wait1 - wait0})
			run0, wait0, lastRead = run1, wait1, time.Now()
			now = lastRead
		} else if now.Sub(lastRead) > 100*time.Microsecond {
			run0, wait0 = threadSchedstat()
			lastRead = time.Now()
			now = lastRead
		}
		prev = now
		if now.Sub(start) > dur {
			return out, nil
		}
	}
}

func runHiccup(w io.Writer, dur, minGap time.Duration) error {
	n := runtime.NumCPU()
	res := make([][]hiccupGapRec, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < n; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[c], errs[c] = hiccupCPU(c, start, dur, minGap)
		}()
	}
	wg.Wait()
	fmt.Fprintf(w, "# hiccup: %d CPUs, %v, gaps over %v: cpu at_ms gap_ms run_ms wait_ms\n", n, dur, minGap)
	for c := range res {
		if errs[c] != nil {
			return errs[c]
		}
		for _, g := range res[c] {
			fmt.Fprintf(w, "%d %.1f %.2f %.2f %.2f\n", g.cpu, ms(g.at), ms(g.gap), ms(g.run), ms(g.wait))
		}
	}
	return nil
}
