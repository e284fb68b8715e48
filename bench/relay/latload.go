//go:build linux

package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Latency with kernel receive timestamps (-latload loopback): the batched
// generator at a fixed offered rate, every echo timed from the send time
// written into its payload right before the client's sendmmsg to the
// kernel's receive stamp at the client socket (SO_TIMESTAMPNS), minus the
// echo peer's hold (its own kernel receive stamp to just before its
// sendmmsg). What the harness's threads do after a datagram is queued for
// them is not in the figure; see docs/benchmarks.md, "Latency with kernel
// receive timestamps".
var (
	latMode         = flag.String("latload", "", "run the fixed-rate latency phases with kernel receive timestamps (loopback) instead of the other phases")
	latLoads        = flag.String("lat-loads", "10,100,500", "latload: phases, comma-separated: N (N flows x -lat-pps) or N@R (N flows sharing R round trips/s, e.g. 16@60000 for an equal-rate comparison near saturation)")
	latPPS          = flag.Int("lat-pps", 50, "latload: round trips per second per flow for phases given as N")
	latSecs         = flag.Float64("lat-seconds", 10, "latload: sending time per phase")
	latTimelineFlag = flag.Bool("lat-timeline", false, "latload: log, per 10 ms around each phase's worst echo, datagrams sent, reaching the echo, back, and the worst way out and back")
	latDirect       = flag.Bool("lat-direct", false, "latload: also run every phase as \"direct\": the flows send straight to an echo peer, no relay (the generator's and the kernel's own floor)")
)

// latLoad is one phase: flows sharing rate round trips/s.
type latLoad struct {
	name  string
	flows int
	rate  float64
}

func parseLatLoads(s string, pps int) ([]latLoad, error) {
	var out []latLoad
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, r, hasRate := strings.Cut(f, "@")
		flows, err := strconv.Atoi(n)
		if err != nil || flows <= 0 {
			return nil, fmt.Errorf("-lat-loads: bad flow count in %q", f)
		}
		rate := float64(flows * pps)
		name := fmt.Sprintf("lat-%d", flows)
		if hasRate {
			v, err := strconv.Atoi(r)
			if err != nil || v <= 0 {
				return nil, fmt.Errorf("-lat-loads: bad rate in %q", f)
			}
			rate, name = float64(v), fmt.Sprintf("lat-%d@%d", flows, v)
		}
		if rate <= 0 {
			return nil, fmt.Errorf("-lat-loads %q: no rate (-lat-pps %d)", f, pps)
		}
		out = append(out, latLoad{name: name, flows: flows, rate: rate})
	}
	if len(out) == 0 {
		return nil, errors.New("-lat-loads names no phase")
	}
	return out, nil
}

// latResult is one phase on one server. Times are µs.
type latResult struct {
	Flows       int     `json:"flows"`
	Offered     float64 `json:"offered_rt_s"`
	Sent        uint64  `json:"sent"`
	Skipped     uint64  `json:"skipped"` // owed by a descheduled sender beyond two ticks: not sent
	SendRefused uint64  `json:"send_refused"`
	Echoed      uint64  `json:"echoed"`
	Late        uint64  `json:"late"`
	Unstamped   uint64  `json:"unstamped"` // echoes without a kernel stamp at the client or the echo
	Negative    uint64  `json:"negative"`  // RTTs below 0 (a clock step): counted at 0
	LossPct     float64 `json:"loss_pct"`
	P50         float64 `json:"p50_us"`
	P90         float64 `json:"p90_us"`
	P99         float64 `json:"p99_us"`
	P999        float64 `json:"p999_us"`
	Max         float64 `json:"max_us"`
	UserP50     float64 `json:"user_p50_us"` // the same echoes timed in user space after recvmmsg, hold included
	UserP99     float64 `json:"user_p99_us"`
	// The two ways of a round trip, split at the echo's kernel receive
	// stamp: out is client to echo (the relay's client→peer traversal),
	// back is echo to client without the hold (peer→client).
	OutP50     float64  `json:"out_p50_us"`
	OutP99     float64  `json:"out_p99_us"`
	BackP50    float64  `json:"back_p50_us"`
	BackP99    float64  `json:"back_p99_us"`
	HoldMean   float64  `json:"hold_mean_us"`
	ServerCPU  float64  `json:"server_cpu_cores"`
	CPUPerRT   float64  `json:"server_cpu_us_per_rt"`
	GenCPU     float64  `json:"gen_cpu_cores"`
	EchoCPU    float64  `json:"echo_cpu_cores"`
	RcvbufErrs []int64  `json:"rcvbuf_errors"` // host, generator+echo sockets, server listener sockets, other sockets
	SlowSlots  []string `json:"slow_by_100ms"` // "second:count" of echoes over 2 ms, by send time
	// The work probe (-lat-probe, latprobe.go): its median run, its runs
	// in the slowed band, the disturbed 100 ms slots (by start second), and
	// the quantiles of the echoes sent outside them.
	ProbeMedianUS float64  `json:"probe_median_us,omitempty"`
	ProbeSlowed   int      `json:"probe_slowed_runs,omitempty"`
	Disturbed     []string `json:"disturbed_100ms,omitempty"`
	CleanEchoed   int      `json:"clean_echoed,omitempty"`
	CleanP50      float64  `json:"clean_p50_us,omitempty"`
	CleanP99      float64  `json:"clean_p99_us,omitempty"`
	// SlowDisturbed is how many of the echoes over 2 ms were sent in a
	// disturbed slot: how much of the tail the probe explains.
	SlowDisturbed uint64 `json:"slow_in_disturbed,omitempty"`
	// Timeline: 10 ms slots around the worst round trip (latTLHeader).
	Timeline  []string `json:"timeline_10ms,omitempty"`
	StartNS   int64    `json:"start_unix_ns"`
	StartMono int64    `json:"start_monotonic_ns"`
}

// latCounts is what one sender thread saw in one phase.
type latCounts struct {
	sent, skipped, refused, echoed, late, unstamped uint64
	holdSum                                         uint64
	rtt, user                                       latHist
	out, back                                       latHist // the two ways (latResult.OutP50)
	// slow counts the echoes over latSlowNS per latSlotNS of their send
	// time since the phase began: whether the tail is spread over the
	// phase or bunched in a few stalls.
	slow [latSlots]uint32
	// bySlot holds every RTT (µs) by its send slot, with -lat-probe only.
	bySlot [][]int32
	probe  []probeRun
	tl     latTimeline
	// startNS is the phase's start, CLOCK_REALTIME: the timeline's zero.
	startNS int64
	// startMono is the same moment in CLOCK_MONOTONIC (perf's -k mono).
	startMono int64
}

func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

const (
	latSlowNS = 2_000_000   // 2 ms
	latSlotNS = 100_000_000 // 100 ms
	latSlots  = 1200        // 120 s
)

func (c *latCounts) merge(o *latCounts) {
	c.sent += o.sent
	c.skipped += o.skipped
	c.refused += o.refused
	c.echoed += o.echoed
	c.late += o.late
	c.unstamped += o.unstamped
	c.holdSum += o.holdSum
	c.rtt.merge(&o.rtt)
	c.user.merge(&o.user)
	c.out.merge(&o.out)
	c.back.merge(&o.back)
	for i, v := range o.slow {
		c.slow[i] += v
	}
	if o.bySlot != nil && c.bySlot == nil {
		c.bySlot = make([][]int32, latSlots)
	}
	for i, v := range o.bySlot {
		c.bySlot[i] = append(c.bySlot[i], v...)
	}
	c.tl.merge(&o.tl)
}

// slowSlots lists the slots with slow echoes as "second: count".
func (c *latCounts) slowSlots() []string {
	var out []string
	for i, v := range c.slow {
		if v > 0 {
			out = append(out, fmt.Sprintf("%.1f:%d", float64(i)*latSlotNS/1e9, v))
		}
	}
	return out
}

// latOwed is how many datagrams a flow should have sent el into a phase:
// flow i of n, each at perFlow per second, starts at i/(n·perFlow) so the
// flows' sends are spread over the interval instead of leaving in one
// burst per interval.
func latOwed(el time.Duration, perFlow float64, i, n int) uint64 {
	v := el.Seconds()*perFlow + 1 - float64(i)/float64(n)
	if v < 1 {
		return 0
	}
	return uint64(v)
}

// latDue is what flow i of n, at perFlow datagrams/s, sends now (el into
// the phase, done sent or skipped so far): the datagrams due in the last
// late of sending time, and skip, those due earlier, which a thread that
// was descheduled longer than late does not send (and counts). So a
// stalled sender thread resumes at the offered rate instead of bursting
// what it owes: at 50 datagrams/s per flow a flow is due one every 20 ms,
// and a per-flow cap of "two datagrams" (the earlier rule) let a 40 ms
// stall come back as one datagram from every flow at once.
func latDue(el, late time.Duration, perFlow float64, i, n int, done uint64) (send, skip uint64) {
	target := latOwed(el, perFlow, i, n)
	if target <= done {
		return 0, 0
	}
	if floor := latOwed(el-late, perFlow, i, n); el > late && floor > done {
		skip, done = floor-done, floor
	}
	return target - done, skip
}

// latWorker sends for its flows (global indices idx of total) at perFlow
// round trips/s each until stop, reading echoes until stop+drain.
func latWorker(flows []*satFlow, idx []int, total int, step uint32, perFlow float64, payload int, start time.Time, stop, drain, tick time.Duration, out *latCounts) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ep, err := flowEpoll(flows)
	if err != nil {
		return err
	}
	defer unix.Close(ep)
	tx, rx := channelRings(payload)
	rx.withControl()
	skipped := make([]uint64, len(flows))
	events := make([]unix.EpollEvent, len(flows))
	for {
		now := time.Now()
		el := now.Sub(start)
		if el >= stop+drain {
			return nil
		}
		if el < stop {
			for fi, f := range flows {
				owed, skip := latDue(el, 2*tick, perFlow, idx[fi], total, f.sent+skipped[fi])
				skipped[fi] += skip
				out.skipped += skip
				if owed == 0 {
					continue
				}
				for owed > 0 {
					n := int(min(owed, satBatch))
					ts := time.Now().UnixNano()
					for i := 0; i < n; i++ {
						b := tx.bufs[i][satHeader:]
						binary.BigEndian.PutUint32(b[latOffStep:], step)
						binary.BigEndian.PutUint32(b[latOffFlow:], f.index)
						binary.BigEndian.PutUint64(b[latOffSeq:], f.sent+uint64(i))
						binary.BigEndian.PutUint64(b[latOffSent:], uint64(ts))
						binary.BigEndian.PutUint64(b[latOffHold:], holdUnknown)
						if len(b) >= latOffEchoRx+8 {
							binary.BigEndian.PutUint64(b[latOffEchoRx:], 0)
						}
					}
					k, err := sendmmsg(f.fd, tx.msgs[:n])
					if err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.ENOBUFS) {
						return fmt.Errorf("sendmmsg: %w", err)
					}
					if k < n {
						out.refused += uint64(n - max(k, 0))
					}
					f.sent += uint64(n) // refused by its own socket: sent and lost
					out.tl[latTLIndex(ts, start.UnixNano())].sent += uint32(n)
					out.sent += uint64(n)
					owed -= uint64(n)
				}
			}
		}
		ne, err := unix.EpollWait(ep, events, 0)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
		for e := 0; e < ne; e++ {
			latRead(flows[events[e].Fd], rx, step, start.UnixNano(), out)
		}
		if d := tick - time.Since(now); d > 0 {
			ts := unix.NsecToTimespec(d.Nanoseconds())
			_ = unix.Nanosleep(&ts, nil)
		}
	}
}

// latRead drains f's socket, timing every echo of this step.
func latRead(f *satFlow, rx *mmsgRing, step uint32, startNS int64, out *latCounts) {
	for {
		rx.rearm()
		k, err := recvmmsg(f.fd, rx.msgs, unix.MSG_DONTWAIT)
		if err != nil || k == 0 {
			return
		}
		user := time.Now().UnixNano()
		for i := 0; i < k; i++ {
			b := rx.bufs[i][:rx.msgs[i].n]
			if len(b) < satHeader+latStamp || binary.BigEndian.Uint16(b) != satChannel {
				continue // not ours: STUN answers, stale frames
			}
			p := b[satHeader:]
			if binary.BigEndian.Uint32(p[latOffStep:]) != step {
				out.late++
				continue
			}
			out.echoed++
			sent := int64(binary.BigEndian.Uint64(p[latOffSent:]))
			hold := binary.BigEndian.Uint64(p[latOffHold:])
			crx, ok := rx.stamp(i)
			rtt, ok := latRTT(sent, crx, ok, hold)
			if !ok {
				out.unstamped++
				continue
			}
			out.holdSum += hold
			out.rtt.add(rtt)
			slot := min(max((sent-startNS)/latSlotNS, 0), latSlots-1)
			if rtt > latSlowNS {
				out.slow[slot]++
			}
			if out.bySlot != nil {
				out.bySlot[slot] = append(out.bySlot[slot], int32(min(rtt/1000, 1<<31-1)))
			}
			out.user.add(user - sent)
			var echoRx int64
			if len(p) >= latOffEchoRx+8 {
				echoRx = int64(binary.BigEndian.Uint64(p[latOffEchoRx:]))
			}
			if way, back, ok := latWays(sent, echoRx, hold, crx); ok {
				out.out.add(way)
				out.back.add(back)
			}
			out.tl.echoed(startNS, sent, echoRx, hold, crx)
		}
		if k < len(rx.msgs) {
			return
		}
	}
}

// runLatPhase offers ld over flows, split over workers, for dur.
func runLatPhase(flows []*satFlow, workers int, step uint32, ld latLoad, payload int, dur, drain, tick time.Duration) (*latCounts, error) {
	workers = min(workers, len(flows))
	outs := make([]latCounts, workers)
	errs := make([]error, workers)
	perFlow := ld.rate / float64(len(flows))
	var wg sync.WaitGroup
	start, startMono := time.Now(), monoNow()
	var probe *workProbe
	if probeIterations > 0 {
		for w := range outs {
			outs[w].bySlot = make([][]int32, latSlots)
		}
		probe = startWorkProbe(start, *latProbeEvery, probeIterations)
	}
	for w := 0; w < workers; w++ {
		var mine []*satFlow
		var idx []int
		for i := w; i < len(flows); i += workers {
			mine = append(mine, flows[i])
			idx = append(idx, i)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = latWorker(mine, idx, len(flows), step, perFlow, payload, start, dur, drain, tick, &outs[w])
		}()
	}
	wg.Wait()
	total := &latCounts{startNS: start.UnixNano(), startMono: startMono}
	if probe != nil {
		total.probe = probe.finish()
	}
	for i := range outs {
		total.merge(&outs[i])
	}
	return total, errors.Join(errs...)
}

func runLatload(mode string, td satTurnd, coturnBin, peerBin string, rounds, size int, raw string) error {
	if mode != "loopback" {
		return fmt.Errorf("-latload %q: only loopback is implemented", mode)
	}
	if size < latStamp {
		return fmt.Errorf("-size %d: the latency frame needs %d bytes", size, latStamp)
	}
	loads, err := parseLatLoads(*latLoads, *latPPS)
	if err != nil {
		return err
	}
	if *latProbe {
		if err := validProbeFlags(*latProbeEvery, *latProbeWork); err != nil {
			return err
		}
		probeIterations = probeIters(*latProbeWork)
		fmt.Fprintf(os.Stderr, "latload: work probe: %d rounds (~%v of CPU) every %v on each of %d CPUs\n", probeIterations, *latProbeWork, *latProbeEvery, runtime.NumCPU())
	}
	rawW, closeRaw, err := openRaw(raw)
	if err != nil {
		return err
	}
	defer closeRaw()
	env, err := newSatEnv(mode, td, coturnBin, peerBin)
	if err != nil {
		return err
	}
	defer env.close()
	echo, err := startEchoPeer(env.peer, true)
	if err != nil {
		return fmt.Errorf("echo peer: %w", err)
	}
	defer echo.close()
	ownPorts[env.peer.Port()] = true

	if *latDirect {
		port, err := freePort()
		if err != nil {
			return err
		}
		de, err := startEchoPeerAt(netip.AddrPortFrom(env.peer.Addr(), uint16(port)), true, satHeader+latOffHold)
		if err != nil {
			return fmt.Errorf("direct echo peer: %w", err)
		}
		defer de.close()
		directEcho = de
		ownPorts[de.addr.Port()] = true
		env.kinds = append(env.kinds, serverKind{name: "direct"})
	}
	var names []string
	for _, k := range env.kinds {
		names = append(names, k.name)
	}
	results := map[string]map[string][]latResult{} // load -> server -> per round
	step := uint32(0)
	for r := 0; r < rounds; r++ {
		for li, ld := range loads {
			order := slices.Clone(env.kinds)
			if (r+li)%2 == 1 {
				slices.Reverse(order)
			}
			for _, k := range order {
				step++
				res, err := latPhase(env, k, echo, ld, step, size)
				if err != nil {
					fmt.Fprintf(os.Stderr, "latload round %d %s %s: %v\n", r+1, ld.name, k.name, err)
					continue
				}
				if results[ld.name] == nil {
					results[ld.name] = map[string][]latResult{}
				}
				results[ld.name][k.name] = append(results[ld.name][k.name], res)
				line, _ := json.Marshal(map[string]any{"mode": "latload-" + mode, "round": r + 1, "phase": ld.name, "server": k.name, "result": res})
				fmt.Fprintln(rawW, string(line))
				fmt.Fprintf(os.Stderr, "latload round %d %-12s %-6s sent %d echoed %d loss %.3f%% unstamped %d skipped %d | p50 %.0f p90 %.0f p99 %.0f p99.9 %.0f max %.0f µs | user p50 %.0f p99 %.0f | out p50/p99 %.0f/%.0f back %.0f/%.0f | hold %.1f µs | server %.2f cores %.2f µs/RT gen %.2f echo %.2f rcvbuf %v\n",
					r+1, ld.name, k.name, res.Sent, res.Echoed, res.LossPct, res.Unstamped, res.Skipped,
					res.P50, res.P90, res.P99, res.P999, res.Max, res.UserP50, res.UserP99,
					res.OutP50, res.OutP99, res.BackP50, res.BackP99, res.HoldMean,
					res.ServerCPU, res.CPUPerRT, res.GenCPU, res.EchoCPU, res.RcvbufErrs)
				if len(res.Timeline) > 0 {
					fmt.Fprintf(os.Stderr, "    timeline around the worst echo, phase start %d ns CLOCK_REALTIME, %d ns CLOCK_MONOTONIC (%s):\n      %s\n", res.StartNS, res.StartMono, latTLHeader(), strings.Join(res.Timeline, "\n      "))
				}
				if len(res.SlowSlots) > 0 {
					fmt.Fprintf(os.Stderr, "    echoes over 2 ms by send time (s:count): %s\n", strings.Join(res.SlowSlots, " "))
				}
				if *latProbe {
					fmt.Fprintf(os.Stderr, "    work probe: median %.1f µs, %d slowed runs, disturbed slots %v; clean: %d echoes, p50 %.0f p99 %.0f µs; %d of the echoes over 2 ms were sent in disturbed slots\n",
						res.ProbeMedianUS, res.ProbeSlowed, res.Disturbed, res.CleanEchoed, res.CleanP50, res.CleanP99, res.SlowDisturbed)
				}
			}
		}
	}
	var phases []string
	for _, ld := range loads {
		phases = append(phases, ld.name)
	}
	latReport(os.Stdout, results, phases, names, size, rounds)
	return nil
}

// latPhase starts k fresh, sets up ld.flows flows with receive stamps and
// runs one phase.
func latPhase(env *satEnv, k serverKind, echo *echoPeer, ld latLoad, step uint32, size int) (latResult, error) {
	if k.name == "direct" {
		return latDirectPhase(env, ld, step, size)
	}
	srv, err := env.start(k)
	if err != nil {
		return latResult{}, err
	}
	defer srv.stop()
	server := srv.addr.AddrPort()
	server = netip.AddrPortFrom(server.Addr().Unmap(), server.Port())
	flows := make([]*satFlow, 0, ld.flows)
	defer func() {
		for _, f := range flows {
			delete(ownPorts, localPort(f.fd))
			f.close()
		}
	}()
	for i := 0; i < ld.flows; i++ {
		f, err := setupFlow(i, env.flowLocal(i), server, env.peer)
		if err != nil {
			return latResult{}, fmt.Errorf("%s: %w", k.name, err)
		}
		flows = append(flows, f)
		if err := enableRxTimestamps(f.fd); err != nil {
			return latResult{}, fmt.Errorf("SO_TIMESTAMPNS: %w", err)
		}
		ownPorts[localPort(f.fd)] = true
	}
	serverPort = server.Port()
	dur := time.Duration(*latSecs * float64(time.Second))
	drain := 300 * time.Millisecond
	self := os.Getpid()
	s0, g0, e0, b0 := srv.schedCPU(), schedCPUOf(self), echoCPU(echo), env.rcvbuf()
	probe := startProbe(srv, k.name, int(step), int(ld.rate)) // -sat-probe, as in the ramps
	c, err := runLatPhase(flows, *satWorkers, step, ld, size, dur, drain, *satTick)
	probe()
	if err != nil {
		return latResult{}, err
	}
	s1, g1, e1, b1 := srv.schedCPU(), schedCPUOf(self), echoCPU(echo), env.rcvbuf()
	return c.result(ld, dur+drain, s1-s0, g1-g0, e1-e0, b0, b1), nil
}

// result turns a phase's counts into its figures: wall is the phase's
// sending and drain time; server, gen (this process) and echo are CPU
// spent over it; b0, b1 the drop counters before and after.
func (c *latCounts) result(ld latLoad, wall, server, gen, echo time.Duration, b0, b1 []int64) latResult {
	w := wall.Seconds()
	res := latResult{
		Flows: ld.flows, Offered: ld.rate,
		Sent: c.sent, Skipped: c.skipped, SendRefused: c.refused, Echoed: c.echoed, Late: c.late,
		Unstamped: c.unstamped, Negative: c.rtt.neg,
		P50: c.rtt.quantile(0.5), P90: c.rtt.quantile(0.9), P99: c.rtt.quantile(0.99), P999: c.rtt.quantile(0.999),
		Max: c.rtt.maxUS(), UserP50: c.user.quantile(0.5), UserP99: c.user.quantile(0.99),
		OutP50: c.out.quantile(0.5), OutP99: c.out.quantile(0.99),
		BackP50: c.back.quantile(0.5), BackP99: c.back.quantile(0.99),
		ServerCPU: server.Seconds() / w, EchoCPU: echo.Seconds() / w,
		GenCPU:    (gen - echo).Seconds() / w,
		SlowSlots: c.slowSlots(), StartNS: c.startNS, StartMono: c.startMono,
	}
	if *latTimelineFlag {
		res.Timeline, _ = c.tl.around(30, 30)
	}
	if c.bySlot != nil {
		slots := int((wall + latSlotNS - 1) / latSlotNS)
		v := judgeProbe(c.probe, slots)
		res.ProbeMedianUS, res.ProbeSlowed = float64(v.medianNS)/1e3, v.slowed
		res.Disturbed = disturbedList(v.disturbed)
		res.CleanP50, res.CleanP99, res.CleanEchoed = cleanQuantiles(c.bySlot, v.disturbed)
		for s, d := range v.disturbed {
			if d {
				res.SlowDisturbed += uint64(c.slow[s])
			}
		}
	}
	if c.sent > 0 {
		res.LossPct = 100 * (1 - float64(c.echoed)/float64(c.sent))
	}
	if n := c.rtt.n; n > 0 {
		res.HoldMean = float64(c.holdSum) / float64(n) / 1e3
	}
	if c.echoed > 0 {
		res.CPUPerRT = float64(server.Nanoseconds()) / 1e3 / float64(c.echoed)
	}
	for i := range b1 {
		res.RcvbufErrs = append(res.RcvbufErrs, b1[i]-b0[i])
	}
	return res
}

// probeIterations is the work probe's piece of work (probeSpin rounds),
// calibrated once per run; 0 without -lat-probe.
var probeIterations int

// directEcho is the echo peer of the "direct" phases (-lat-direct).
var directEcho *echoPeer

// latDirectPhase runs ld with the flows sending their ChannelData frames
// straight to directEcho: the same sockets, stamps, pacing and echo, no
// relay. Its RTT is the floor the relays' figures stand on: two loopback
// transmits and the echo's sendmmsg.
func latDirectPhase(env *satEnv, ld latLoad, step uint32, size int) (latResult, error) {
	flows := make([]*satFlow, 0, ld.flows)
	defer func() {
		for _, f := range flows {
			delete(ownPorts, localPort(f.fd))
			f.close()
		}
	}()
	to := directEcho.addr
	for i := 0; i < ld.flows; i++ {
		fd, err := udpSocket(env.flowLocal(i), 4<<20)
		if err != nil {
			return latResult{}, err
		}
		f := &satFlow{fd: fd, index: uint32(i)}
		flows = append(flows, f)
		if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: to.Addr().As4(), Port: int(to.Port())}); err != nil {
			return latResult{}, err
		}
		if err := enableRxTimestamps(fd); err != nil {
			return latResult{}, fmt.Errorf("SO_TIMESTAMPNS: %w", err)
		}
		ownPorts[localPort(fd)] = true
	}
	dur := time.Duration(*latSecs * float64(time.Second))
	drain := 300 * time.Millisecond
	self := os.Getpid()
	g0, e0, b0 := schedCPUOf(self), echoCPU(directEcho), env.rcvbuf()
	c, err := runLatPhase(flows, *satWorkers, step, ld, size, dur, drain, *satTick)
	if err != nil {
		return latResult{}, err
	}
	g1, e1, b1 := schedCPUOf(self), echoCPU(directEcho), env.rcvbuf()
	return c.result(ld, dur+drain, 0, g1-g0, e1-e0, b0, b1), nil
}

func localPort(fd int) uint16 {
	if sa, err := unix.Getsockname(fd); err == nil {
		if in, ok := sa.(*unix.SockaddrInet4); ok {
			return uint16(in.Port)
		}
	}
	return 0
}

// latReport prints, per phase and server, the medians over rounds of
// every quantile with their spread, the per-round p50 and p99, and the
// turnd/coturn ratios of the medians.
func latReport(w io.Writer, results map[string]map[string][]latResult, phases, names []string, size, rounds int) {
	fmt.Fprintf(w, "\n## Latency with kernel receive timestamps (loopback): %d B payload, %.0f s per phase, %d sender threads, %d alternating rounds\n\n",
		size, *latSecs, *satWorkers, rounds)
	fmt.Fprintln(w, "RTT in µs: median over rounds (min–max); per round in run order of rounds.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| phase | offered RT/s | server | p50 | p90 | p99 | p99.9 | max | p50 per round | p99 per round | user-space p50 / p99 | loss % | server CPU µs/RT |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|")
	for _, ph := range phases {
		med := map[string][2]float64{}
		for _, n := range names {
			rs := results[ph][n]
			if len(rs) == 0 {
				continue
			}
			col := func(f func(latResult) float64) []float64 {
				var v []float64
				for _, r := range rs {
					v = append(v, f(r))
				}
				return v
			}
			p50 := col(func(r latResult) float64 { return r.P50 })
			p99 := col(func(r latResult) float64 { return r.P99 })
			med[n] = [2]float64{median(p50), median(p99)}
			fmt.Fprintf(w, "| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %.0f / %.0f | %.3f | %.2f |\n", ph, rs[0].Offered, n,
				spread(p50, "%.0f"), spread(col(func(r latResult) float64 { return r.P90 }), "%.0f"), spread(p99, "%.0f"),
				spread(col(func(r latResult) float64 { return r.P999 }), "%.0f"), spread(col(func(r latResult) float64 { return r.Max }), "%.0f"),
				joinF(p50, "%.0f"), joinF(p99, "%.0f"),
				median(col(func(r latResult) float64 { return r.UserP50 })), median(col(func(r latResult) float64 { return r.UserP99 })),
				median(col(func(r latResult) float64 { return r.LossPct })), median(col(func(r latResult) float64 { return r.CPUPerRT })))
		}
		if c, t := med["coturn"], med["turnd"]; c[0] > 0 && c[1] > 0 && t[0] > 0 {
			fmt.Fprintf(w, "| %s | | **turnd/coturn** | **%.2fx** | | **%.2fx** | | | | | | | |\n", ph, t[0]/c[0], t[1]/c[1])
		}
	}
	if *latProbe {
		latCleanReport(w, results, phases, names)
	}
}

// latCleanReport prints the work probe's clean figures (latprobe.go): per
// phase and server the medians over rounds, and per round turnd's clean
// p99 over coturn's.
func latCleanReport(w io.Writer, results map[string]map[string][]latResult, phases, names []string) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Clean figures (-lat-probe): echoes sent outside the 100 ms slots in which the work probe saw the CPUs slow down, and the slots next to them. Medians over rounds (min–max).")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| phase | server | disturbed slots | clean echoes % | clean p50 | clean p99 | clean p99 per round | p99 per round |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---|---|")
	for _, ph := range phases {
		for _, n := range names {
			rs := results[ph][n]
			if len(rs) == 0 {
				continue
			}
			var dist, share, p50, p99, raw []float64
			for _, r := range rs {
				dist = append(dist, float64(len(r.Disturbed)))
				share = append(share, 100*float64(r.CleanEchoed)/max(float64(r.Echoed), 1))
				p50 = append(p50, r.CleanP50)
				p99 = append(p99, r.CleanP99)
				raw = append(raw, r.P99)
			}
			fmt.Fprintf(w, "| %s | %s | %.0f | %.1f | %.0f | %s | %s | %s |\n", ph, n, median(dist), median(share), median(p50),
				spread(p99, "%.0f"), joinF(p99, "%.0f"), joinF(raw, "%.0f"))
		}
		// Results carry no round number: pair by position only when both
		// servers have every round (a failed phase would shift the pairs).
		t, c := results[ph]["turnd"], results[ph]["coturn"]
		if len(t) != len(c) {
			fmt.Fprintf(w, "| %s | turnd/coturn per round: not paired (%d against %d phases) | | | | | | |\n", ph, len(t), len(c))
			continue
		}
		var ratios []float64
		for i := range t {
			if c[i].CleanP99 > 0 && t[i].CleanP99 > 0 {
				ratios = append(ratios, t[i].CleanP99/c[i].CleanP99)
			}
		}
		if len(ratios) > 0 {
			fmt.Fprintf(w, "| %s | **turnd/coturn clean p99, per round** | | | | **%.2fx** (median) | %s | |\n", ph, median(ratios), joinF(ratios, "%.2f"))
		}
	}
}

// joinF formats v's values with format, joined by " · ".
func joinF(v []float64, format string) string {
	var s []string
	for _, x := range v {
		s = append(s, fmt.Sprintf(format, x))
	}
	return strings.Join(s, " · ")
}
