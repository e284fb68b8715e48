//go:build linux

package main

import (
	"testing"
	"time"
)

func TestLatDue(t *testing.T) {
	const late = 2 * time.Millisecond
	for _, c := range []struct {
		name       string
		el         time.Duration
		perFlow    float64
		i, n       int
		done       uint64
		send, skip uint64
	}{
		{"first datagram of flow 0 is due at once", 0, 50, 0, 10, 0, 1, 0},
		{"on time: one due", 20 * time.Millisecond, 50, 0, 10, 1, 1, 0},
		{"nothing due yet", 10 * time.Millisecond, 50, 0, 10, 1, 0, 0},
		// At 50/s a flow is due every 20 ms: after a 40 ms stall the
		// flow owes 2, of which the one due more than 2 ms ago is
		// skipped (the old per-flow cap of 2 sent both at once).
		{"40 ms stall at 50/s: skip the stale one", 41 * time.Millisecond, 50, 0, 10, 1, 1, 1},
		{"due within the last 2 ms: sent", 40*time.Millisecond + 500*time.Microsecond, 50, 0, 10, 2, 1, 0},
		// At 3,750/s per flow 2 ms is 7.5 datagrams: a 10 ms stall sends
		// those due in the last 2 ms and skips the rest.
		{"10 ms stall at 3750/s", 20 * time.Millisecond, 3750, 0, 1, 38, 8, 30},
		{"already ahead", 20 * time.Millisecond, 50, 0, 10, 5, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			send, skip := latDue(c.el, late, c.perFlow, c.i, c.n, c.done)
			if send != c.send || skip != c.skip {
				t.Errorf("latDue(%v) = send %d skip %d, want %d %d", c.el, send, skip, c.send, c.skip)
			}
			if c.done+send+skip != max(c.done, latOwed(c.el, c.perFlow, c.i, c.n)) {
				t.Errorf("done %d + send %d + skip %d does not reach what is owed, %d", c.done, send, skip, latOwed(c.el, c.perFlow, c.i, c.n))
			}
		})
	}
}

func TestLatTimeline(t *testing.T) {
	var a, b latTimeline
	const start = int64(1_000_000_000)
	ms := int64(time.Millisecond)
	// A normal echo at 5 ms: 100 µs out, 50 µs hold, 100 µs back.
	a.echoed(start, start+5*ms, start+5*ms+100_000, 50_000, start+5*ms+250_000)
	// A stalled one sent at 30 ms: 20 ms out, 40 ms back.
	b.echoed(start, start+30*ms, start+50*ms, 0, start+90*ms)
	// No echo stamp: counted back, no hop split.
	b.echoed(start, start+31*ms, 0, 0, start+32*ms)
	a.merge(&b)
	if s := a[0]; s.atEcho != 1 || s.back != 1 || s.maxOut != 100_000 || s.maxBack != 100_000 || s.maxRTT != 200_000 {
		t.Errorf("slot 0 = %+v", s)
	}
	if s := a[3]; s.maxOut != 20*ms || s.maxBack != 40*ms || s.maxRTT != 60*ms || s.back != 1 {
		t.Errorf("slot 3 (sent at 30, 31 ms) = %+v", s)
	}
	if a[5].atEcho != 1 || a[9].back != 1 {
		t.Errorf("arrivals not by their own stamps: slot 5 %+v, slot 9 %+v", a[5], a[9])
	}
	lines, worst := a.around(1, 1)
	if worst != 3 || len(lines) != 3 || lines[1] != "30 0 0 1 20000/40000/60000" {
		t.Errorf("around = %q (worst %d)", lines, worst)
	}
	var empty latTimeline
	if _, w := empty.around(1, 1); w != -1 {
		t.Errorf("empty timeline: worst %d, want -1", w)
	}
}

func TestParseSchedstat(t *testing.T) {
	run, wait := parseSchedstat("1234567 89 10\n")
	if run != 1234567 || wait != 89 {
		t.Errorf("parseSchedstat = %d %d", run, wait)
	}
	if run, wait := parseSchedstat(""); run != 0 || wait != 0 {
		t.Errorf("empty: %d %d", run, wait)
	}
}
