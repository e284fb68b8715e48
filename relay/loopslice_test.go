//go:build linux

package relay

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// The first loop switches the busy slice on after sliceAfter windows in a
// row at a moderate rate and off after as many outside it (light, heavy or
// spread), never from other loops, and gives it back when the loops stop.
// A kernel that refuses is tried once. The loops are bare, as in
// TestRelayLoopsSpreadOnListenerBacklog; setSlice records instead of
// changing the test binary's threads.
func TestRelayLoopBusySlice(t *testing.T) {
	var got []time.Duration
	var refuse error
	fp := &fastPath{s: newTestServer(t, nil), busySlice: 500 * time.Microsecond}
	fp.setSlice = func(d time.Duration) (int, error) {
		if refuse != nil {
			return 0, refuse
		}
		got = append(got, d)
		return 7, nil
	}
	l0, l1 := &relayLoop{fp: fp, idx: 0}, &relayLoop{fp: fp, idx: 1}
	fp.loops = []*relayLoop{l0, l1}
	now := monoNow()
	window := func(l *relayLoop, perSecond int64) { // one load window at this rate, ended by a wake-up
		l.load.winStart = now
		now += loopWindowNS
		l.load.dgrams = perSecond * loopWindowNS / int64(time.Second)
		l.woke(now)
	}
	want := func(step string, w ...time.Duration) {
		t.Helper()
		if !slices.Equal(got, w) {
			t.Fatalf("%s: slices set %v, want %v", step, got, w)
		}
	}

	for range sliceAfter {
		window(l0, 1000) // 10 flows: light
	}
	want("light windows")
	for range sliceAfter - 1 {
		window(l0, 10000)
	}
	window(l1, 10000) // the other loop never decides
	window(l0, 1000)  // the streak is broken
	want("a broken streak")
	for range sliceAfter {
		window(l0, 10000)
	}
	want("moderate windows", 500*time.Microsecond)
	window(l0, 10000)
	want("staying moderate", 500*time.Microsecond)

	for range sliceAfter {
		window(l0, 20000) // uclient's 500 flows: above the band
	}
	want("heavy windows", 500*time.Microsecond, 0)

	for range sliceAfter {
		window(l0, 10000)
	}
	fp.setSpread(true)
	for range sliceAfter {
		window(l0, 10000) // moderate, but spread
	}
	want("spread loops", 500*time.Microsecond, 0, 500*time.Microsecond, 0)
	fp.setSpread(false)

	for range sliceAfter {
		window(l0, 10000)
	}
	fp.endSlice()
	want("loops stopped", 500*time.Microsecond, 0, 500*time.Microsecond, 0, 500*time.Microsecond, 0)
	fp.endSlice()
	want("stopped twice", 500*time.Microsecond, 0, 500*time.Microsecond, 0, 500*time.Microsecond, 0)

	// A refusal: one attempt, then never again.
	got, refuse = nil, errors.New("sched_setattr: operation not permitted")
	calls := 0
	inner := fp.setSlice
	fp.setSlice = func(d time.Duration) (int, error) { calls++; return inner(d) }
	for range 3 * sliceAfter {
		window(l0, 10000)
	}
	if calls != 1 || l0.slice.on {
		t.Fatalf("after a refusal: %d attempts, on %v; want 1 attempt, off", calls, l0.slice.on)
	}

	// Off (Config.BusySlice negative): never called.
	off := &fastPath{s: fp.s, setSlice: func(time.Duration) (int, error) { t.Fatal("set with the busy slice off"); return 0, nil }}
	lo := &relayLoop{fp: off}
	off.loops = []*relayLoop{lo}
	for range 2 * sliceAfter {
		window(lo, 10000)
	}
}

func TestSliceBand(t *testing.T) {
	sec := int64(time.Second)
	for _, tc := range []struct {
		dgrams, ns int64
		spread     bool
		want       bool
	}{
		{100, sec / 10, false, false},                 // 1,000/s: 10 flows
		{sliceMinRate/10 - 1, sec / 10, false, false}, // just below
		{sliceMinRate / 10, sec / 10, false, true},    // the lower bound
		{1000, sec / 10, false, true},                 // 10,000/s: 100 flows
		{sliceMaxRate / 10, sec / 10, false, true},    // the upper bound
		{sliceMaxRate/10 + 1, sec / 10, false, false}, // just above
		{5000, sec / 10, false, false},                // 50,000/s: 500 flows
		{1000, sec / 10, true, false},                 // spread loops
		{1000, 3 * sec / 10, false, false},            // a long window: 3,333/s
		{0, 0, false, false},
	} {
		if got := sliceBand(tc.dgrams, tc.ns, tc.spread); got != tc.want {
			t.Errorf("sliceBand(%d, %d, %v) = %v, want %v", tc.dgrams, tc.ns, tc.spread, got, tc.want)
		}
	}
}
