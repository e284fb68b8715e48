// Command soak runs turnd and signal (as built binaries) for a while under
// a mix of legitimate traffic and bounded attack traffic, and checks that
// they stay healthy: RSS, goroutines and open file descriptors stay flat,
// no legitimate flow loses data, and every health probe answers.
//
// Legitimate traffic: pion/turn echo flows over UDP and TCP (every message
// must come back, with retransmission), pion/webrtc data-channel pairs over
// relay-only ICE (every message in order), turnutils_uclient runs over TCP
// when it is installed (zero lost packets), and hub churn through the Go
// client in signaling/ (join, signal, leave).
//
// Attack traffic, a few per second at most: 64 KiB and 16-bit-overflow
// frames over TCP, frames trickled one byte at a time, ChannelData-only
// idle connections, unauthenticated and wrong-password Allocate floods,
// Connect over UDP, and oversize hub messages.
//
// bench/soak.sh builds the binaries and runs this; e2e runs a 2-minute
// version in CI. The exit status is non-zero when a check fails.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type options struct {
	turnd, signal, uclient string
	duration, sample       time.Duration
	flows, pairs           int
	attackRate             float64
	uclientEvery           time.Duration
	turndLogLevel          string
}

func main() {
	var o options
	flag.StringVar(&o.turnd, "turnd", "", "turnd binary (required)")
	flag.StringVar(&o.signal, "signal", "", "signal binary (required)")
	flag.StringVar(&o.uclient, "uclient", "turnutils_uclient", "coturn turnutils_uclient (skipped with a note when missing; empty = off)")
	flag.DurationVar(&o.duration, "duration", 30*time.Minute, "how long to soak")
	flag.DurationVar(&o.sample, "sample", 15*time.Second, "resource sampling interval")
	flag.IntVar(&o.flows, "flows", 8, "pion/turn echo flows (half UDP, half TCP)")
	flag.IntVar(&o.pairs, "pairs", 2, "pion/webrtc data-channel pairs")
	flag.Float64Var(&o.attackRate, "attack-rate", 4, "attack attempts per second")
	flag.DurationVar(&o.uclientEvery, "uclient-every", 30*time.Second, "pause between turnutils_uclient runs")
	flag.StringVar(&o.turndLogLevel, "turnd-log-level", "warn", "turnd's --log-level (its log is in the soak's log directory)")
	flag.Parse()
	if o.turnd == "" || o.signal == "" {
		fmt.Fprintln(os.Stderr, "soak: -turnd and -signal are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "soak: FAIL: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("soak: PASS")
}

// secret is the TURN REST secret turnd and signal share in the soak.
const secret = "soak-secret-for-turnd-and-signal"

// proc is one server under soak.
type proc struct {
	name    string
	cmd     *exec.Cmd
	admin   string // host:port of /metrics and /healthz
	probes  []string
	samples []sample
}

type sample struct {
	at                    time.Duration
	rssKB, fds, goroutine int
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func run(ctx context.Context, o options) error {
	turnPort, turnAdmin := freePort(), freePort()
	hubPort, hubAdmin := freePort(), freePort()
	logDir, err := os.MkdirTemp("", "rtcsuite-soak-")
	if err != nil {
		return err
	}
	fmt.Println("soak: server logs in", logDir)
	turnd := &proc{name: "turnd", admin: fmt.Sprintf("127.0.0.1:%d", turnAdmin)}
	turnd.probes = []string{"http://" + turnd.admin + "/healthz", "http://" + turnd.admin + "/readyz"}
	turnd.cmd = exec.Command(o.turnd, "--listening-ip", "127.0.0.1", "--listening-port", strconv.Itoa(turnPort),
		"--static-auth-secret", secret, "--allow-loopback-peers", "--admin-listen", turnd.admin,
		"--min-port", "40000", "--max-port", "48999", "--udp-sockets", "2", "--log-level", o.turndLogLevel)
	hub := &proc{name: "signal", admin: fmt.Sprintf("127.0.0.1:%d", hubAdmin)}
	hubURL := fmt.Sprintf("http://127.0.0.1:%d", hubPort)
	hub.probes = []string{hubURL + "/healthz", "http://" + hub.admin + "/healthz"}
	hub.cmd = exec.Command(o.signal, "--listen", fmt.Sprintf("127.0.0.1:%d", hubPort), "--admin-listen", hub.admin,
		"--turn-secret", secret, "--turn-url", fmt.Sprintf("turn:127.0.0.1:%d?transport=udp", turnPort),
		"--allow-open", "--max-conns-per-ip", "-1", "--log-level", "warn")
	for _, p := range []*proc{turnd, hub} {
		f, err := os.Create(filepath.Join(logDir, p.name+".log"))
		if err != nil {
			return err
		}
		defer f.Close()
		p.cmd.Stdout, p.cmd.Stderr = f, f
		if err := p.cmd.Start(); err != nil {
			return fmt.Errorf("start %s: %w", p.name, err)
		}
		defer func(p *proc) {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = p.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(40 * time.Second):
				_ = p.cmd.Process.Kill()
				<-done
			}
		}(p)
		if err := awaitHTTP(p.probes[0], 20*time.Second); err != nil {
			return fmt.Errorf("%s did not come up: %w", p.name, err)
		}
	}

	turnAddr := fmt.Sprintf("127.0.0.1:%d", turnPort)
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	st := &stats{}
	var wg sync.WaitGroup
	spawn := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }

	echo, err := startEcho()
	if err != nil {
		return err
	}
	defer echo.Close()
	for i := range o.flows {
		network := "udp"
		if i%2 == 1 {
			network = "tcp"
		}
		spawn(func() { turnFlow(ctx, st, network, turnAddr, echo.LocalAddr().(*net.UDPAddr), i) })
	}
	for i := range o.pairs {
		spawn(func() { dataChannelPair(ctx, st, turnAddr, i) })
	}
	spawn(func() { hubChurn(ctx, st, hubURL) })
	spawn(func() { attacks(ctx, st, o.attackRate, turnAddr, hubURL) })
	if o.uclient != "" {
		if bin, err := exec.LookPath(o.uclient); err == nil {
			spawn(func() { uclientRuns(ctx, st, bin, turnPort, echo.LocalAddr().(*net.UDPAddr), o.uclientEvery, logDir) })
		} else {
			fmt.Println("soak: note: turnutils_uclient not found (Debian coturn); uclient flows skipped")
		}
	}
	spawn(func() { probeLoop(ctx, st, append(turnd.probes, hub.probes...)) })

	start := time.Now()
	tick := time.NewTicker(o.sample)
	defer tick.Stop()
	for _, p := range []*proc{turnd, hub} {
		p.take(0)
	}
sampling:
	for {
		select {
		case <-ctx.Done():
			break sampling
		case <-tick.C:
			for _, p := range []*proc{turnd, hub} {
				p.take(time.Since(start))
			}
			fmt.Printf("soak: %v %s\n", time.Since(start).Round(time.Second), st.String())
		}
	}
	wg.Wait()

	var problems []string
	for _, p := range []*proc{turnd, hub} {
		p.report()
		problems = append(problems, p.flat()...)
		if p.cmd.ProcessState != nil {
			problems = append(problems, p.name+" exited during the soak")
		}
	}
	fmt.Println("soak: totals:", st.String())
	problems = append(problems, st.problems()...)
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func awaitHTTP(url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// take records one resource sample of p.
func (p *proc) take(at time.Duration) {
	pid := p.cmd.Process.Pid
	s := sample{at: at, rssKB: -1, fds: -1, goroutine: -1}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				s.rssKB, _ = strconv.Atoi(f[1])
			}
		}
	}
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		s.fds = len(ents)
	}
	s.goroutine = int(metric("http://"+p.admin+"/metrics", "go_goroutines"))
	p.samples = append(p.samples, s)
}

func metric(url, name string) float64 {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	return -1
}

func (p *proc) report() {
	fmt.Printf("soak: %s samples (time, RSS KiB, fds, goroutines):\n", p.name)
	for _, s := range p.samples {
		fmt.Printf("  %8v %8d %6d %6d\n", s.at.Round(time.Second), s.rssKB, s.fds, s.goroutine)
	}
}

// flat compares the second quarter of the run (after warm-up) with the
// last quarter: RSS may grow by 30% + 16 MiB (the Go heap breathes),
// goroutines and fds by 20% + 20 (connections in flight at sampling).
func (p *proc) flat() []string {
	n := len(p.samples)
	if n < 8 {
		return []string{fmt.Sprintf("%s: only %d samples; run longer or sample more often", p.name, n)}
	}
	base, end := p.samples[n/4:n/2], p.samples[3*n/4:]
	var out []string
	check := func(what string, get func(sample) int, pct float64, abs int) {
		b := median(base, get)
		e := slices.Max(mapInts(end, get))
		if b < 0 || e < 0 {
			out = append(out, fmt.Sprintf("%s: %s not measured", p.name, what))
			return
		}
		if float64(e) > float64(b)*(1+pct)+float64(abs) {
			out = append(out, fmt.Sprintf("%s: %s grew from %d to %d", p.name, what, b, e))
		}
	}
	check("RSS KiB", func(s sample) int { return s.rssKB }, 0.3, 16<<10)
	check("goroutines", func(s sample) int { return s.goroutine }, 0.2, 20)
	check("fds", func(s sample) int { return s.fds }, 0.2, 20)
	return out
}

func mapInts(ss []sample, get func(sample) int) []int {
	out := make([]int, len(ss))
	for i, s := range ss {
		out[i] = get(s)
	}
	return out
}

func median(ss []sample, get func(sample) int) int {
	v := mapInts(ss, get)
	slices.Sort(v)
	return v[len(v)/2]
}

// stats are the soak's counters; every field is atomic.
type stats struct {
	flowMsgs, flowLost, flowErrs atomic.Int64
	dcMsgs, dcLost, dcErrs       atomic.Int64
	churn, churnErrs             atomic.Int64
	uclientRuns, uclientLost     atomic.Int64
	uclientErrs                  atomic.Int64
	attacks                      atomic.Int64
	probes, probeFails           atomic.Int64
	lastErr                      atomic.Value // string
}

func (s *stats) fail(counter *atomic.Int64, err error) {
	counter.Add(1)
	s.lastErr.Store(err.Error())
}

func (s *stats) String() string {
	return fmt.Sprintf("flows %d msgs %d lost %d errs | datachannels %d msgs %d lost %d errs | hub churn %d (%d errs) | uclient %d runs %d lost %d errs | attacks %d | probes %d (%d failed)",
		s.flowMsgs.Load(), s.flowLost.Load(), s.flowErrs.Load(), s.dcMsgs.Load(), s.dcLost.Load(), s.dcErrs.Load(),
		s.churn.Load(), s.churnErrs.Load(), s.uclientRuns.Load(), s.uclientLost.Load(), s.uclientErrs.Load(),
		s.attacks.Load(), s.probes.Load(), s.probeFails.Load())
}

func (s *stats) problems() []string {
	var out []string
	add := func(cond bool, msg string) {
		if cond {
			out = append(out, msg)
		}
	}
	add(s.flowMsgs.Load() == 0, "no TURN flow message went through")
	add(s.flowLost.Load() > 0 || s.flowErrs.Load() > 0, fmt.Sprintf("TURN flows lost %d messages, %d errors", s.flowLost.Load(), s.flowErrs.Load()))
	add(s.dcLost.Load() > 0 || s.dcErrs.Load() > 0, fmt.Sprintf("data channels lost %d messages, %d errors", s.dcLost.Load(), s.dcErrs.Load()))
	add(s.churnErrs.Load() > 0, fmt.Sprintf("hub churn: %d errors", s.churnErrs.Load()))
	add(s.uclientLost.Load() > 0 || s.uclientErrs.Load() > 0, fmt.Sprintf("uclient lost %d packets, %d failed runs", s.uclientLost.Load(), s.uclientErrs.Load()))
	add(s.probeFails.Load() > 0, fmt.Sprintf("%d health probes failed", s.probeFails.Load()))
	add(s.attacks.Load() == 0, "no attack was sent")
	if len(out) > 0 {
		if e, ok := s.lastErr.Load().(string); ok {
			out = append(out, "last error: "+e)
		}
	}
	return out
}

// probeLoop asks every health endpoint once a second.
func probeLoop(ctx context.Context, st *stats, urls []string) {
	c := http.Client{Timeout: 5 * time.Second}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, u := range urls {
			st.probes.Add(1)
			resp, err := c.Get(u)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("%s: status %d", u, resp.StatusCode)
				}
			}
			if err != nil {
				st.fail(&st.probeFails, err)
			}
		}
	}
}

// startEcho is a UDP peer echoing every datagram back unchanged.
func startEcho() (*net.UDPConn, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteTo(buf[:n], from)
		}
	}()
	return c, nil
}

// sleepCtx waits d or until ctx ends (false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d)))
}
