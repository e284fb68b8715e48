//go:build linux

package main

import (
	"fmt"
	"strings"
)

// The per-hop timeline of a latency phase: per 10 ms, what the generator
// sent, what reached the echo peer, what came back, and the worst way out
// and way back, so a stall can be placed at a hop. The way out is the echo
// peer's kernel receive stamp minus the send time (the client's sendmmsg,
// the relay's first traversal); the way back is the client's receive stamp
// minus the echo's receive stamp and hold (the echo's sendmmsg, the
// relay's second traversal). Both clocks are the same CLOCK_REALTIME.

const (
	latTLSlotNS = 10_000_000 // 10 ms
	latTLSlots  = 12_000     // 120 s
)

// latTLSlot is one 10 ms slot. sent and maxOut/maxBack/maxRTT are by send
// time; atEcho by the echo's receive stamp; back by the client's.
type latTLSlot struct {
	sent, atEcho, back      uint32
	maxOut, maxBack, maxRTT int64 // ns
}

type latTimeline [latTLSlots]latTLSlot

func latTLIndex(ns, startNS int64) int {
	return int(min(max((ns-startNS)/latTLSlotNS, 0), latTLSlots-1))
}

// echoed records one echo: send time, echo receive stamp (0: none), hold,
// client receive stamp, relative to the phase start.
func (t *latTimeline) echoed(startNS, sent, echoRx int64, hold uint64, clientRx int64) {
	s := &t[latTLIndex(sent, startNS)]
	s.maxRTT = max(s.maxRTT, clientRx-sent-int64(hold))
	t[latTLIndex(clientRx, startNS)].back++
	out, back, ok := latWays(sent, echoRx, hold, clientRx)
	if !ok {
		return
	}
	t[latTLIndex(echoRx, startNS)].atEcho++
	s.maxOut = max(s.maxOut, out)
	s.maxBack = max(s.maxBack, back)
}

func (t *latTimeline) merge(o *latTimeline) {
	for i := range t {
		a, b := &t[i], &o[i]
		a.sent += b.sent
		a.atEcho += b.atEcho
		a.back += b.back
		a.maxOut = max(a.maxOut, b.maxOut)
		a.maxBack = max(a.maxBack, b.maxBack)
		a.maxRTT = max(a.maxRTT, b.maxRTT)
	}
}

// around returns the slots from before to after slots around the one
// with the largest round trip, one "ms sent atEcho back maxOut/maxBack/maxRTT µs"
// line each, and that slot's index (-1: no echo).
func (t *latTimeline) around(before, after int) ([]string, int) {
	worst := -1
	for i := range t {
		if t[i].maxRTT > 0 && (worst < 0 || t[i].maxRTT > t[worst].maxRTT) {
			worst = i
		}
	}
	if worst < 0 {
		return nil, -1
	}
	var out []string
	for i := max(worst-before, 0); i <= min(worst+after, latTLSlots-1); i++ {
		s := t[i]
		out = append(out, fmt.Sprintf("%d %d %d %d %d/%d/%d", i*latTLSlotNS/1e6, s.sent, s.atEcho, s.back,
			s.maxOut/1e3, s.maxBack/1e3, s.maxRTT/1e3))
	}
	return out, worst
}

func latTLHeader() string {
	return strings.Join([]string{"ms", "sent", "at_echo", "back", "max_out/max_back/max_rtt_us(by_send_time)"}, " ")
}
