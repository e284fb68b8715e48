//go:build linux

package main

import "testing"

func TestRTTHistQuantile(t *testing.T) {
	var h rttHist
	// 90 samples at 15 µs (bucket 1), 10 at 2.5 ms (bucket 250).
	for i := 0; i < 90; i++ {
		h.add(15_000)
	}
	for i := 0; i < 10; i++ {
		h.add(2_500_000)
	}
	h.add(-5)      // clock oddity: lands in the first bucket
	h.add(1 << 40) // beyond the range: the last bucket
	var o rttHist
	o.add(15_000)
	h.merge(&o)
	for _, c := range []struct {
		q    float64
		want float64 // ms, the upper edge of the bucket
	}{
		{0.5, 0.02},
		{0.85, 0.02},
		{0.95, 2.51},
		{1, float64(rttBuckets*rttBucketNS) / 1e6},
	} {
		if got := h.quantile(c.q); got != c.want {
			t.Errorf("quantile(%v) = %v ms, want %v", c.q, got, c.want)
		}
	}
	var empty rttHist
	if got := empty.quantile(0.5); got != 0 {
		t.Errorf("empty histogram: quantile = %v, want 0", got)
	}
}

func TestSatBest(t *testing.T) {
	steps := []satStep{
		{Offered: 20000, Delivered: 19800, LossPct: 0},
		{Offered: 40000, Delivered: 39000, LossPct: 0.5},
		{Offered: 60000, Delivered: 38000, LossPct: 0.9}, // delivered less: not the best
		{Offered: 80000, Delivered: 60000, LossPct: 3},
		{Offered: 100000, Delivered: 99000, LossPct: 0}, // after the ramp stopped: ignored
	}
	best, over := satBest(steps)
	if best == nil || best.Offered != 40000 {
		t.Fatalf("best = %+v, want the 40,000 step", best)
	}
	if over == nil || over.Offered != 80000 {
		t.Fatalf("over = %+v, want the 80,000 step", over)
	}
	best, over = satBest(steps[:1])
	if best == nil || best.Offered != 20000 || over != nil {
		t.Fatalf("one clean step: best %+v over %+v", best, over)
	}
	if best, _ := satBest([]satStep{{LossPct: 5}}); best != nil {
		t.Fatalf("first step over 1%%: best = %+v, want none", best)
	}
}
