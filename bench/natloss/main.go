//go:build linux

// Command natloss measures how well natprobe classifies the NAT lab under
// random UDP loss: every lab case (e2e/natlab) is built with LossPercent on
// the router (nft numgen, both directions), and natprobe runs several times
// per case against turnd and coturn in RFC 5780 mode. It reports the share
// of runs classified exactly and the median classification time (natprobe's
// own duration_ms). Optionally it runs coturn's turnutils_natdiscovery (a
// single-try client) the same way, as the reference.
//
// Needs root, iproute2, nftables and coturn. Not part of go test; see
// bench/natloss.sh.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rtcsuite/rtcsuite/e2e/natlab"
	"github.com/rtcsuite/rtcsuite/natclass"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "natloss:", err)
		os.Exit(1)
	}
}

type config struct {
	natprobe, turnd string
	runs, loss      int
	parallel        int
	cases           string
	natdiscovery    bool
	patient         bool
	keep            string
	noReset         bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg config
	fs := flag.NewFlagSet("natloss", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.natprobe, "natprobe", "", "natprobe binary (required)")
	fs.StringVar(&cfg.turnd, "turnd", "", "turnd binary (required)")
	fs.IntVar(&cfg.runs, "runs", 10, "natprobe runs per case and server")
	fs.IntVar(&cfg.loss, "loss", 20, "random UDP loss on the router, percent (each direction)")
	fs.IntVar(&cfg.parallel, "parallel", 4, "lab cases measured at once")
	fs.StringVar(&cfg.cases, "cases", "", "comma-separated case names (default: all)")
	fs.BoolVar(&cfg.natdiscovery, "natdiscovery", false, "also run turnutils_natdiscovery -m / -f per run (reference)")
	fs.BoolVar(&cfg.patient, "patient", false, "run natprobe with --patient")
	fs.BoolVar(&cfg.noReset, "no-reset", false, "keep NAT state (conntrack, mapping maps) between runs instead of resetting it")
	fs.StringVar(&cfg.keep, "keep", "", "write the JSON report of every wrong natprobe run into this `dir`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var problems []error
	if cfg.natprobe == "" || cfg.turnd == "" {
		problems = append(problems, errors.New("--natprobe and --turnd are required"))
	}
	if cfg.runs < 1 || cfg.parallel < 1 {
		problems = append(problems, errors.New("--runs and --parallel must be at least 1"))
	}
	if cfg.loss < 0 || cfg.loss > 99 {
		problems = append(problems, errors.New("--loss must be within 0..99"))
	}
	if cfg.keep != "" {
		if err := os.MkdirAll(cfg.keep, 0o755); err != nil {
			problems = append(problems, err)
		}
	}
	if os.Geteuid() != 0 {
		problems = append(problems, errors.New("needs root (network namespaces, nftables)"))
	}
	var cases []natlab.Case
	for _, c := range natlab.Cases() {
		c.LossPercent = cfg.loss
		base := c
		base.LossPercent = 0
		if cfg.cases == "" || slices.Contains(strings.Split(cfg.cases, ","), base.Name()) {
			cases = append(cases, c)
		}
	}
	if len(cases) == 0 {
		problems = append(problems, fmt.Errorf("no case matches %q", cfg.cases))
	}
	if err := errors.Join(problems...); err != nil {
		return err
	}

	fmt.Fprintf(stdout, "natloss: %d cases x %d runs x 2 servers, %d%% UDP loss each way on the router, %d cases at once\n",
		len(cases), cfg.runs, cfg.loss, cfg.parallel)
	start := time.Now()
	results := make([]caseResult, len(cases))
	sem := make(chan struct{}, cfg.parallel)
	var wg sync.WaitGroup
	for i, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i] = measure(ctx, cfg, c)
			fmt.Fprintf(stderr, "natloss: %s done\n", c.Name())
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	report(stdout, cfg, results)
	fmt.Fprintf(stdout, "\nwall time %s\n", time.Since(start).Round(time.Second))
	return nil
}

// outcome is one natprobe run.
type outcome struct {
	ok       bool
	duration float64 // natprobe's duration_ms
	got      string  // classification when wrong, or the error
	raw      []byte  // natprobe's output
}

type caseResult struct {
	c       natlab.Case
	err     error // the lab or a server could not start
	servers map[string][]outcome
	nd      []bool // natdiscovery runs: mapping and filtering both right
	ndWrong []string
}

func measure(ctx context.Context, cfg config, c natlab.Case) caseResult {
	r := caseResult{c: c, servers: map[string][]outcome{}}
	lab, err := natlab.Build(ctx, c)
	if lab != nil {
		defer lab.Close()
	}
	if err != nil {
		r.err = err
		return r
	}
	dir, err := os.MkdirTemp("", "natloss-")
	if err != nil {
		r.err = err
		return r
	}
	defer os.RemoveAll(dir)
	if _, err := lab.StartCoturn(ctx, dir); err != nil {
		r.err = err
		return r
	}
	// Rate limits off: a limited answer looks exactly like a filtered one,
	// and this measures the NAT path, not turnd's limiter.
	if _, err := lab.StartTurnd(ctx, cfg.turnd, "--rfc5780-rate=-1", "--unauth-rate=-1"); err != nil {
		r.err = err
		return r
	}
	want := c.Want()
	servers := []struct{ name, addr string }{
		{"turnd", fmt.Sprintf("%s:%d", natlab.PublicIP1, natlab.TurndPort)},
		{"coturn", fmt.Sprintf("%s:%d", natlab.PublicIP1, natlab.CoturnPort)},
	}
	for i := 0; i < cfg.runs && ctx.Err() == nil; i++ {
		for _, s := range servers { // alternating
			// Every run meets a NAT without state from earlier runs: a
			// reused local port would otherwise inherit old mappings.
			if err := reset(ctx, cfg, lab); err != nil {
				r.err = err
				return r
			}
			o := probeOnce(ctx, cfg, lab, s.addr, want)
			if !o.ok && cfg.keep != "" {
				name := fmt.Sprintf("%s-%s-run%d.json", c.Name(), s.name, i+1)
				if err := os.WriteFile(filepath.Join(cfg.keep, name), o.raw, 0o644); err == nil {
					o.got += " (" + name + ")"
				}
			}
			r.servers[s.name] = append(r.servers[s.name], o)
		}
		if cfg.natdiscovery {
			if err := reset(ctx, cfg, lab); err != nil {
				r.err = err
				return r
			}
			ok, got := natDiscoveryOnce(ctx, lab, c)
			r.nd = append(r.nd, ok)
			if !ok {
				r.ndWrong = append(r.ndWrong, got)
			}
		}
	}
	return r
}

func reset(ctx context.Context, cfg config, lab *natlab.Lab) error {
	if cfg.noReset {
		return nil
	}
	return lab.ResetNAT(ctx)
}

func probeOnce(ctx context.Context, cfg config, lab *natlab.Lab, server string, want natlab.Want) outcome {
	args := []string{"--json", "-4", "-q", "--server", server}
	if cfg.patient {
		args = append(args, "--patient")
	}
	out, _ := lab.Exec(ctx, natlab.LAN, cfg.natprobe, args...) // exit codes 3-5 are results
	i := bytes.IndexByte(out, '{')
	if i < 0 {
		return outcome{got: "no JSON: " + string(out), raw: out}
	}
	rep, err := natclass.ParseReport(bytes.NewReader(out[i:]))
	if err != nil {
		return outcome{got: err.Error()}
	}
	res, ok := rep.Result("ipv4")
	if !ok {
		return outcome{got: "no ipv4 result"}
	}
	got := natlab.Want{Verdict: string(res.Verdict), NAT: string(res.NAT), Mapping: string(res.Mapping),
		Filtering: string(res.Filtering), Hairpinning: string(res.Hairpinning),
		PortPreservation: string(res.PortPreservation), Classic: res.Classic}
	o := outcome{ok: got == want, duration: rep.DurationMS, raw: out[i:]}
	if !o.ok {
		o.got = fmt.Sprintf("%+v", got)
	}
	return o
}

var ndVerdicts = map[string]natlab.Behavior{
	"No NAT! (Endpoint Independent Mapping)":         natlab.EndpointIndependent,
	"NAT with Endpoint Independent Mapping!":         natlab.EndpointIndependent,
	"NAT with Address Dependent Mapping!":            natlab.AddressDependent,
	"NAT with Address and Port Dependent Mapping!":   natlab.AddressPortDependent,
	"NAT with Endpoint Independent Filtering!":       natlab.EndpointIndependent,
	"NAT with Address Dependent Filtering!":          natlab.AddressDependent,
	"NAT with Address and Port Dependent Filtering!": natlab.AddressPortDependent,
}

func ndVerdict(out []byte, kind string) natlab.Behavior {
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if b, ok := ndVerdicts[line]; ok && strings.Contains(line, kind) {
			return b
		}
	}
	return ""
}

// natDiscoveryOnce runs turnutils_natdiscovery -m and -f against coturn and
// reports whether both verdicts match the case (UDP blocked: no verdict).
func natDiscoveryOnce(ctx context.Context, lab *natlab.Lab, c natlab.Case) (bool, string) {
	run := func(flag string) []byte {
		out, _ := lab.Exec(ctx, natlab.LAN, "turnutils_natdiscovery", flag, "-L", natlab.LANIP.String(), natlab.PublicIP1.String())
		return out
	}
	m, f := ndVerdict(run("-m"), "Mapping"), ndVerdict(run("-f"), "Filtering")
	wantM, wantF := c.Mapping, c.Filtering
	if c.NoNAT {
		wantM = natlab.EndpointIndependent
	}
	if c.UDPBlocked {
		wantM, wantF = "", ""
	}
	got := fmt.Sprintf("mapping %q filtering %q", m, f)
	return m == wantM && f == wantF, got
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func report(w io.Writer, cfg config, results []caseResult) {
	fmt.Fprintf(w, "\n| case | turnd correct | coturn correct | median ms (turnd / coturn) |")
	if cfg.natdiscovery {
		fmt.Fprintf(w, " turnutils_natdiscovery correct |")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "|---|---|---|---|")
	if cfg.natdiscovery {
		fmt.Fprintf(w, "---|")
	}
	fmt.Fprintln(w)
	var all []float64
	total, correct := 0, 0
	ndTotal, ndCorrect := 0, 0
	var wrong []string
	for _, r := range results {
		base := r.c
		base.LossPercent = 0
		name := base.Name()
		if r.err != nil {
			fmt.Fprintf(w, "| %s | lab error: %v |\n", name, r.err)
			continue
		}
		var cells []string
		var meds []string
		for _, s := range []string{"turnd", "coturn"} {
			ok := 0
			var d []float64
			for _, o := range r.servers[s] {
				if o.ok {
					ok++
				} else {
					wrong = append(wrong, fmt.Sprintf("%s/%s: %s", name, s, o.got))
				}
				if o.duration > 0 {
					d = append(d, o.duration)
				}
			}
			total += len(r.servers[s])
			correct += ok
			all = append(all, d...)
			cells = append(cells, fmt.Sprintf("%d/%d", ok, len(r.servers[s])))
			meds = append(meds, fmt.Sprintf("%.0f", median(d)))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |", name, cells[0], cells[1], strings.Join(meds, " / "))
		if cfg.natdiscovery {
			ok := 0
			for _, b := range r.nd {
				if b {
					ok++
				}
			}
			ndTotal += len(r.nd)
			ndCorrect += ok
			fmt.Fprintf(w, " %d/%d |", ok, len(r.nd))
			for _, g := range r.ndWrong {
				wrong = append(wrong, fmt.Sprintf("%s/turnutils_natdiscovery: %s", name, g))
			}
		}
		fmt.Fprintln(w)
	}
	pct := func(a, b int) float64 {
		if b == 0 {
			return 0
		}
		return 100 * float64(a) / float64(b)
	}
	fmt.Fprintf(w, "\nnatprobe: %d/%d runs correct (%.1f%%), median classification time %.0f ms\n",
		correct, total, pct(correct, total), median(all))
	if cfg.natdiscovery {
		fmt.Fprintf(w, "turnutils_natdiscovery: %d/%d runs with both mapping and filtering correct (%.1f%%)\n",
			ndCorrect, ndTotal, pct(ndCorrect, ndTotal))
	}
	if len(wrong) > 0 {
		fmt.Fprintln(w, "\nwrong runs:")
		for _, s := range wrong {
			fmt.Fprintln(w, "  "+s)
		}
	}
}
