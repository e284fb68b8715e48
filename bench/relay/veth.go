//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/rtcsuite/rtcsuite/internal/netlab"
)

// Veth mode (-veth, run by veth.sh): the same comparison on the netns
// topology of internal/netlab (client ns — veth — relay ns — veth — peer
// ns, no IP forwarding in the relay ns), where turnd's eBPF kernel path
// can carry the traffic. Every server runs in the relay namespace,
// turnutils_uclient in the client namespace, turnutils_peer in the peer
// namespace. The senders' veths have tx checksum offload off, so they
// hand the relay fully checksummed packets (docs/offload.md: the kernel
// path leaves CHECKSUM_PARTIAL packets to user space); that costs the
// senders the same for every server.
//
// CPU is whole-test CPU: the run time (schedstat, nanoseconds) of the
// server's, uclient's and the peer's threads and of the ksoftirqd threads,
// plus the eBPF program's own run time (bpf_stats). Softirq work done in a
// process's context (a veth transmit delivers to the peer device inside the
// sender's syscall) is part of that process's run time on this kernel
// (no IRQ time accounting), so the program's run time is also inside those
// figures: adding it counts it twice, against turnd.
var (
	vethMode      = flag.Bool("veth", false, "run the veth/netns benchmark (root) instead of the loopback one")
	vethServers   = flag.String("veth-servers", "turnd-tc,coturn,turnd-off", "veth: servers, alternating: turnd-tc, turnd-off, coturn")
	vethLoads     = flag.String("veth-loads", "100,500", "veth: uclient phases at -pps, comma-separated flow counts")
	vethRTT       = flag.Int("veth-rtt-flows", 100, "veth: pion round-trip phase flows at -pps (0 skips)")
	vethSatFlows  = flag.String("veth-sat-flows", "20,40,60,80", "veth: saturation ramp, flow counts at -veth-sat-pps, until loss passes 1 %")
	vethSatPPS    = flag.Int("veth-sat-pps", 1000, "veth: packets per second per flow in the saturation ramp (uclient's floor is 1 ms)")
	vethSatProcs  = flag.Int("veth-sat-procs", 2, "veth: uclient processes sharing the saturation flows")
	vethSatSecs   = flag.Int("veth-sat-seconds", 3, "veth: sending time per saturation step")
	vethPrefix    = flag.String("veth-prefix", fmt.Sprintf("rb%d", os.Getpid()%100000), "veth: namespace and interface name prefix")
	vethNAPI      = flag.Bool("veth-napi", false, "veth: threaded NAPI (GRO on) on the relay namespace's veths, so the relay's receive work runs in its own kernel thread as behind a NIC, not in the sender's system call; their CPU is counted with ksoftirqd's")
	vethTxOffload = flag.Bool("veth-tx-csum", false, "veth: keep tx checksum offload on the senders (the kernel path then passes their packets to user space)")
)

// vethCleanup removes the veth lab on an interrupt (main's signal handler).
var vethCleanup = func() {}

const (
	vethListenPort = 3478
	vethPeerPort   = 3480
)

// vethLab is the topology with its echo peer and ksoftirqd threads.
type vethLab struct {
	topo      *netlab.Topology
	peerCmd   *exec.Cmd
	peer      *net.UDPAddr
	softirqd  []int // ksoftirqd pids, and the relay veths' NAPI threads (-veth-napi)
	relayIfis []int // relay-namespace interfaces the kernel path may attach to
}

func newVethLab(peerBin string) (*vethLab, error) {
	topo, err := netlab.NewTopology(*vethPrefix)
	if err != nil {
		return nil, err
	}
	l := &vethLab{topo: topo, peer: net.UDPAddrFromAddrPort(netip.AddrPortFrom(netlab.PeerAddr, vethPeerPort))}
	if err := topo.SetSendersTxChecksum(*vethTxOffload); err != nil {
		l.close()
		return nil, err
	}
	for _, dev := range []string{topo.RelayClientDev, topo.RelayPeerDev, "lo"} {
		err := netlab.Do(topo.Relay, func() error {
			ifi, err := net.InterfaceByName(dev)
			if err == nil {
				l.relayIfis = append(l.relayIfis, ifi.Index)
			}
			return err
		})
		if err != nil {
			l.close()
			return nil, err
		}
	}
	if *vethNAPI {
		for _, dev := range []string{topo.RelayClientDev, topo.RelayPeerDev} {
			_, err := netlab.Run(topo.Relay, "sh", "-c", fmt.Sprintf("ethtool -K %s gro on && echo 1 > /sys/class/net/%s/threaded", dev, dev))
			if err != nil {
				l.close()
				return nil, err
			}
		}
	}
	comms, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, c := range comms {
		b, err := os.ReadFile(c)
		if err != nil {
			continue
		}
		name := strings.TrimSpace(string(b))
		napi := strings.HasPrefix(name, "napi/"+topo.RelayClientDev+"-") || strings.HasPrefix(name, "napi/"+topo.RelayPeerDev+"-")
		if strings.HasPrefix(name, "ksoftirqd/") || napi {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(c)))
			l.softirqd = append(l.softirqd, pid)
		}
	}
	l.peerCmd = netlab.Command(topo.Peer, peerBin, "-L", netlab.PeerAddr.String(), "-p", strconv.Itoa(vethPeerPort))
	if err := l.peerCmd.Start(); err != nil {
		l.close()
		return nil, err
	}
	track(l.peerCmd.Process)
	var up bool
	_ = netlab.Do(topo.Relay, func() error { up = echoes(l.peer); return nil })
	if !up {
		l.close()
		return nil, errors.New("turnutils_peer in the peer namespace does not echo")
	}
	return l, nil
}

func (l *vethLab) close() {
	if l.peerCmd != nil && l.peerCmd.Process != nil {
		l.peerCmd.Process.Kill()
		_ = l.peerCmd.Wait()
		untrack(l.peerCmd.Process)
	}
	if err := l.topo.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "relaybench:", err)
	}
}

// vethKind returns the server named name, bound in the relay namespace.
func vethKind(name, turndBin, coturnBin string) (serverKind, error) {
	listen, relayIP := netlab.ListenAddr.String(), netlab.RelayAddr.String()
	turnd := func(mode string) serverKind {
		return serverKind{name: name, cmd: func(port int) *exec.Cmd {
			return netlab.Command(*vethPrefix+"-rly", turndBin,
				"--listening-ip", listen, "--listening-port", strconv.Itoa(port), "--relay-ip", relayIP,
				"--realm", benchRealm, "--user", benchUser+":"+benchPass,
				"--allowed-peer-ip", "203.0.113.0/24", "--no-tls",
				"--unauth-rate", "-1", "--auth-fail-rate", "-1",
				"--admin-listen", "", "--log-level", "warn", "--drain-timeout", "1s",
				"--offload", mode)
		}}
	}
	switch name {
	case "turnd-tc":
		return turnd("tc"), nil
	case "turnd-off":
		return turnd("off"), nil
	case "coturn":
		return serverKind{name: name, cmd: func(port int) *exec.Cmd {
			return netlab.Command(*vethPrefix+"-rly", coturnBin, "-n",
				"--listening-ip="+listen, "--listening-port="+strconv.Itoa(port), "--relay-ip="+relayIP,
				"--realm="+benchRealm, "--lt-cred-mech", "--user="+benchUser+":"+benchPass,
				"--allowed-peer-ip=203.0.113.0-203.0.113.255",
				"--no-cli", "--no-tls", "--no-dtls", "--no-stdout-log", "--log-file=/dev/null",
				"--pidfile="+filepath.Join(os.TempDir(), fmt.Sprintf("relaybench-%s-coturn.pid", *vethPrefix)))
		}}, nil
	}
	return serverKind{}, fmt.Errorf("-veth-servers: unknown server %q", name)
}

// startServer starts k in the relay namespace and waits until it answers
// a STUN Binding request from the client namespace.
func (l *vethLab) startServer(k serverKind) (*server, error) {
	return launchServer(k, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netlab.ListenAddr, vethListenPort)),
		func(s *server) error {
			return netlab.Do(l.topo.Client, func() error { return s.waitReady(10 * time.Second) })
		})
}

// cpuSnap is one reading of every CPU account of the test.
// (Also UDP receive-buffer drops per namespace, to say where loss happens.)
type cpuSnap struct {
	server, uclient, peer, softirq, bpf time.Duration
	bpfRuns                             uint64
	rcvbuf                              [3]uint64 // Udp RcvbufErrors: client, relay, peer ns
}

func (a cpuSnap) sub(b cpuSnap) cpuSnap {
	return cpuSnap{a.server - b.server, a.uclient - b.uclient, a.peer - b.peer, a.softirq - b.softirq,
		a.bpf - b.bpf, a.bpfRuns - b.bpfRuns,
		[3]uint64{a.rcvbuf[0] - b.rcvbuf[0], a.rcvbuf[1] - b.rcvbuf[1], a.rcvbuf[2] - b.rcvbuf[2]}}
}

func (l *vethLab) snap(srv *server, uclientPids []int) cpuSnap {
	s := cpuSnap{server: srv.schedCPU(), peer: schedCPUOf(l.peerCmd.Process.Pid)}
	for _, pid := range uclientPids {
		s.uclient += schedCPUOf(pid)
	}
	for _, pid := range l.softirqd {
		s.softirq += schedCPUOf(pid)
	}
	s.bpf, s.bpfRuns = l.bpfRunTime()
	for i, ns := range []string{l.topo.Client, l.topo.Relay, l.topo.Peer} {
		if c, err := netlab.UDPCounters(ns); err == nil {
			s.rcvbuf[i] = c["RcvbufErrors"]
		}
	}
	return s
}

// bpfRunTime sums run time and run count (bpf_stats) of the programs
// attached at tcx ingress of the relay namespace's interfaces.
func (l *vethLab) bpfRunTime() (time.Duration, uint64) {
	var total time.Duration
	var runs uint64
	seen := map[ebpf.ProgramID]bool{}
	_ = netlab.Do(l.topo.Relay, func() error {
		for _, ifi := range l.relayIfis {
			res, err := link.QueryPrograms(link.QueryOptions{Target: ifi, Attach: ebpf.AttachTCXIngress})
			if err != nil {
				continue
			}
			for _, p := range res.Programs {
				if seen[p.ID] {
					continue
				}
				seen[p.ID] = true
				prog, err := ebpf.NewProgramFromID(p.ID)
				if err != nil {
					continue
				}
				if st, err := prog.Stats(); err == nil {
					total += st.Runtime
					runs += st.RunCount
				}
				prog.Close()
			}
		}
		return nil
	})
	return total, runs
}

// vethResult is one phase on one server.
type vethResult struct {
	Flows, PPS     int // offered: flows x packets/s per flow, each way
	Sent, Received int64
	Seconds        float64 // measured window
	LossPct        float64
	RTPerSec       float64 // delivered round trips (echoes received) per second
	// CPU over the window, by account.
	Server, Uclient, Peer, Softirq, BPF time.Duration
	BPFRuns                             uint64
	// Datagrams dropped for a full socket receive buffer, by namespace:
	// where the loss happened.
	RcvbufClient, RcvbufRelay, RcvbufPeer uint64
	WholeUS                               float64 // whole-test CPU per round trip, µs
	OwnUS                                 float64 // server process + BPF per round trip, µs
	P50, P99                              float64 // ms, round-trip phase only
}

func (r *vethResult) fill(d cpuSnap) {
	r.Server, r.Uclient, r.Peer, r.Softirq, r.BPF, r.BPFRuns = d.server, d.uclient, d.peer, d.softirq, d.bpf, d.bpfRuns
	r.RcvbufClient, r.RcvbufRelay, r.RcvbufPeer = d.rcvbuf[0], d.rcvbuf[1], d.rcvbuf[2]
	if r.Sent > 0 {
		r.LossPct = 100 * float64(r.Sent-r.Received) / float64(r.Sent)
	}
	if r.Seconds > 0 {
		r.RTPerSec = float64(r.Received) / r.Seconds
	}
	if r.Received > 0 {
		whole := d.server + d.uclient + d.peer + d.softirq + d.bpf
		r.WholeUS = float64(whole.Nanoseconds()) / 1e3 / float64(r.Received)
		r.OwnUS = float64((d.server + d.bpf).Nanoseconds()) / 1e3 / float64(r.Received)
	}
}

// uclient runs turnutils_uclient in the client namespace: flows channels x
// pps packets of size bytes for seconds to the echo peer, split over procs
// processes (one uclient is single-threaded: for saturation, two keep the
// load generator from being the first thing to run out of CPU). The window
// starts at the last progress line of any process that reports nothing
// sent (allocation setup stays out) and ends when every process has
// printed its summary.
func (l *vethLab) uclient(bin string, srv *server, flows, pps, size, seconds, procs int) (vethResult, error) {
	n := pps * seconds
	procs = max(1, min(procs, flows))
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds+120)*time.Second)
	defer cancel()
	type proc struct {
		cmd    *exec.Cmd
		stdout io.ReadCloser
		out    bytes.Buffer
		stderr bytes.Buffer
	}
	var ps []*proc
	defer func() {
		for _, p := range ps {
			p.cmd.Process.Kill() // by pid; a no-op once waited for
			_ = p.cmd.Wait()
			untrack(p.cmd.Process)
		}
	}()
	var pids []int
	for i := range procs {
		m := flows / procs
		if i < flows%procs {
			m++
		}
		args := []string{"netns", "exec", l.topo.Client, bin, "-c", "-m", strconv.Itoa(m), "-n", strconv.Itoa(n),
			"-l", strconv.Itoa(size), "-z", strconv.Itoa(max(1, 1000/pps)),
			"-u", benchUser, "-w", benchPass,
			"-e", l.peer.IP.String(), "-r", strconv.Itoa(l.peer.Port),
			"-p", strconv.Itoa(srv.addr.Port), srv.addr.IP.String()}
		p := &proc{cmd: exec.CommandContext(ctx, "ip", args...)}
		var err error
		if p.stdout, err = p.cmd.StdoutPipe(); err != nil {
			return vethResult{}, err
		}
		p.cmd.Stderr = &p.stderr
		if err := p.cmd.Start(); err != nil {
			return vethResult{}, err
		}
		track(p.cmd.Process)
		ps = append(ps, p)
		pids = append(pids, p.cmd.Process.Pid) // ip netns exec execs uclient in place
	}
	var mu sync.Mutex
	base, start := l.snap(srv, pids), time.Now()
	var end cpuSnap
	var stop time.Time
	summaries := 0
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(p.stdout)
			for sc.Scan() {
				line := sc.Bytes()
				mu.Lock()
				p.out.Write(line)
				p.out.WriteByte('\n')
				if m := reProgress.FindSubmatch(line); m != nil && string(m[1]) == "0" {
					base, start = l.snap(srv, pids), time.Now()
				}
				if bytes.Contains(line, []byte("Total lost packets")) {
					if summaries++; summaries == len(ps) {
						// Every uclient is done sending and still alive,
						// so their threads can be read.
						end, stop = l.snap(srv, pids), time.Now()
					}
				}
				mu.Unlock()
			}
			_, _ = io.Copy(io.Discard, p.stdout)
		}()
	}
	wg.Wait()
	if stop.IsZero() {
		end, stop = l.snap(srv, pids), time.Now()
	}
	r := vethResult{Flows: flows, PPS: pps, Seconds: stop.Sub(start).Seconds()}
	for _, p := range ps {
		err := p.cmd.Wait()
		p.out.Write(p.stderr.Bytes())
		if err != nil {
			return vethResult{}, fmt.Errorf("uclient: %w\n%s", err, tail(p.out.Bytes()))
		}
		tot := reTotals.FindAllSubmatch(p.out.Bytes(), -1)
		if tot == nil {
			return vethResult{}, fmt.Errorf("uclient printed no summary:\n%s", tail(p.out.Bytes()))
		}
		last := tot[len(tot)-1]
		sent, _ := strconv.ParseInt(string(last[1]), 10, 64)
		recv, _ := strconv.ParseInt(string(last[2]), 10, 64)
		r.Sent += sent
		r.Received += recv
	}
	r.fill(end.sub(base))
	return r, nil
}

// rtt runs pion/turn clients from the client namespace (pionRTT) and adds
// the whole-test accounts (no uclient).
func (l *vethLab) rtt(srv *server, flows, pps, size, seconds int) (vethResult, error) {
	base, start := l.snap(srv, nil), time.Now()
	lr, err := pionRTT(srv, l.peer, flows, pps, size, seconds)
	if err != nil {
		return vethResult{}, err
	}
	end := l.snap(srv, nil)
	// pionRTT's own window excludes allocation; this one includes it, so
	// only the latency columns of this phase are reported.
	r := vethResult{Flows: flows, PPS: pps, Sent: lr.Sent, Received: lr.Received,
		Seconds: time.Since(start).Seconds(), P50: lr.P50, P99: lr.P99}
	r.fill(end.sub(base))
	return r, nil
}

// saturate raises the offered load step by step on one server until loss
// passes 1 % (or the steps run out) and returns every step.
func (l *vethLab) saturate(bin string, srv *server, flowSteps []int, pps, size, seconds int) ([]vethResult, error) {
	var steps []vethResult
	for _, f := range flowSteps {
		r, err := l.uclient(bin, srv, f, pps, size, seconds, *vethSatProcs)
		if err != nil {
			return steps, err
		}
		steps = append(steps, r)
		if r.LossPct > 1 {
			break
		}
	}
	return steps, nil
}

// runVeth is the veth benchmark's main.
func runVeth(turndBin, coturnBin, uclientBin, peerBin string, rounds, pps, size, seconds int, raw string) error {
	if os.Geteuid() != 0 {
		return errors.New("-veth needs root (network namespaces, eBPF)")
	}
	rawW, closeRaw, err := openRaw(raw)
	if err != nil {
		return err
	}
	defer closeRaw()
	// bpf_stats for the run only: the returned closer switches them off.
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return fmt.Errorf("enable bpf_stats: %w", err)
	}
	defer stats.Close()
	l, err := newVethLab(peerBin)
	if err != nil {
		return err
	}
	defer l.close()
	vethCleanup = l.close
	flowConn = func() (c net.PacketConn, err error) {
		err = netlab.Do(l.topo.Client, func() (err error) {
			c, err = net.ListenPacket("udp4", netlab.ClientAddr.String()+":0")
			return err
		})
		return c, err
	}

	var kinds []serverKind
	for _, name := range strings.Split(*vethServers, ",") {
		k, err := vethKind(strings.TrimSpace(name), turndBin, coturnBin)
		if err != nil {
			return err
		}
		kinds = append(kinds, k)
	}
	type vphase struct {
		name string
		run  func(*server) ([]vethResult, error)
	}
	var phases []vphase
	for _, n := range ints(*vethLoads) {
		phases = append(phases, vphase{fmt.Sprintf("uclient-%d", n), func(s *server) ([]vethResult, error) {
			r, err := l.uclient(uclientBin, s, n, pps, size, seconds, 1)
			return []vethResult{r}, err
		}})
	}
	if *vethRTT > 0 {
		phases = append(phases, vphase{fmt.Sprintf("rtt-%d", *vethRTT), func(s *server) ([]vethResult, error) {
			r, err := l.rtt(s, *vethRTT, pps, size, max(seconds/2, 3))
			return []vethResult{r}, err
		}})
	}
	if steps := ints(*vethSatFlows); len(steps) > 0 {
		phases = append(phases, vphase{"saturation", func(s *server) ([]vethResult, error) {
			return l.saturate(uclientBin, s, steps, *vethSatPPS, size, *vethSatSecs)
		}})
	}

	results := map[string]map[string][][]vethResult{} // phase -> server -> rounds
	started := time.Now()
	fmt.Fprintf(os.Stderr, "relaybench -veth: %d rounds, servers %s, peer %s, tx csum offload on senders %v, threaded NAPI %v (%d kernel threads counted)\n",
		rounds, *vethServers, l.peer, *vethTxOffload, *vethNAPI, len(l.softirqd))
	for r := range rounds {
		for pi, ph := range phases {
			order := slices.Clone(kinds)
			if (r+pi)%2 == 1 {
				slices.Reverse(order)
			}
			for _, k := range order {
				srv, err := l.startServer(k)
				if err != nil {
					return err
				}
				res, err := ph.run(srv)
				srv.stop()
				if err != nil {
					fmt.Fprintf(os.Stderr, "round %d %s %s: %v\n", r+1, ph.name, k.name, err)
					continue
				}
				if results[ph.name] == nil {
					results[ph.name] = map[string][][]vethResult{}
				}
				results[ph.name][k.name] = append(results[ph.name][k.name], res)
				for _, x := range res {
					line, _ := json.Marshal(map[string]any{"round": r + 1, "phase": ph.name, "server": k.name, "result": x})
					fmt.Fprintln(rawW, string(line))
					fmt.Fprintf(os.Stderr, "[%4.0fs] round %d %-10s %-9s %s\n", time.Since(started).Seconds(), r+1, ph.name, k.name, x.brief())
				}
			}
		}
	}
	var names []string
	for _, ph := range phases {
		names = append(names, ph.name)
	}
	var kindNames []string
	for _, k := range kinds {
		kindNames = append(kindNames, k.name)
	}
	vethReport(os.Stdout, results, names, kindNames, pps, size, rounds)
	return nil
}

func (r vethResult) brief() string {
	return fmt.Sprintf("%dx%d sent %d recv %d loss %.2f%% (rcvbuf drops cli/rly/peer %d/%d/%d) %.0f rt/s in %.1fs | µs/rt whole %.2f own %.2f | cpu srv %v ucl %v peer %v sirq %v bpf %v (%d runs) | p50 %.3f p99 %.3f ms",
		r.Flows, r.PPS, r.Sent, r.Received, r.LossPct, r.RcvbufClient, r.RcvbufRelay, r.RcvbufPeer, r.RTPerSec, r.Seconds, r.WholeUS, r.OwnUS,
		r.Server.Round(time.Millisecond), r.Uclient.Round(time.Millisecond), r.Peer.Round(time.Millisecond),
		r.Softirq.Round(time.Millisecond), r.BPF.Round(time.Millisecond), r.BPFRuns, r.P50, r.P99)
}

// spread formats a median with the min–max of its values.
func spread(v []float64, format string) string {
	if len(v) == 0 {
		return "-"
	}
	return fmt.Sprintf(format+" ("+format+"–"+format+")", median(v), slices.Min(v), slices.Max(v))
}

// vethReport prints per phase and server the medians (min–max) over rounds,
// and the ratios to coturn's medians.
func vethReport(w io.Writer, results map[string]map[string][][]vethResult, phases, servers []string, pps, size, rounds int) {
	fmt.Fprintf(w, "Veth topology; medians (min–max) over %d alternating rounds; %d-byte payloads, %d packets/s per flow.\n", rounds, size, pps)
	fmt.Fprintf(w, "Whole = server + uclient + peer + ksoftirqd (+ relay veths' NAPI threads: %v) run time + BPF run time; own = server + BPF; per round trip (echo received).\n", *vethNAPI)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| phase | server | loss % | whole µs/RT | own µs/RT | server µs/RT | BPF µs/RT | RTT p50 ms | RTT p99 ms |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|")
	med := map[string]map[string]map[string]float64{} // phase -> server -> column
	for _, ph := range phases {
		if ph == "saturation" {
			continue
		}
		med[ph] = map[string]map[string]float64{}
		for _, srv := range servers {
			rs := results[ph][srv]
			if len(rs) == 0 {
				continue
			}
			col := func(f func(vethResult) float64) []float64 {
				var v []float64
				for _, r := range rs {
					v = append(v, f(r[0]))
				}
				return v
			}
			perRT := func(d func(vethResult) time.Duration) func(vethResult) float64 {
				return func(r vethResult) float64 { return float64(d(r).Nanoseconds()) / 1e3 / float64(max(r.Received, 1)) }
			}
			whole, own := col(func(r vethResult) float64 { return r.WholeUS }), col(func(r vethResult) float64 { return r.OwnUS })
			srvUS := col(perRT(func(r vethResult) time.Duration { return r.Server }))
			p50, p99 := col(func(r vethResult) float64 { return r.P50 }), col(func(r vethResult) float64 { return r.P99 })
			med[ph][srv] = map[string]float64{"whole": median(whole), "own": median(own), "server": median(srvUS),
				"p50": median(p50), "p99": median(p99)}
			lat50, lat99 := "-", "-"
			if strings.HasPrefix(ph, "rtt") {
				lat50, lat99 = spread(p50, "%.3f"), spread(p99, "%.3f")
				whole, own, srvUS = nil, nil, nil // allocation inside the window: see rtt
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", ph, srv,
				spread(col(func(r vethResult) float64 { return r.LossPct }), "%.2f"),
				spread(whole, "%.2f"), spread(own, "%.2f"), spread(srvUS, "%.2f"),
				spread(col(perRT(func(r vethResult) time.Duration { return r.BPF })), "%.3f"), lat50, lat99)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| phase | server | whole CPU vs coturn (target ≤0.75×) | own vs coturn process (target ≤0.3×) | RTT p50 vs coturn | RTT p99 vs coturn |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|")
	for _, ph := range phases {
		c := med[ph]["coturn"]
		if c == nil {
			continue
		}
		for _, srv := range servers {
			m := med[ph][srv]
			if srv == "coturn" || m == nil {
				continue
			}
			ratio := func(a, b float64) string {
				if b == 0 || a == 0 {
					return "-"
				}
				return fmt.Sprintf("%.2f×", a/b)
			}
			if strings.HasPrefix(ph, "rtt") {
				fmt.Fprintf(w, "| %s | %s | - | - | %s | %s |\n", ph, srv, ratio(m["p50"], c["p50"]), ratio(m["p99"], c["p99"]))
				continue
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | - | - |\n", ph, srv, ratio(m["whole"], c["whole"]), ratio(m["own"], c["server"]))
		}
	}
	if sat := results["saturation"]; sat != nil {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "Saturation: %d packets/s per flow, flows raised until loss passes 1 %%; best delivered round trips/s with ≤1 %% loss per round, median (min–max).\n\n", *vethSatPPS)
		fmt.Fprintln(w, "| server | delivered RT/s | vs coturn | steps (flows: RT/s, loss %) of the median round |")
		fmt.Fprintln(w, "|---|---:|---:|---|")
		best := map[string]float64{}
		// coturn's figure first: the others are compared with it.
		order := slices.Clone(servers)
		slices.SortStableFunc(order, func(a, b string) int {
			if a == "coturn" {
				return -1
			}
			if b == "coturn" {
				return 1
			}
			return 0
		})
		for _, srv := range order {
			var v []float64
			var stepsOf [][]vethResult
			for _, steps := range sat[srv] {
				b := 0.0
				for _, s := range steps {
					if s.LossPct <= 1 && s.RTPerSec > b {
						b = s.RTPerSec
					}
				}
				v = append(v, b)
				stepsOf = append(stepsOf, steps)
			}
			if len(v) == 0 {
				continue
			}
			best[srv] = median(v)
			var desc []string
			mi := 0
			for i := range v {
				if v[i] == best[srv] {
					mi = i
				}
			}
			for _, s := range stepsOf[mi] {
				desc = append(desc, fmt.Sprintf("%d: %.0f, %.2f", s.Flows, s.RTPerSec, s.LossPct))
			}
			vs := "-"
			if c := best["coturn"]; c > 0 && srv != "coturn" {
				vs = fmt.Sprintf("%.2f×", best[srv]/c)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s |\n", srv, spread(v, "%.0f"), vs, strings.Join(desc, "; "))
		}
	}
}
