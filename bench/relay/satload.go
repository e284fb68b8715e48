//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rtcsuite/rtcsuite/internal/netlab"
)

// Saturation with the batched load generator (-satload loopback|veth):
// for each server, alternating per round, a ramp of offered round trips
// per second until loss passes 1 %; the figure is the delivered rate of the
// highest step at ≤ 1 % loss. Every step records the server's CPU, the
// generator's own CPU (senders and echo peer: this process) and UDP
// receive-buffer drops, so the reader sees which side ran out.
var (
	satMode    = flag.String("satload", "", "run the batched saturation ramp: loopback or veth (root) instead of the other phases")
	satServers = flag.String("sat-servers", "", "satload: servers, alternating (default loopback turnd,coturn; veth turnd-tc,coturn,turnd-off)")
	satRates   = flag.String("sat-rates", "20000,30000,40000,50000,60000,80000,100000,120000,160000,200000", "satload: offered round trips/s per step, rising")
	satFlows   = flag.Int("sat-flows", 16, "satload: flows (allocations with a channel)")
	satWorkers = flag.Int("sat-workers", 2, "satload: sender threads (the echo peer has its own)")
	satTick    = flag.Duration("sat-tick", time.Millisecond, "satload: a sender thread's pass: send what the token bucket earned, read echoes, sleep")
	satSecs    = flag.Float64("sat-seconds", 3, "satload: sending time per step")
	satProbe   = flag.String("sat-probe", "", "satload: shell command run alongside every step of a ramp (env PID, GEN_PID, SERVER, RATE, STEP, SECONDS), waited for before the next step: perf sched record, a trace fetch; latload: alongside every phase (SECONDS is -sat-seconds, not -lat-seconds)")
)

// satTurnd is how the loopback ramp runs turnd: the -turnd binary with
// -turnd-args/-turnd-env as "turnd", and for an A/B in one run
// "turnd-alt" (add it to -sat-servers) with -alt-turnd (default the same
// binary), -alt-args and -alt-env.
type satTurnd struct {
	bin, altBin     string
	args, env       []string
	altArgs, altEnv []string
}

// satStep is one step of a ramp.
type satStep struct {
	Offered     float64 `json:"offered_rt_s"`
	Sent        uint64  `json:"sent"`
	Echoed      uint64  `json:"echoed"`
	Late        uint64  `json:"late"`
	SendRefused uint64  `json:"send_refused"`
	LossPct     float64 `json:"loss_pct"`
	Delivered   float64 `json:"delivered_rt_s"`
	SentRate    float64 `json:"sent_rt_s"`
	ServerCPU   float64 `json:"server_cpu_cores"`
	GenCPU      float64 `json:"gen_cpu_cores"`
	EchoCPU     float64 `json:"echo_cpu_cores"`
	SoftirqCPU  float64 `json:"softirq_cpu_cores,omitempty"`
	RcvbufErrs  []int64 `json:"rcvbuf_errors"` // loopback: host, generator+echo sockets, server listener sockets, other sockets (server relay); veth: client, relay, peer ns
	P50, P99    float64 // ms, sampled
}

// satEnv is where a ramp runs: loopback or the veth lab.
type satEnv struct {
	start     func(serverKind) (*server, error)
	flowLocal func(i int) netip.AddrPort
	inClient  func(func() error) error
	peerDo    func(func() error) error
	peer      netip.AddrPort
	rcvbuf    func() []int64
	softirq   func() time.Duration
	kinds     []serverKind
	close     func()
}

func runSatload(mode string, td satTurnd, coturnBin, peerBin string, rounds int, size int, raw string) error {
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
	var echo *echoPeer
	err = env.inPeer(func() (err error) { echo, err = startEchoPeer(env.peer, false); return err })
	if err != nil {
		return fmt.Errorf("echo peer: %w", err)
	}
	defer echo.close()

	results := map[string][][]satStep{}
	var names []string
	for _, k := range env.kinds {
		names = append(names, k.name)
	}
	for r := 0; r < rounds; r++ {
		order := slices.Clone(env.kinds)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, k := range order {
			steps, err := satRamp(env, k, echo, size)
			if err != nil {
				fmt.Fprintf(os.Stderr, "satload round %d %s: %v\n", r+1, k.name, err)
				continue
			}
			results[k.name] = append(results[k.name], steps)
			line, _ := json.Marshal(map[string]any{"mode": mode, "round": r + 1, "server": k.name, "steps": steps})
			fmt.Fprintln(rawW, string(line))
		}
	}
	satReport(os.Stdout, mode, results, names, size, rounds)
	return nil
}

// inPeer is where the echo peer's socket is made: the peer namespace on
// veth, the host on loopback.
func (e *satEnv) inPeer(f func() error) error { return e.peerDo(f) }

func newSatEnv(mode string, td satTurnd, coturnBin, peerBin string) (*satEnv, error) {
	host := func(f func() error) error { return f() }
	switch mode {
	case "loopback":
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		env := &satEnv{
			start: startServer, inClient: host, close: func() {},
			// Clients spread over 127.0.0.1-8, so a server that steers by
			// source address (turnd's SO_ATTACH_REUSEPORT_CBPF) spreads them.
			flowLocal: func(i int) netip.AddrPort {
				return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(1 + i%8)}), 0)
			},
			peer: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port)),
			// Host RcvbufErrors, then per-socket drops (/proc/net/udp) of
			// the generator's and echo's sockets, of the server's
			// listener sockets (its port) and of all others (its relay
			// sockets, on a quiet machine).
			rcvbuf: func() []int64 {
				d := loopbackDrops()
				return []int64{hostRcvbufErrors(), d.own, d.listener, d.other}
			},
			softirq: func() time.Duration { return 0 },
		}
		env.peerDo = host
		names := strings.Split(orDefault(*satServers, "turnd,coturn"), ",")
		for _, n := range names {
			switch n {
			case "turnd":
				env.kinds = append(env.kinds, turndKind(td.bin, append([]string{"--offload", "off"}, td.args...), td.env))
			case "turnd-alt":
				env.kinds = append(env.kinds, withName(turndKind(orDefault(td.altBin, td.bin),
					append([]string{"--offload", "off"}, td.altArgs...), td.altEnv), "turnd-alt"))
			case "coturn":
				env.kinds = append(env.kinds, coturnKind(coturnBin, nil))
			default:
				return nil, fmt.Errorf("-sat-servers: unknown loopback server %q", n)
			}
		}
		return env, nil
	case "veth":
		if os.Geteuid() != 0 {
			return nil, errors.New("-satload veth needs root (network namespaces, eBPF)")
		}
		l, err := newVethLab(peerBin)
		if err != nil {
			return nil, err
		}
		vethCleanup = l.close
		env := &satEnv{
			start:     l.startServer,
			inClient:  func(f func() error) error { return netlab.Do(l.topo.Client, f) },
			flowLocal: func(int) netip.AddrPort { return netip.AddrPortFrom(netlab.ClientAddr, 0) },
			peer:      netip.AddrPortFrom(netlab.PeerAddr, vethPeerPort+10), // turnutils_peer holds 3480 and 3481
			close:     l.close,
			softirq: func() time.Duration {
				var s time.Duration
				for _, pid := range l.softirqd {
					s += schedCPUOf(pid)
				}
				return s
			},
			rcvbuf: func() []int64 {
				var out []int64
				for _, ns := range []string{l.topo.Client, l.topo.Relay, l.topo.Peer} {
					c, _ := netlab.UDPCounters(ns)
					out = append(out, int64(c["RcvbufErrors"]))
				}
				return out
			},
		}
		env.peerDo = func(f func() error) error { return netlab.Do(l.topo.Peer, f) }
		for _, n := range strings.Split(orDefault(*satServers, "turnd-tc,coturn,turnd-off"), ",") {
			k, err := vethKind(n, td.bin, coturnBin)
			if err != nil {
				l.close()
				return nil, err
			}
			env.kinds = append(env.kinds, k)
		}
		return env, nil
	}
	return nil, fmt.Errorf("-satload %q: want loopback or veth", mode)
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// satRamp starts k fresh, sets up the flows and raises the offered load
// until loss passes 1 % (or the rates run out).
func satRamp(env *satEnv, k serverKind, echo *echoPeer, size int) ([]satStep, error) {
	srv, err := env.start(k)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	server := srv.addr.AddrPort()
	server = netip.AddrPortFrom(server.Addr().Unmap(), server.Port())
	flows := make([]*satFlow, 0, *satFlows)
	defer func() {
		for _, f := range flows {
			f.close()
		}
	}()
	for i := 0; i < *satFlows; i++ {
		var f *satFlow
		err := env.inClient(func() (err error) { f, err = setupFlow(i, env.flowLocal(i), server, env.peer); return err })
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k.name, err)
		}
		flows = append(flows, f)
		if sa, err := unix.Getsockname(f.fd); err == nil {
			ownPorts[uint16(sa.(*unix.SockaddrInet4).Port)] = true
		}
	}
	ownPorts[env.peer.Port()] = true
	serverPort = server.Port()
	dur := time.Duration(*satSecs * float64(time.Second))
	drain := 300 * time.Millisecond
	var steps []satStep
	for si, rate := range ints(*satRates) {
		self := os.Getpid()
		s0, g0, e0, q0, b0 := srv.schedCPU(), schedCPUOf(self), echoCPU(echo), env.softirq(), env.rcvbuf()
		probe := startProbe(srv, k.name, si+1, rate)
		c, err := runStep(flows, *satWorkers, uint32(si+1), float64(rate), size, dur, drain, *satTick)
		probe()
		if err != nil {
			return steps, err
		}
		s1, g1, e1, q1, b1 := srv.schedCPU(), schedCPUOf(self), echoCPU(echo), env.softirq(), env.rcvbuf()
		secs := dur.Seconds()
		wall := (dur + drain).Seconds()
		st := satStep{
			Offered: float64(rate), Sent: c.sent, Echoed: c.echoed, Late: c.late, SendRefused: c.sendFull,
			Delivered: float64(c.echoed) / secs, SentRate: float64(c.sent) / secs,
			ServerCPU: (s1 - s0).Seconds() / wall, EchoCPU: (e1 - e0).Seconds() / wall,
			GenCPU:     ((g1 - g0) - (e1 - e0)).Seconds() / wall,
			SoftirqCPU: (q1 - q0).Seconds() / wall,
			P50:        c.hist.quantile(0.5), P99: c.hist.quantile(0.99),
		}
		if c.sent > 0 {
			st.LossPct = 100 * (1 - float64(c.echoed)/float64(c.sent))
		}
		for i := range b1 {
			st.RcvbufErrs = append(st.RcvbufErrs, b1[i]-b0[i])
		}
		steps = append(steps, st)
		fmt.Fprintf(os.Stderr, "satload %-9s offered %7.0f sent %7.0f/s delivered %7.0f RT/s loss %6.2f%% (refused %d) server %.2f gen %.2f echo %.2f softirq %.2f cores rcvbuf %v p50 %.2f p99 %.2f ms\n",
			k.name, st.Offered, st.SentRate, st.Delivered, st.LossPct, st.SendRefused, st.ServerCPU, st.GenCPU, st.EchoCPU, st.SoftirqCPU, st.RcvbufErrs, st.P50, st.P99)
		if st.LossPct > 1 {
			break
		}
		time.Sleep(200 * time.Millisecond) // let queues empty between steps
	}
	return steps, nil
}

func echoCPU(e *echoPeer) time.Duration {
	tid := e.tid.Load()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/schedstat", tid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseInt(f[0], 10, 64)
	return time.Duration(v)
}

// startProbe runs -sat-probe alongside a step of a ramp; the
// returned func waits for it.
func startProbe(srv *server, name string, step, rate int) (wait func()) {
	if *satProbe == "" {
		return func() {}
	}
	cmd := exec.Command("sh", "-c", *satProbe)
	cmd.Env = append(os.Environ(), fmt.Sprintf("PID=%d", srv.pid), fmt.Sprintf("GEN_PID=%d", os.Getpid()), "SERVER="+name,
		fmt.Sprintf("RATE=%d", rate), fmt.Sprintf("STEP=%d", step), fmt.Sprintf("SECONDS=%g", *satSecs))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "satload: -sat-probe: %v\n", err)
		return func() {}
	}
	track(cmd.Process)
	return func() {
		if err := cmd.Wait(); err != nil {
			fmt.Fprintf(os.Stderr, "satload: -sat-probe: %v\n", err)
		}
		untrack(cmd.Process)
	}
}

// ownPorts are the loopback generator's and echo's local UDP ports;
// serverPort is the running server's listening port.
var (
	ownPorts   = map[uint16]bool{}
	serverPort uint16
)

// udpDrops are per-socket drop counters of /proc/net/udp, summed.
type udpDrops struct{ own, listener, other int64 }

// loopbackDrops sums the per-socket drop counters of /proc/net/udp: those
// of ownPorts, of the server's listener sockets (serverPort), and of every
// other socket (the server's relay sockets, on a quiet machine).
func loopbackDrops() (d udpDrops) {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return d
	}
	for _, l := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) < 13 {
			continue
		}
		_, portHex, _ := strings.Cut(f[1], ":")
		port, _ := strconv.ParseUint(portHex, 16, 16)
		n, _ := strconv.ParseInt(f[12], 10, 64)
		switch {
		case ownPorts[uint16(port)]:
			d.own += n
		case uint16(port) == serverPort:
			d.listener += n
		default:
			d.other += n
		}
	}
	return d
}

// hostRcvbufErrors reads Udp: RcvbufErrors of this process's namespace.
func hostRcvbufErrors() int64 {
	f, err := os.Open("/proc/net/snmp")
	if err != nil {
		return 0
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.Fields(sc.Text())
		if len(l) == 0 || l[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = l
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(l) {
				v, _ := strconv.ParseInt(l[i], 10, 64)
				return v
			}
		}
	}
	return 0
}

// satBest is the step that delivered most at ≤ 1 % loss, and the first
// step over 1 %.
func satBest(steps []satStep) (best, over *satStep) {
	for i := range steps {
		if steps[i].LossPct <= 1 {
			if best == nil || steps[i].Delivered > best.Delivered {
				best = &steps[i]
			}
		} else {
			return best, &steps[i]
		}
	}
	return best, nil
}

func satReport(w io.Writer, mode string, results map[string][][]satStep, names []string, size, rounds int) {
	fmt.Fprintf(w, "\n## Saturation, batched generator (%s): %d flows, %d B payload, %d sender threads, %v tick, %.0f s per step, %d rounds\n\n",
		mode, *satFlows, size, *satWorkers, *satTick, *satSecs, rounds)
	fmt.Fprintln(w, "| server | saturation RT/s, median (min–max) | per round | server CPU cores at best | gen / echo CPU at best | sent / offered at best | first step over 1 %: offered, loss, server CPU, rcvbuf drops |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---|")
	sat := map[string]float64{}
	for _, n := range names {
		var v, scpu, gcpu, ecpu, kept []float64
		var overs []string
		for _, steps := range results[n] {
			best, over := satBest(steps)
			if best != nil {
				v = append(v, best.Delivered)
				scpu = append(scpu, best.ServerCPU)
				gcpu = append(gcpu, best.GenCPU)
				ecpu = append(ecpu, best.EchoCPU)
				kept = append(kept, best.SentRate/best.Offered)
			} else {
				v = append(v, 0)
			}
			if over != nil {
				overs = append(overs, fmt.Sprintf("%.0f: %.1f%%, %.2f, %v", over.Offered, over.LossPct, over.ServerCPU, over.RcvbufErrs))
			} else {
				overs = append(overs, "none (rates ran out)")
			}
		}
		sat[n] = median(v)
		var per []string
		for _, x := range v {
			per = append(per, fmt.Sprintf("%.0f", x))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.2f | %.2f / %.2f | %.2f | %s |\n", n, spread(v, "%.0f"), strings.Join(per, ", "),
			median(scpu), median(gcpu), median(ecpu), median(kept), strings.Join(overs, "; "))
	}
	if c := sat["coturn"]; c > 0 {
		fmt.Fprintln(w)
		for _, n := range names {
			if n != "coturn" {
				fmt.Fprintf(w, "%s / coturn: %.2fx (medians)\n", n, sat[n]/c)
			}
		}
	}
}
