// Package procs sizes the Go scheduler to a server's load: GOMAXPROCS
// follows how busy the process's Ps are, between 1 and the Go default.
//
// Why: a server that spends a few microseconds per request, most of it in
// system calls, pays for every extra idle P on every wake-up. When a
// goroutine becomes ready while a P is idle, the runtime wakes a thread for
// that P, which spins looking for work, finds none and sleeps again (a
// futex wake and sleep and a context switch per event). At the signaling
// hub's typical loads (well under one core) one P instead of two saved 5-27%
// of its CPU per relayed message in paired runs (docs/benchmarks.md). With one P nobody spins; with more
// load than one P can carry, more Ps are needed. So: start at the default,
// drop to what the load needs with headroom, and add Ps as soon as the ones
// there are busy.
package procs

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Policy thresholds, as CPU time used per P.
const (
	// raiseAbove: Ps busier than this get company at the next sample (the
	// count doubles, up to the maximum). At 60% a queue starts to form in
	// front of one P.
	raiseAbove = 0.6
	// lowerTo: the count drops to what carries the load at no more than
	// this utilisation, once that has held for holdSamples samples. The gap
	// to raiseAbove keeps the count from flapping.
	lowerTo     = 0.4
	holdSamples = 8
	// Interval is how often the load is sampled.
	Interval = 250 * time.Millisecond
)

// Setting is the --procs flag: "auto" (adapt), or a fixed count (0: the Go
// default, all usable CPUs).
type Setting struct {
	Auto  bool
	Fixed int
}

// Parse reads a --procs value.
func Parse(s string) (Setting, error) {
	if strings.EqualFold(s, "auto") {
		return Setting{Auto: true}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return Setting{}, fmt.Errorf("procs %q: want auto or a count >= 0 (0: all CPUs)", s)
	}
	return Setting{Fixed: n}, nil
}

// String is the flag's value.
func (s Setting) String() string {
	if s.Auto {
		return "auto"
	}
	return strconv.Itoa(s.Fixed)
}

// controller decides the P count from load samples; it has no clock and no
// side effects, so tests drive it sample by sample.
type controller struct {
	max   int // most Ps
	n     int // current Ps
	below int // successive samples that wanted fewer Ps
}

// step takes the CPU seconds per second the process used since the last
// sample (user and system time: with the hub's raw system calls the kernel
// work runs on the P's thread) and returns the P count to use from now on.
func (c *controller) step(busy float64) int {
	if busy > raiseAbove*float64(c.n) && c.n < c.max {
		c.n = min(c.max, 2*c.n)
		c.below = 0
		return c.n
	}
	want := min(max(int(math.Ceil(busy/lowerTo)), 1), c.max)
	if want >= c.n {
		c.below = 0
		return c.n
	}
	if c.below++; c.below >= holdSamples {
		c.n, c.below = want, 0
	}
	return c.n
}

// Apply puts s into effect: a fixed count is set at once (0 leaves the Go
// default); auto runs an adapter until ctx ends, reporting every change to
// onChange (may be nil). GOMAXPROCS in the environment wins over auto, as
// an operator's explicit choice.
func Apply(ctx context.Context, s Setting, getenv func(string) string, onChange func(from, to int)) error {
	if !s.Auto {
		if s.Fixed > 0 {
			runtime.GOMAXPROCS(s.Fixed)
		}
		return nil
	}
	if getenv("GOMAXPROCS") != "" {
		return nil
	}
	last, err := cpuTime()
	if err != nil {
		return err
	}
	go adapt(ctx, last, runtime.GOMAXPROCS(0), onChange)
	return nil
}

func adapt(ctx context.Context, last time.Duration, maxProcs int, onChange func(from, to int)) {
	c := &controller{max: maxProcs, n: maxProcs}
	t := time.NewTicker(Interval)
	defer t.Stop()
	lastAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cpu, err := cpuTime()
			if err != nil {
				return
			}
			busy := (cpu - last).Seconds() / max(now.Sub(lastAt).Seconds(), 1e-3)
			last, lastAt = cpu, now
			from := c.n
			if to := c.step(busy); to != from {
				runtime.GOMAXPROCS(to)
				if onChange != nil {
					onChange(from, to)
				}
			}
		}
	}
}
