//go:build linux

package main

import (
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// probeRuns lays out runs of two CPUs every 2 ms over n slots, each
// costing base ns unless cost says otherwise for (cpu, index).
func probeRuns(n int, base int64, cost func(cpu, i int) int64) []probeRun {
	var out []probeRun
	per := int(latSlotNS / (2 * time.Millisecond).Nanoseconds())
	for cpu := 0; cpu < 2; cpu++ {
		for i := 0; i < n*per; i++ {
			c := base
			if cost != nil {
				if v := cost(cpu, i); v > 0 {
					c = v
				}
			}
			out = append(out, probeRun{cpu: cpu, at: int64(i) * (2 * time.Millisecond).Nanoseconds(), costN: c})
		}
	}
	return out
}

func TestJudgeProbe(t *testing.T) {
	const base = 10_000
	for _, c := range []struct {
		name string
		cost func(cpu, i int) int64
		want []int // disturbed slots
	}{
		{"steady", nil, nil},
		{
			// Interrupted runs (3-8x) at random are not a slowdown, however many.
			"interrupted runs only",
			func(cpu, i int) int64 {
				if i%5 == 0 {
					return 6 * base
				}
				return 0
			},
			nil,
		},
		{
			// Both CPUs at 1.8x through slot 4: slots 3-5 are out.
			"slowed episode",
			func(cpu, i int) int64 {
				if i/50 == 4 {
					return 18 * base / 10
				}
				return 0
			},
			[]int{3, 4, 5},
		},
		{
			// Five slowed runs, one short of the threshold.
			"too few slowed runs",
			func(cpu, i int) int64 {
				if cpu == 0 && i >= 100 && i < 105 {
					return 2 * base
				}
				return 0
			},
			nil,
		},
		{
			// Six, over both CPUs, in the first slot: its neighbour after it too.
			"threshold reached in the first slot",
			func(cpu, i int) int64 {
				if i < 3 {
					return 2 * base
				}
				return 0
			},
			[]int{0, 1},
		},
		{
			"episode in the last slot",
			func(cpu, i int) int64 {
				if i/50 == 9 && i%2 == 0 {
					return 15 * base / 10
				}
				return 0
			},
			[]int{8, 9},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := judgeProbe(probeRuns(10, base, c.cost), 10)
			if v.medianNS != base {
				t.Fatalf("median %d, want %d", v.medianNS, base)
			}
			var got []int
			for s, d := range v.disturbed {
				if d {
					got = append(got, s)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("disturbed slots %v, want %v", got, c.want)
			}
		})
	}
	if v := judgeProbe(nil, 5); len(v.disturbed) != 5 || slices.Contains(v.disturbed, true) {
		t.Fatalf("no runs: %+v, want 5 undisturbed slots", v)
	}
}

func TestCleanQuantiles(t *testing.T) {
	bySlot := make([][]int32, 4)
	for i := int32(1); i <= 100; i++ {
		bySlot[0] = append(bySlot[0], i)      // 1..100
		bySlot[2] = append(bySlot[2], 1000+i) // a stall's echoes
	}
	bySlot[1] = []int32{50}
	p50, p99, n := cleanQuantiles(bySlot, []bool{false, false, true, false})
	// 101 values: 1..50, 50, 51..100. Nearest rank: p50 is the 51st, p99 the 100th.
	if n != 101 || p50 != 50 || p99 != 99 {
		t.Fatalf("clean p50 %v p99 %v over %d, want 50, 99 over 101", p50, p99, n)
	}
	// 201 values; p99 is the 199th: the stall's 98th.
	if _, p99, n := cleanQuantiles(bySlot, nil); n != 201 || p99 != 1098 {
		t.Fatalf("nothing disturbed: p99 %v over %d, want 1098 over 201", p99, n)
	}
	if p50, p99, n := cleanQuantiles(bySlot, []bool{true, true, true, true}); n != 0 || p50 != 0 || p99 != 0 {
		t.Fatalf("all disturbed: %v %v %d, want zeros", p50, p99, n)
	}
}

// TestWorkProbeRuns runs the real probe: every CPU this process may use
// reports a run, timed in CPU time, even when stopped at once.
func TestWorkProbeRuns(t *testing.T) {
	iters := probeIters(20 * time.Microsecond)
	if iters < 1 {
		t.Fatalf("probeIters %d", iters)
	}
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		t.Fatal(err)
	}
	runs := startWorkProbe(time.Now(), time.Millisecond, iters).finish()
	cpus := map[int]int{}
	for _, r := range runs {
		if r.costN <= 0 {
			t.Fatalf("CPU %d: run with cost %d ns", r.cpu, r.costN)
		}
		cpus[r.cpu]++
	}
	for cpu := 0; cpu < runtime.NumCPU(); cpu++ {
		if allowed.IsSet(cpu) && cpus[cpu] == 0 {
			t.Errorf("CPU %d (allowed) reported no run; runs per CPU %v", cpu, cpus)
		}
	}
}

func TestValidProbeFlags(t *testing.T) {
	for _, c := range []struct {
		every, work time.Duration
		ok          bool
	}{
		{2 * time.Millisecond, 10 * time.Microsecond, true},
		{100 * time.Microsecond, 10 * time.Microsecond, true},
		{99 * time.Microsecond, 5 * time.Microsecond, false},
		{0, 10 * time.Microsecond, false},
		{2 * time.Millisecond, 0, false},
		{2 * time.Millisecond, -time.Microsecond, false},
		{time.Millisecond, 101 * time.Microsecond, false},
	} {
		if err := validProbeFlags(c.every, c.work); (err == nil) != c.ok {
			t.Errorf("every %v work %v: error %v, want ok %v", c.every, c.work, err, c.ok)
		}
	}
}

// latCleanReport pairs rounds by position, so it must refuse when one
// server lost a phase.
func TestLatCleanReportPairs(t *testing.T) {
	r := func(p99 float64) latResult {
		return latResult{Echoed: 100, CleanEchoed: 90, CleanP50: 10, CleanP99: p99, P99: p99}
	}
	var b strings.Builder
	latCleanReport(&b, map[string]map[string][]latResult{
		"lat-500": {"turnd": {r(100), r(300)}, "coturn": {r(200), r(300)}},
		"lat-10":  {"turnd": {r(100), r(300)}, "coturn": {r(200)}},
	}, []string{"lat-500", "lat-10"}, []string{"turnd", "coturn"})
	out := b.String()
	if !strings.Contains(out, "| lat-500 | **turnd/coturn clean p99, per round** | | | | **0.75x** (median) | 0.50 · 1.00 |") {
		t.Errorf("paired line missing or wrong:\n%s", out)
	}
	if !strings.Contains(out, "| lat-10 | turnd/coturn per round: not paired (2 against 1 phases)") {
		t.Errorf("unequal rounds were paired:\n%s", out)
	}
}
