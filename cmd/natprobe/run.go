package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/buildinfo"
	"github.com/rtcsuite/rtcsuite/internal/conf"
	"github.com/rtcsuite/rtcsuite/natclass"
)

// Exit codes (docs/nat.md, "Exit codes").
const (
	exitOK           = 0 // probe: complete classification; predict: direct
	exitError        = 1 // runtime error (no socket, no server resolvable, unreadable file)
	exitUsage        = 2 // bad flags or arguments
	exitPartial      = 3 // probe: some behaviour unknown (plain server, lost answers, contradictions)
	exitBlocked      = 4 // probe: UDP blocked, no server answered
	exitMisconfig    = 5 // probe: the server's answers contradict themselves
	exitPeerReflex   = 6 // predict: direct only via peer-reflexive candidates
	exitRelayNeeded  = 7 // predict: a TURN relay is needed
	exitPortClosed   = 8 // probe: the server port is closed (ICMP port unreachable)
	envServers       = "NATPROBE_SERVER"
	defaultLifetimeM = 5 * time.Minute
)

const usageText = `natprobe: classify this host's NAT (RFC 4787 / RFC 5780) and say what it means for WebRTC.

Usage:
  natprobe [flags] --server HOST:PORT [--server HOST:PORT ...]
  natprobe predict MINE.json THEIRS.json [--json]

Use an RFC 5780 server (turnd --rfc5780, or coturn listening on two IPs with
an alternate port) for a full answer. With plain STUN servers, give two on
different IPs to tell endpoint-independent from endpoint-dependent mapping;
filtering then stays unknown.

Flags:
`

const exitText = `
Exit codes:
  0  complete classification (predict: direct)
  1  error (no socket, server name does not resolve, unreadable file)
  2  usage error
  3  partial classification: something is unknown (see "Why")
  4  UDP blocked: no server answered
  5  server misconfigured: its RFC 5780 answers contradict themselves
  6  predict: direct only via peer-reflexive candidates
  7  predict: relay (TURN) needed
  8  the server port is closed (ICMP port unreachable: wrong address or port, or the server is down)
With several address families the exit code follows the first one (IPv4).
`

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*s = append(*s, part)
		}
	}
	return nil
}

type config struct {
	servers     []string
	json        bool
	patient     bool
	lifetime    bool
	lifetimeMax time.Duration
	timeout     time.Duration
	only4       bool
	only6       bool
	peer        string
	quiet       bool
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "predict" {
		return runPredict(args[1:], stdout, stderr)
	}
	var cfg config
	var servers stringList
	fs := flag.NewFlagSet("natprobe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&servers, "server", "STUN server `host:port` (repeatable, or comma-separated; env "+envServers+"); port default 3478")
	fs.BoolVar(&cfg.json, "json", false, "write the report as JSON (schema "+natclass.SchemaVersion+") to stdout")
	fs.BoolVar(&cfg.patient, "patient", false, "wait longer for answers (10s per test, no adaptive waits) on slow or very lossy paths")
	fs.BoolVar(&cfg.lifetime, "lifetime", false, "also measure the mapping lifetime (idle times up to --lifetime-max; slow)")
	fs.DurationVar(&cfg.lifetimeMax, "lifetime-max", defaultLifetimeM, "longest idle time tried by --lifetime")
	fs.DurationVar(&cfg.timeout, "timeout", 0, "how long each test waits for an answer, retransmitting (default: adaptive, 12 copies spaced by about twice the measured round trip; 1.6s until it is measured)")
	fs.BoolVar(&cfg.only4, "4", false, "probe IPv4 only")
	fs.BoolVar(&cfg.only6, "6", false, "probe IPv6 only")
	fs.StringVar(&cfg.peer, "peer", "", "after probing, predict connectivity with the host of this saved --json `file`")
	fs.BoolVar(&cfg.quiet, "q", false, "no progress lines on stderr")
	version := fs.Bool("version", false, "print the version and VCS revision, then exit")
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText)
		conf.PrintDefaults(stderr, fs)
		fmt.Fprint(stderr, exitText)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *version {
		fmt.Fprintln(stdout, buildinfo.Line("natprobe"))
		return exitOK
	}
	cfg.servers = servers
	if len(cfg.servers) == 0 {
		var env stringList
		_ = env.Set(getenv(envServers))
		cfg.servers = env
	}
	var problems []string
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Sprintf("unexpected arguments %q (did you mean \"natprobe predict A.json B.json\"?)", fs.Args()))
	}
	if len(cfg.servers) == 0 {
		problems = append(problems, "no --server given (or "+envServers+"); e.g. --server turn.example.com:3478 for an RFC 5780 server, or two plain ones such as --server stun.l.google.com:19302 --server stun1.l.google.com:19302")
	}
	for _, s := range cfg.servers {
		if err := checkServer(s); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if cfg.only4 && cfg.only6 {
		problems = append(problems, "-4 and -6 exclude each other")
	}
	if cfg.timeout < 0 {
		problems = append(problems, "--timeout must not be negative")
	}
	if cfg.lifetime && cfg.lifetimeMax < time.Second {
		problems = append(problems, "--lifetime-max must be at least 1s")
	}
	var peer *natclass.Report
	if cfg.peer != "" {
		rep, err := readReport(cfg.peer)
		if err != nil {
			problems = append(problems, err.Error())
		} else {
			peer = &rep
		}
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(stderr, "natprobe: %s\n", p)
		}
		fmt.Fprintln(stderr, "natprobe: see natprobe --help")
		return exitUsage
	}

	rep, err := probe(ctx, cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "natprobe: %v\n", err)
		return exitError
	}
	if peer != nil {
		p := natclass.PredictReports(rep, *peer)
		rep.Prediction = &p
	}
	if cfg.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		err = enc.Encode(rep)
	} else {
		err = natclass.WriteText(stdout, rep)
	}
	if err != nil {
		fmt.Fprintf(stderr, "natprobe: write: %v\n", err)
		return exitError
	}
	if rep.Prediction != nil {
		return predictionCode(rep.Prediction.Outcome)
	}
	return resultCode(rep.Results[0])
}

func checkServer(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = s, "3478"
		if strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "[") {
			return fmt.Errorf("server %q: write IPv6 addresses as [addr]:port", s)
		}
	}
	if host == "" {
		return fmt.Errorf("server %q: no host", s)
	}
	var n uint16
	if _, err := fmt.Sscanf(port, "%d", &n); err != nil || n == 0 || fmt.Sprint(n) != port {
		return fmt.Errorf("server %q: bad port %q", s, port)
	}
	return nil
}

func resultCode(r natclass.Result) int {
	switch r.Verdict {
	case natclass.VerdictComplete:
		return exitOK
	case natclass.VerdictUDPBlocked:
		return exitBlocked
	case natclass.VerdictMisconfigured:
		return exitMisconfig
	case natclass.VerdictServerPortClosed:
		return exitPortClosed
	}
	return exitPartial
}

func predictionCode(o natclass.Outcome) int {
	switch o {
	case natclass.OutcomeDirect:
		return exitOK
	case natclass.OutcomePeerReflexive:
		return exitPeerReflex
	}
	return exitRelayNeeded
}

// hasIPv6 reports whether the host has a routable IPv6 address.
func hasIPv6() bool {
	for _, a := range natclass.LocalAddrs("ipv6") {
		if a.IsGlobalUnicast() && !a.IsLinkLocalUnicast() {
			return true
		}
	}
	return false
}

func probe(ctx context.Context, cfg config, stderr io.Writer) (natclass.Report, error) {
	rep := natclass.Report{Schema: natclass.SchemaVersion, Started: time.Now().UTC(), Servers: cfg.servers}
	families := []string{"ipv4", "ipv6"}
	switch {
	case cfg.only4:
		families = families[:1]
	case cfg.only6:
		families = families[1:]
	case !hasIPv6():
		families = families[:1]
		rep.Skipped = append(rep.Skipped, natclass.SkippedFamily{Family: "ipv6", Reason: "this host has no routable IPv6 address"})
	}
	var steps []time.Duration
	for _, d := range natclass.DefaultLifetimeSteps {
		if d <= cfg.lifetimeMax {
			steps = append(steps, d)
		}
	}
	if len(steps) == 0 || steps[len(steps)-1] < cfg.lifetimeMax {
		steps = append(steps, cfg.lifetimeMax)
	}
	var mu sync.Mutex
	progress := func(fam string) func(string) {
		if cfg.quiet {
			return nil
		}
		return func(line string) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintf(stderr, "natprobe: [%s] %s\n", fam, line)
		}
	}
	if !cfg.quiet {
		msg := "about 2 s"
		if cfg.patient {
			msg = "up to about 20 s"
		}
		if cfg.lifetime {
			msg += fmt.Sprintf(", plus up to %v for --lifetime", cfg.lifetimeMax)
		}
		fmt.Fprintf(stderr, "natprobe: probing %s via %s (%s)\n", strings.Join(families, " and "), strings.Join(cfg.servers, ", "), msg)
	}
	start := time.Now()
	results := make([]*natclass.Result, len(families))
	errs := make([]error, len(families))
	var wg sync.WaitGroup
	for i, fam := range families {
		wg.Go(func() {
			obs, err := natclass.Probe(ctx, natclass.Options{
				Servers:       cfg.servers,
				Family:        fam,
				Patient:       cfg.patient,
				Timeout:       cfg.timeout,
				Lifetime:      cfg.lifetime,
				LifetimeSteps: steps,
				Progress:      progress(fam),
			})
			if err != nil {
				errs[i] = err
				return
			}
			r := natclass.Classify(obs)
			results[i] = &r
		})
	}
	wg.Wait()
	rep.DurationMS = float64(time.Since(start).Microseconds()) / 1000
	var failed []error
	for i, fam := range families {
		if results[i] != nil {
			rep.Results = append(rep.Results, *results[i])
			continue
		}
		failed = append(failed, errs[i])
		rep.Skipped = append(rep.Skipped, natclass.SkippedFamily{Family: fam, Reason: errs[i].Error()})
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("interrupted: %w", err)
	}
	if len(rep.Results) == 0 {
		return rep, errors.Join(failed...)
	}
	return rep, nil
}

func readReport(path string) (natclass.Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return natclass.Report{}, err
	}
	defer f.Close()
	rep, err := natclass.ParseReport(f)
	if err != nil {
		return natclass.Report{}, fmt.Errorf("%s: %w", path, err)
	}
	return rep, nil
}

func runPredict(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("natprobe predict", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "write the prediction as JSON")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: natprobe predict [--json] MINE.json THEIRS.json\n\nPredicts whether the two hosts whose natprobe --json reports are given can connect directly.\n\n")
		conf.PrintDefaults(stderr, fs)
		fmt.Fprint(stderr, exitText)
	}
	// Allow flags after the file names too.
	var files []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return exitOK
			}
			return exitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(files) != 2 {
		fmt.Fprintf(stderr, "natprobe predict: want two report files, got %d\n", len(files))
		fs.Usage()
		return exitUsage
	}
	var reps [2]natclass.Report
	var problems []string
	for i, f := range files {
		rep, err := readReport(f)
		if err != nil {
			problems = append(problems, err.Error())
		}
		reps[i] = rep
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(stderr, "natprobe predict: %s\n", p)
		}
		return exitError
	}
	p := natclass.PredictReports(reps[0], reps[1])
	var err error
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		err = enc.Encode(p)
	} else {
		err = natclass.WritePrediction(stdout, p)
	}
	if err != nil {
		fmt.Fprintf(stderr, "natprobe predict: write: %v\n", err)
		return exitError
	}
	return predictionCode(p.Outcome)
}
