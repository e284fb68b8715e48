//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// runReport prints Markdown tables of the medians of the result lines in
// the files named by args (or stdin).
func runReport(args []string, stdout io.Writer) error {
	var all []result
	read := func(r io.Reader, name string) error {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if !strings.HasPrefix(line, "{") {
				continue
			}
			var res result
			if err := json.Unmarshal([]byte(line), &res); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			all = append(all, res)
		}
		return sc.Err()
	}
	if len(args) == 0 {
		if err := read(os.Stdin, "stdin"); err != nil {
			return err
		}
	}
	for _, name := range args {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		err = read(f, name)
		f.Close()
		if err != nil {
			return err
		}
	}

	type group struct {
		key  string
		runs []result
	}
	var groups []*group
	find := func(key string) *group {
		for _, g := range groups {
			if g.key == key {
				return g
			}
		}
		g := &group{key: key}
		groups = append(groups, g)
		return g
	}
	for _, r := range all {
		k := fmt.Sprintf("%s|%s|%d|%d|%s|%g|%d", r.Bench, r.Target, r.Conns, r.Room, r.Mode, r.Offered, r.Window)
		g := find(k)
		g.runs = append(g.runs, r)
	}
	med := func(g *group, f func(result) float64) float64 {
		v := make([]float64, len(g.runs))
		for i, r := range g.runs {
			v[i] = f(r)
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	w := func(format string, a ...any) { fmt.Fprintf(stdout, format, a...) }
	// spread is the median with the range of the runs: "9.4 (9.1-9.8)".
	spread := func(g *group, prec int, f func(result) float64) string {
		lo, hi := f(g.runs[0]), f(g.runs[0])
		for _, r := range g.runs {
			lo, hi = min(lo, f(r)), max(hi, f(r))
		}
		if len(g.runs) == 1 {
			return fmt.Sprintf("%.*f", prec, med(g, f))
		}
		return fmt.Sprintf("%.*f (%.*f-%.*f)", prec, med(g, f), prec, lo, prec, hi)
	}

	w("Idle connections (rooms of 2; PeerJS: registered ids). Medians of %s.\n\n", "the runs listed")
	w("| server | connections | runs | alive at end | RSS before -> after (MiB) | RSS per connection (KiB) | Go live heap / stack per conn (KiB) | idle server CPU (%% of a core) | connect time (s) | load avg |\n")
	w("|---|---:|---:|---:|---|---:|---|---:|---:|---:|\n")
	for _, g := range groups {
		r0 := g.runs[0]
		if r0.Bench != "mem" {
			continue
		}
		gostr := "-"
		if r0.GoLiveHeapPerConn != 0 {
			gostr = fmt.Sprintf("%.1f / %.1f", med(g, func(r result) float64 { return r.GoLiveHeapPerConn })/1024,
				med(g, func(r result) float64 { return r.GoStackPerConn })/1024)
		}
		w("| %s | %d | %d | %.0f | %.0f -> %.0f | %s | %s | %.1f | %.1f | %.1f |\n", name(r0.Target), r0.Conns, len(g.runs),
			med(g, func(r result) float64 { return float64(r.Alive) }),
			med(g, func(r result) float64 { return mib(r.RSSBefore) }),
			med(g, func(r result) float64 { return mib(r.RSSAfter) }),
			spread(g, 1, func(r result) float64 { return r.BytesPerConn / 1024 }), gostr,
			med(g, func(r result) float64 { return r.IdleCPUPct }),
			med(g, func(r result) float64 { return r.ConnectSec }),
			med(g, func(r result) float64 { return r.Load1 }))
	}
	w("\nRelay (one-way latency from the sender's timestamp; RTT in sat mode). Medians of the runs.\n\n")
	w("| server | room | mode | connections | runs | msgs/s relayed | one-way p50 / p99 (us) | RTT p50 / p99 (us) | server CPU (%% of a core) | server CPU per msg (us) | errors | load avg |\n")
	w("|---|---:|---|---:|---:|---:|---|---|---:|---:|---:|---:|\n")
	for _, g := range groups {
		r0 := g.runs[0]
		if r0.Bench != "relay" {
			continue
		}
		mode := fmt.Sprintf("closed loop, %d in flight/conn", r0.Window)
		if r0.Mode == modeRate {
			mode = fmt.Sprintf("fixed %g msgs/s", r0.Offered)
		}
		rtt := "-"
		if r0.Mode == modeSat {
			rtt = fmt.Sprintf("%.0f / %.0f", med(g, func(r result) float64 { return r.RTTP50us }),
				med(g, func(r result) float64 { return r.RTTP99us }))
		}
		var errs int64
		for _, r := range g.runs {
			errs += r.Errors
		}
		room := fmt.Sprint(r0.Room)
		if r0.Target == targetPeerJS {
			room = "pairs"
		}
		w("| %s | %s | %s | %d | %d | %.0f | %s / %s | %s | %.0f | %s | %d | %.1f |\n", name(r0.Target), room, mode, r0.Conns, len(g.runs),
			med(g, func(r result) float64 { return r.MsgsPerSec }),
			spread(g, 0, func(r result) float64 { return r.P50us }),
			spread(g, 0, func(r result) float64 { return r.P99us }), rtt,
			med(g, func(r result) float64 { return r.ServerCPUPct }),
			spread(g, 1, func(r result) float64 { return r.CPUusPerMsg }), errs,
			med(g, func(r result) float64 { return r.Load1 }))
	}
	return nil
}

func name(target string) string {
	if target == targetPeerJS {
		return "PeerJS server"
	}
	return "signal hub"
}
