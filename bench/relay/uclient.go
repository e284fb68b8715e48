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
	"time"
)

// loadResult is what one load phase observed on one server.
type loadResult struct {
	Sent, Received int64   // packets, client side
	Relayed        int64   // Sent + Received: each traversal of the relay
	Seconds        float64 // sending window
	PPS            float64 // relayed packets per second
	Mbps           float64 // relayed payload megabits per second
	LossPct        float64
	CPU            time.Duration // server utime+stime over the phase
	SchedCPU       time.Duration // server thread run time (cross-check)
	CPUPerPkt      float64       // microseconds of server CPU per relayed packet
	RSS            int64         // server RSS at the end of the phase
	P50, P99       float64       // round trip, ms (pion phases only)
}

var (
	reTotals = regexp.MustCompile(`start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`)
	reLost   = regexp.MustCompile(`Total lost packets (\d+) \(`)
	// A once-a-second progress line: "5: : start_mclient: msz=2, tot_send_msgs=118, ...".
	reProgress = regexp.MustCompile(`start_mclient: msz=\d+, tot_send_msgs=(\d+),`)
)

// uclientLoad runs turnutils_uclient against srv: flows allocations (-c:
// no RTCP companion), each sending pps packets of size bytes per second for
// seconds to the echo peer over channels. Server CPU is sampled at each of
// uclient's once-a-second progress lines; the measured window runs from the
// last line before the first packet was sent to the end of the run, so
// allocation setup (and uclient's retries of it) stays out of the figure.
//
// extra goes to uclient first ("-t": clients reach the server over TCP).
func uclientLoad(bin string, srv *server, peer *net.UDPAddr, flows, pps, size, seconds int, extra ...string) (loadResult, error) {
	n := pps * seconds
	args := append(extra, "-c", "-m", strconv.Itoa(flows), "-n", strconv.Itoa(n),
		"-l", strconv.Itoa(size), "-z", strconv.Itoa(1000/pps),
		"-u", benchUser, "-w", benchPass,
		"-e", peer.IP.String(), "-r", strconv.Itoa(peer.Port),
		"-p", strconv.Itoa(srv.addr.Port), srv.addr.IP.String())
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds+120)*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return loadResult{}, err
	}
	var out, stderr bytes.Buffer
	cmd.Stderr = &stderr // exec copies it on its own goroutine
	if err := cmd.Start(); err != nil {
		return loadResult{}, err
	}
	track(cmd.Process)
	defer untrack(cmd.Process)
	cpuBase, err := srv.cpu()
	if err != nil {
		cmd.Process.Kill()
		_ = cmd.Wait()
		return loadResult{}, err
	}
	schedBase := srv.schedCPU()
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Bytes()
		out.Write(line)
		out.WriteByte('\n')
		if m := reProgress.FindSubmatch(line); m != nil && string(m[1]) == "0" {
			// Nothing sent yet: move the window's start here.
			cpuBase, _ = srv.cpu()
			schedBase = srv.schedCPU()
		}
	}
	scanErr := sc.Err()
	_, _ = io.Copy(io.Discard, stdout) // let uclient finish writing
	cpuEnd, _ := srv.cpu()
	schedEnd := srv.schedCPU()
	err = cmd.Wait()
	out.Write(stderr.Bytes()) // safe after Wait
	if err != nil {
		return loadResult{}, fmt.Errorf("uclient: %w\n%s", err, tail(out.Bytes()))
	}
	tot := reTotals.FindAllSubmatch(out.Bytes(), -1)
	if tot == nil || reLost.Find(out.Bytes()) == nil {
		return loadResult{}, fmt.Errorf("uclient printed no summary (%d bytes, scan error %v):\n%s", out.Len(), scanErr, tail(out.Bytes()))
	}
	last := tot[len(tot)-1]
	r := loadResult{CPU: cpuEnd - cpuBase, SchedCPU: schedEnd - schedBase, RSS: srv.rss()}
	r.Sent, _ = strconv.ParseInt(string(last[1]), 10, 64)
	r.Received, _ = strconv.ParseInt(string(last[2]), 10, 64)
	r.finish(float64(n)/float64(pps), size)
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

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
