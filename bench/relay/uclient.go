//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// loadResult is what one load phase observed on one server.
type loadResult struct {
	Sent, Received int64   // packets, client side
	Relayed        int64   // Sent + Received: each traversal of the relay
	Counted        int64   // relayed packets inside the CPU window (uclient phases)
	Seconds        float64 // sending window
	PPS            float64 // relayed packets per second
	Mbps           float64 // relayed payload megabits per second
	LossPct        float64
	CPU            time.Duration // server utime+stime over the phase
	SchedCPU       time.Duration // server thread run time (cross-check)
	CPUPerPkt      float64       // microseconds of server CPU per relayed packet
	RSS            int64         // server RSS at the end of the phase
	P50, P99       float64       // round trip, ms (pion phases only)
	Sources        int           // client source addresses (uclient processes)
}

var (
	reTotals = regexp.MustCompile(`start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`)
	reLost   = regexp.MustCompile(`Total lost packets (\d+) \(`)
	// A once-a-second progress line: "5: : start_mclient: msz=2, tot_send_msgs=118, tot_recv_msgs=117, ...".
	reProgress = regexp.MustCompile(`start_mclient: msz=\d+, tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`)
)

// uclientLoad runs turnutils_uclient against srv: flows allocations (-c:
// no RTCP companion), each sending pps packets of size bytes per second for
// seconds to the echo peer over channels.
//
// The flows are split over `sources` uclient processes, each bound to its
// own loopback source address (127.0.0.2, .3, ...), so a server that
// spreads clients over its sockets by source address (turnd's reuseport
// steering) is exercised as with real clients from many hosts.
//
// Server CPU is sampled at each uclient's once-a-second progress lines: the
// measured window starts at the last progress line (of any process) that
// reports nothing sent yet, so allocation setup (and uclient's retries of
// it) stays out of the figure, and ends when every process has exited.
// The packets counted against that CPU are the final totals minus what
// processes that had already started reported at the window's start (their
// latest progress line; it lags by at most a second).
//
// extra goes to uclient first ("-t": clients reach the server over TCP).
func uclientLoad(bin string, srv *server, peer *net.UDPAddr, flows, pps, size, seconds, sources int, extra ...string) (loadResult, error) {
	n := pps * seconds
	sources = max(1, min(sources, flows))
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds+120)*time.Second)
	defer cancel()

	type proc struct {
		cmd        *exec.Cmd
		local      string
		stdout     io.ReadCloser
		out        bytes.Buffer
		stderr     bytes.Buffer
		sent, recv int64 // latest progress line
		scanErr    error
	}
	var (
		mu        sync.Mutex
		procs     []*proc
		baseCount int64
	)
	cpuBase, err := srv.cpu()
	if err != nil {
		return loadResult{}, err
	}
	schedBase := srv.schedCPU()
	killAll := func() {
		for _, p := range procs {
			p.cmd.Process.Kill()
			_ = p.cmd.Wait()
			untrack(p.cmd.Process)
		}
	}
	for i := 0; i < sources; i++ {
		m := flows / sources
		if i < flows%sources {
			m++
		}
		local := net.IPv4(127, 0, 0, byte(2+i)).String()
		args := append(append([]string(nil), extra...), "-c", "-m", strconv.Itoa(m), "-n", strconv.Itoa(n),
			"-l", strconv.Itoa(size), "-z", strconv.Itoa(1000/pps),
			"-u", benchUser, "-w", benchPass, "-L", local,
			"-e", peer.IP.String(), "-r", strconv.Itoa(peer.Port),
			"-p", strconv.Itoa(srv.addr.Port), srv.addr.IP.String())
		p := &proc{cmd: exec.CommandContext(ctx, bin, args...), local: local}
		if p.stdout, err = p.cmd.StdoutPipe(); err != nil {
			killAll()
			return loadResult{}, err
		}
		p.cmd.Stderr = &p.stderr // exec copies it on its own goroutine
		if err := p.cmd.Start(); err != nil {
			killAll()
			return loadResult{}, err
		}
		track(p.cmd.Process)
		procs = append(procs, p)
	}
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(p.stdout)
			for sc.Scan() {
				line := sc.Bytes()
				mu.Lock()
				p.out.Write(line)
				p.out.WriteByte('\n')
				if m := reProgress.FindSubmatch(line); m != nil {
					p.sent, _ = strconv.ParseInt(string(m[1]), 10, 64)
					p.recv, _ = strconv.ParseInt(string(m[2]), 10, 64)
					if p.sent == 0 {
						// This process has sent nothing yet: move the
						// window's start here.
						cpuBase, _ = srv.cpu()
						schedBase = srv.schedCPU()
						baseCount = 0
						for _, q := range procs {
							baseCount += q.sent + q.recv
						}
					}
				}
				mu.Unlock()
			}
			p.scanErr = sc.Err()
			_, _ = io.Copy(io.Discard, p.stdout) // let uclient finish writing
		}()
	}
	wg.Wait()
	cpuEnd, _ := srv.cpu()
	schedEnd := srv.schedCPU()
	r := loadResult{CPU: cpuEnd - cpuBase, SchedCPU: schedEnd - schedBase, RSS: srv.rss(), Sources: sources}
	var firstErr error
	for _, p := range procs {
		err := p.cmd.Wait()
		untrack(p.cmd.Process)
		p.out.Write(p.stderr.Bytes()) // safe after Wait
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("uclient -L %s: %w\n%s", p.local, err, tail(p.out.Bytes()))
		}
		tot := reTotals.FindAllSubmatch(p.out.Bytes(), -1)
		if tot == nil || reLost.Find(p.out.Bytes()) == nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("uclient -L %s printed no summary (%d bytes, scan error %v):\n%s", p.local, p.out.Len(), p.scanErr, tail(p.out.Bytes()))
			}
			continue
		}
		last := tot[len(tot)-1]
		s, _ := strconv.ParseInt(string(last[1]), 10, 64)
		v, _ := strconv.ParseInt(string(last[2]), 10, 64)
		r.Sent += s
		r.Received += v
	}
	if firstErr != nil {
		return loadResult{}, firstErr
	}
	r.finish(float64(n)/float64(pps), size)
	r.Counted = r.Relayed - baseCount
	if r.Counted > 0 {
		r.CPUPerPkt = float64(r.CPU.Microseconds()) / float64(r.Counted)
	}
	return r, nil
}

// finish derives rates from the counters over a sending window of secs.
func (r *loadResult) finish(secs float64, size int) {
	r.Relayed = r.Sent + r.Received
	r.Seconds = secs
	if secs > 0 {
		r.PPS = float64(r.Relayed) / secs
		r.Mbps = float64(r.Relayed) * float64(size) * 8 / secs / 1e6
	}
	if r.Sent > 0 {
		r.LossPct = 100 * float64(r.Sent-r.Received) / float64(r.Sent)
	}
	if r.Relayed > 0 {
		r.CPUPerPkt = float64(r.CPU.Microseconds()) / float64(r.Relayed)
	}
}

// counted is the number of relayed packets the CPU figure covers.
func (r loadResult) counted() int64 {
	if r.Counted > 0 {
		return r.Counted
	}
	return r.Relayed
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
