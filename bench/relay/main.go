//go:build linux

// Command relay benchmarks turnd against coturn on one machine: the same
// load through each, alternating (A/B/B/A...), fresh server per phase, with
// medians over rounds. It is run by run.sh; see docs/benchmarks.md.
//
// Phases, each on a freshly started server:
//
//	uclient-N  coturn's turnutils_uclient, N flows (allocations, channels)
//	           x pps packets of size bytes per second to turnutils_peer:
//	           server CPU per relayed packet, rates, loss, RSS
//	rtt-N      pion/turn clients, N flows x pps: round-trip p50/p99, loss,
//	           CPU per packet again
//	idle       N idle allocations: RSS before/after, bytes per allocation
//
// Server CPU is utime+stime from /proc/PID/stat before and after a phase;
// a relayed packet is one traversal of the relay (client to peer or peer to
// client), so an echoed datagram counts twice.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	turndBin := flag.String("turnd", "", "turnd binary (required)")
	coturnBin := flag.String("turnserver", "turnserver", "coturn turnserver binary")
	uclientBin := flag.String("uclient", "turnutils_uclient", "coturn turnutils_uclient binary")
	peerBin := flag.String("peer", "turnutils_peer", "coturn turnutils_peer binary")
	rounds := flag.Int("rounds", 3, "alternating rounds (medians are over these)")
	loads := flag.String("loads", "10,200", "uclient phases: comma-separated flow counts")
	rttLoads := flag.String("rtt-loads", "10,200", "pion round-trip phases: comma-separated flow counts")
	tcpLoads := flag.String("tcp-loads", "", "uclient phases with TCP clients (uclient -t): comma-separated flow counts")
	pps := flag.Int("pps", 50, "packets per second per flow")
	size := flag.Int("size", 1200, "payload bytes per packet")
	sources := flag.Int("sources", 4, "uclient phases: client source addresses (127.0.0.2, .3, ...), one uclient process each, flows split evenly")
	seconds := flag.Int("seconds", 10, "sending time per load phase")
	idle := flag.Int("idle", 1000, "idle allocations for the memory phase (0 skips)")
	raw := flag.String("raw", "", "also write every measurement as JSON lines here")
	profile := flag.String("profile", "", "instead of the benchmark: profile an in-process turnd under uclient load, write the CPU profile here")
	profFlows := flag.Int("profile-flows", 200, "flows for -profile")
	only := flag.String("servers", "turnd,coturn", "servers to run (for experiments: a subset)")
	turndArgs := flag.String("turnd-args", "", "extra turnd flags, space-separated (experiments)")
	turndEnv := flag.String("turnd-env", "", "extra turnd environment, space-separated KEY=VALUE (experiments)")
	altArgs := flag.String("alt-args", "", "server \"turnd-alt\" (add it to -servers): turnd with these extra flags")
	altEnv := flag.String("alt-env", "", "server \"turnd-alt\": turnd with this extra environment")
	concurrent := flag.Bool("concurrent", false, "uclient phases: load every server at once, each with its own uclient processes (one shared echo peer), so that the machine's slow spells fall on all of them alike; for light loads, where the servers do not compete for the CPUs")
	altBin := flag.String("alt-turnd", "", "server \"turnd-alt\" (run.sh phases and -satload): this turnd binary (default -turnd), for an old/new A/B in one run")
	flag.Parse()

	if *hiccupDur > 0 {
		if err := runHiccup(os.Stdout, *hiccupDur, *hiccupGap); err != nil {
			fatal(err)
		}
		return
	}
	if *profile != "" {
		if err := profileTurnd(*profile, *uclientBin, *peerBin, *profFlows, *pps, *size, *seconds, *sources); err != nil {
			fatal(err)
		}
		return
	}
	if *turndBin == "" {
		fatal(fmt.Errorf("-turnd is required"))
	}
	for _, b := range []*string{coturnBin, uclientBin, peerBin} {
		p, err := exec.LookPath(*b)
		if err != nil {
			fatal(fmt.Errorf("%s not found (Debian package coturn): %w", *b, err))
		}
		*b = p
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		killTracked()
		vethCleanup() // veth.go: the namespaces, if any
		fmt.Fprintln(os.Stderr, "relaybench: interrupted")
		os.Exit(2)
	}()
	// Both generator modes run turnd-alt from -alt-turnd/-alt-args/-alt-env.
	td := satTurnd{bin: *turndBin, altBin: *altBin,
		args: strings.Fields(*turndArgs), env: strings.Fields(*turndEnv),
		altArgs: strings.Fields(*altArgs), altEnv: strings.Fields(*altEnv)}
	if *latMode != "" { // latload.go
		if err := runLatload(*latMode, td, *coturnBin, *peerBin, *rounds, *size, *raw); err != nil {
			fatal(err)
		}
		return
	}
	if *satMode != "" { // satload.go
		if err := runSatload(*satMode, td, *coturnBin, *peerBin, *rounds, *size, *raw); err != nil {
			fatal(err)
		}
		return
	}
	if *vethMode { // veth.go
		if err := runVeth(*turndBin, *coturnBin, *uclientBin, *peerBin, *rounds, *pps, *size, *seconds, *raw); err != nil {
			fatal(err)
		}
		return
	}

	peerCmd, peer, err := startPeer(*peerBin)
	if err != nil {
		fatal(err)
	}
	defer func() { peerCmd.Process.Kill(); _ = peerCmd.Wait() }()

	rawW, closeRaw, err := openRaw(*raw)
	if err != nil {
		fatal(err)
	}
	defer closeRaw()

	var kinds []serverKind
	for _, k := range []serverKind{
		turndKind(*turndBin, strings.Fields(*turndArgs), strings.Fields(*turndEnv)),
		coturnKind(*coturnBin, nil),
		withName(turndKind(orDefault(*altBin, *turndBin), strings.Fields(*altArgs), strings.Fields(*altEnv)), "turnd-alt"),
	} {
		if slices.Contains(strings.Split(*only, ","), k.name) {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) == 0 {
		fatal(fmt.Errorf("-servers %q names no server", *only))
	}
	var phases []phase
	for _, n := range ints(*loads) {
		phases = append(phases, phase{fmt.Sprintf("uclient-%d", n), func(s *server) (any, error) {
			return uclientLoad(*uclientBin, s, peer, n, *pps, *size, *seconds, *sources)
		}})
	}
	for _, n := range ints(*tcpLoads) {
		phases = append(phases, phase{fmt.Sprintf("uclient-tcp-%d", n), func(s *server) (any, error) {
			return uclientLoad(*uclientBin, s, peer, n, *pps, *size, *seconds, *sources, "-t")
		}})
	}
	for _, n := range ints(*rttLoads) {
		phases = append(phases, phase{fmt.Sprintf("rtt-%d", n), func(s *server) (any, error) {
			return pionRTT(s, peer, n, *pps, *size, max(*seconds/2, 3))
		}})
	}
	if *idle > 0 {
		phases = append(phases, phase{"idle", func(s *server) (any, error) { return idleAllocations(s, *idle) }})
	}

	results := map[string]map[string][]any{} // phase -> server -> per round
	started := time.Now()
	fmt.Fprintf(os.Stderr, "relaybench: %d CPUs, %d rounds, phases %d, peer %s\n", runtime.NumCPU(), *rounds, len(phases), peer)
	for r := 0; r < *rounds; r++ {
		for pi, ph := range phases {
			order := kinds
			if (r+pi)%2 == 1 {
				order = slices.Clone(kinds)
				slices.Reverse(order)
			}
			record := func(d ranPhase) {
				k, res, err := d.kind, d.res, d.err
				if err != nil {
					fmt.Fprintf(os.Stderr, "round %d %s %s: %v\n", r+1, ph.name, k.name, err)
					return
				}
				if results[ph.name] == nil {
					results[ph.name] = map[string][]any{}
				}
				results[ph.name][k.name] = append(results[ph.name][k.name], res)
				line, _ := json.Marshal(map[string]any{"round": r + 1, "phase": ph.name, "server": k.name, "result": res})
				fmt.Fprintln(rawW, string(line))
				fmt.Fprintf(os.Stderr, "[%4.0fs] round %d %-11s %-6s %s\n", time.Since(started).Seconds(), r+1, ph.name, k.name, brief(res))
			}
			if *concurrent && strings.HasPrefix(ph.name, "uclient") {
				for _, d := range runConcurrently(order, ph) {
					record(d)
				}
				continue
			}
			for _, k := range order {
				srv, err := startServer(k)
				if err != nil {
					fatal(err)
				}
				res, err := ph.run(srv)
				srv.stop()
				record(ranPhase{k, res, err})
			}
		}
	}
	var names []string
	for _, ph := range phases {
		names = append(names, ph.name)
	}
	report(os.Stdout, results, names, *pps, *size, *rounds)
}

// ranPhase is one server's result of one phase.
type ranPhase struct {
	kind serverKind
	res  any
	err  error
}

// runConcurrently starts every server, runs the phase against all of them
// at once and stops them: their CPU windows overlap, so a slow spell of the
// machine (docs/benchmarks.md, "The periodic stall") lands on each.
func runConcurrently(kinds []serverKind, ph phase) []ranPhase {
	done := make([]ranPhase, len(kinds))
	var srvs []*server
	for i, k := range kinds {
		srv, err := startServer(k)
		if err != nil {
			for _, s := range srvs {
				s.stop()
			}
			fatal(err)
		}
		srvs = append(srvs, srv)
		done[i].kind = k
	}
	var wg sync.WaitGroup
	for i, srv := range srvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			done[i].res, done[i].err = ph.run(srv)
		}()
	}
	wg.Wait()
	for _, s := range srvs {
		s.stop()
	}
	return done
}

func withName(k serverKind, name string) serverKind {
	k.name = name
	return k
}

// phase is one measurement, run on a fresh server.
type phase struct {
	name string
	run  func(*server) (any, error)
}

func brief(res any) string {
	switch r := res.(type) {
	case loadResult:
		return fmt.Sprintf("sources %d sent %d recv %d loss %.3f%% cpu %v (sched %v) %.2f us/pkt rss %.1f MiB p50 %.3f p99 %.3f ms",
			r.Sources, r.Sent, r.Received, r.LossPct, r.CPU, r.SchedCPU.Round(time.Millisecond), r.CPUPerPkt, mib(r.RSS), r.P50, r.P99)
	case idleResult:
		return fmt.Sprintf("rss %.1f -> %.1f MiB, %.0f B/alloc, %d threads", mib(r.RSSBefore), mib(r.RSSAfter), r.BytesPerAlloc, r.Threads)
	}
	return fmt.Sprint(res)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func ints(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			fatal(fmt.Errorf("bad count %q", f))
		}
		out = append(out, n)
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// report prints markdown tables of medians per phase and server.
func report(w io.Writer, results map[string]map[string][]any, phases []string, pps, size, rounds int) {
	fmt.Fprintf(w, "Medians over %d alternating rounds; %d-byte payloads, %d packets/s per flow.\n\n", rounds, size, pps)
	fmt.Fprintln(w, "| phase | server | relayed pkt/s | relayed Mbit/s | loss % | CPU µs/pkt | CPU µs/pkt (schedstat) | RTT p50 ms | RTT p99 ms | RSS MiB |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, ph := range phases {
		if ph == "idle" {
			continue
		}
		cpuMed := map[string]float64{}
		for _, srv := range []string{"turnd", "coturn", "turnd-alt"} {
			rs := results[ph][srv]
			if len(rs) == 0 {
				continue
			}
			col := func(f func(loadResult) float64) float64 {
				var v []float64
				for _, r := range rs {
					v = append(v, f(r.(loadResult)))
				}
				return median(v)
			}
			cpuMed[srv] = col(func(r loadResult) float64 { return r.CPUPerPkt })
			rtt := func(v float64) string {
				if strings.HasPrefix(ph, "uclient") {
					return "-"
				}
				return fmt.Sprintf("%.3f", v)
			}
			fmt.Fprintf(w, "| %s | %s | %.0f | %.1f | %.3f | %.2f | %.2f | %s | %s | %.1f |\n", ph, srv,
				col(func(r loadResult) float64 { return r.PPS }),
				col(func(r loadResult) float64 { return r.Mbps }),
				col(func(r loadResult) float64 { return r.LossPct }),
				cpuMed[srv],
				col(func(r loadResult) float64 {
					return float64(r.SchedCPU.Nanoseconds()) / 1e3 / float64(max(r.counted(), 1))
				}),
				rtt(col(func(r loadResult) float64 { return r.P50 })),
				rtt(col(func(r loadResult) float64 { return r.P99 })),
				mib(int64(col(func(r loadResult) float64 { return float64(r.RSS) }))))
		}
		if cpuMed["coturn"] > 0 {
			fmt.Fprintf(w, "| %s | **turnd/coturn CPU** | | | | **%.2fx** | | | | |\n", ph, cpuMed["turnd"]/cpuMed["coturn"])
		}
	}
	if rs := results["idle"]; rs != nil {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| idle allocations | server | RSS before MiB | RSS after MiB | KiB per allocation | threads |")
		fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|")
		for _, srv := range []string{"turnd", "coturn", "turnd-alt"} {
			var before, after, per, thr []float64
			n := 0
			for _, r := range rs[srv] {
				ir := r.(idleResult)
				n = ir.Allocations
				before = append(before, float64(ir.RSSBefore))
				after = append(after, float64(ir.RSSAfter))
				per = append(per, ir.BytesPerAlloc)
				thr = append(thr, float64(ir.Threads))
			}
			if len(per) == 0 {
				continue
			}
			fmt.Fprintf(w, "| %d | %s | %.1f | %.1f | %.1f | %.0f |\n", n, srv,
				mib(int64(median(before))), mib(int64(median(after))), median(per)/1024, median(thr))
		}
	}
}

func fatal(err error) {
	killTracked()
	fmt.Fprintln(os.Stderr, "relaybench:", err)
	os.Exit(1)
}

// openRaw opens the -raw JSON-lines file, or discards the lines when path
// is empty; close releases the file.
func openRaw(path string) (w io.Writer, close func(), err error) {
	if path == "" {
		return io.Discard, func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}
