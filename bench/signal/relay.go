//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Relay modes.
const (
	// modeSat is a closed loop: every connection keeps -window messages in
	// flight; the receiver of a message echoes it and the echo's receiver
	// sends the next message to its next peer. It finds the relay's
	// saturation throughput; latency then mostly shows queueing.
	modeSat = "sat"
	// modeRate is an open loop at a fixed offered load, no echoes: the
	// latency of a relay that is not saturated, and the server's CPU time
	// per relayed message.
	modeRate = "rate"
)

type relayRun struct {
	cl        *client
	mode      string
	conns     []*bconn
	recording atomic.Bool
	stopped   atomic.Bool
	sent      atomic.Int64
	maxPer    int // latency samples kept per connection
}

func runRelay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", targetHub, "hub or peerjs")
	addr := fs.String("addr", "127.0.0.1:8801", "server address; comma-separated hub nodes spread each room over them (cluster.go)")
	pid := fs.String("pid", "", "server process id (CPU time from /proc); comma-separated ids are summed (cluster: nodes and redis-server)")
	nconns := fs.Int("conns", 256, "connections")
	room := fs.Int("room", 2, "peers per room (PeerJS: 2, one-to-one pairs)")
	mode := fs.String("mode", modeSat, "sat (closed loop, -window in flight) or rate (fixed -rate, open loop)")
	window := fs.Int("window", 4, "sat: messages in flight per connection")
	offered := fs.Float64("rate", 5000, "rate: offered messages/s in total")
	duration := fs.Duration("duration", 10*time.Second, "measured interval")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured run-in")
	srcBase := fs.String("src", "127.0.2.1", "first source address")
	srcCount := fs.Int("src-count", 1, "source addresses")
	maxSamples := fs.Int("max-samples", 4_000_000, "latency samples kept in total")
	label := fs.String("label", "", "free text carried into the result")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var errs []error
	pids, err := parsePIDs(*pid)
	if err != nil {
		errs = append(errs, err)
	}
	if *room < 2 || *nconns < *room || *nconns%*room != 0 {
		errs = append(errs, fmt.Errorf("-conns %d must be a multiple of -room %d >= 2", *nconns, *room))
	}
	if *target == targetPeerJS && *room != 2 {
		errs = append(errs, errors.New("PeerJS has no rooms: -room must be 2 (pairs)"))
	}
	if *mode != modeSat && *mode != modeRate {
		errs = append(errs, fmt.Errorf("-mode %q: want sat or rate", *mode))
	}
	if *window < 1 || *offered <= 0 || *duration <= 0 {
		errs = append(errs, errors.New("-window, -rate and -duration must be positive"))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	_, _ = raiseNoFile(uint64(*nconns) + 1024) // small counts fit the default
	nodes, err := newClients(ctx, *target, *addr, *srcBase, *srcCount)
	if err != nil {
		return err
	}
	cl := nodes[0]
	r := &relayRun{cl: cl, mode: *mode, maxPer: max(*maxSamples / *nconns, 1)}
	var wg sync.WaitGroup
	defer func() {
		r.stopped.Store(true)
		closeAll(r.conns)
		wg.Wait()
	}()

	// Set up the rooms (hub) or pairs (PeerJS).
	rooms := *nconns / *room
	prefix := runPrefix()
	for i := range rooms {
		members := make([]*bconn, 0, *room)
		for j := range *room {
			c, err := nodes[(i+j)%len(nodes)].dial(ctx, "p"+prefix+"-"+strconv.Itoa(i)+"-"+strconv.Itoa(j))
			if err != nil {
				return fmt.Errorf("connection %d: %w", len(r.conns), err)
			}
			r.conns = append(r.conns, c)
			if *target == targetHub {
				if err := cl.join(c, "b"+prefix+"-"+strconv.Itoa(i)); err != nil {
					return err
				}
			}
			members = append(members, c)
			wg.Add(1)
			go func() { defer wg.Done(); r.read(c) }()
		}
		if *target == targetPeerJS {
			members[0].addPeer(members[1].id)
			members[1].addPeer(members[0].id)
		}
	}
	// Hub members learn of later joiners from peer-joined.
	deadline := time.Now().Add(20 * time.Second)
	for _, c := range r.conns {
		for c.npeers() < *room-1 {
			if time.Now().After(deadline) || c.dead.Load() {
				return fmt.Errorf("a connection knows %d of its %d peers", c.npeers(), *room-1)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	fmt.Fprintf(stderr, "relay %s: %d connections in %d rooms of %d, mode %s\n", *target, len(r.conns), rooms, *room, *mode)

	if *target == targetPeerJS {
		hbCtx, hbStop := context.WithCancel(ctx)
		defer hbStop()
		go peerJSHeartbeats(hbCtx, func() []*bconn { return r.conns })
	}

	// Start the load.
	runCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	switch *mode {
	case modeSat:
		var buf []byte
		for range *window {
			for _, c := range r.conns {
				buf = cl.signalFrame(buf[:0], c.nextPeer(), time.Now().UnixNano(), 0)
				if err := c.write(buf); err != nil {
					return err
				}
			}
		}
	case modeRate:
		interval := time.Duration(float64(len(r.conns)) / *offered * float64(time.Second))
		for _, c := range r.conns {
			wg.Add(1)
			go func() { defer wg.Done(); r.pace(runCtx, c, interval) }()
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(*warmup):
	}
	cpu0, err := procCPUSum(pids)
	if err != nil {
		return err
	}
	t0 := time.Now()
	r.recording.Store(true)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(*duration):
	}
	r.recording.Store(false)
	elapsed := time.Since(t0)
	cpu1, err := procCPUSum(pids)
	if err != nil {
		return err
	}
	r.stopped.Store(true)
	stopLoad()
	load1 := loadAvg()
	time.Sleep(300 * time.Millisecond) // let the readers finish the frames in flight

	res := result{Bench: "relay", Target: *target, Label: *label, Conns: len(r.conns), Room: *room,
		Mode: *mode, DurationSec: elapsed.Seconds(), Sent: r.sent.Load(), Load1: load1}
	if *mode == modeSat {
		res.Window = *window
	} else {
		res.Offered = *offered
	}
	var lat, rtt []int64
	for _, c := range r.conns {
		c.mu.Lock() // the reader has stopped recording; this orders its last writes
		res.Received += c.recv
		res.Errors += c.errs
		if res.FirstError == "" {
			res.FirstError = c.errMsg
		}
		lat = append(lat, c.lat...)
		rtt = append(rtt, c.rtt...)
		c.mu.Unlock()
	}
	res.MsgsPerSec = float64(res.Received) / elapsed.Seconds()
	res.P50us, res.P99us = percentiles(lat)
	res.RTTP50us, res.RTTP99us = percentiles(rtt)
	res.ServerCPUPct = 100 * (cpu1 - cpu0).Seconds() / elapsed.Seconds()
	if res.Received > 0 {
		res.CPUusPerMsg = float64((cpu1 - cpu0).Microseconds()) / float64(res.Received)
	}
	for _, c := range r.conns {
		if c.dead.Load() {
			res.Errors++
			if res.FirstError == "" {
				res.FirstError = "a connection closed during the run"
			}
		}
	}
	fmt.Fprintf(stderr, "relay %s room=%d %s: %.0f msgs/s, one-way p50 %.0f us p99 %.0f us, server CPU %.0f%% (%.1f us/msg), errors %d\n",
		*target, *room, *mode, res.MsgsPerSec, res.P50us, res.P99us, res.ServerCPUPct, res.CPUusPerMsg, res.Errors)
	return json.NewEncoder(stdout).Encode(res)
}

// read is a connection's reader: it records latencies and, in sat mode,
// answers pings with echoes and echoes with the next ping.
func (r *relayRun) read(c *bconn) {
	var in, out []byte
	for {
		_, rd, err := c.ws.NextReader()
		if err != nil {
			c.dead.Store(true)
			return
		}
		in, err = readAll(rd, in[:0])
		if err != nil {
			c.dead.Store(true)
			return
		}
		now := time.Now().UnixNano()
		p := r.cl.parse(in)
		if p.joined != "" {
			c.addPeer(p.joined)
			continue
		}
		rec := r.recording.Load()
		if !p.signal {
			if p.bad && rec {
				c.mu.Lock()
				c.errs++
				if c.errMsg == "" {
					c.errMsg = truncate(string(in), 200)
				}
				c.mu.Unlock()
			}
			continue
		}
		if rec {
			c.mu.Lock()
			c.recv++
			if len(c.lat) < r.maxPer {
				c.lat = append(c.lat, now-p.bt)
			}
			if p.bo != 0 && len(c.rtt) < r.maxPer {
				c.rtt = append(c.rtt, now-p.bo)
			}
			c.mu.Unlock()
		}
		if r.mode != modeSat || r.stopped.Load() {
			continue
		}
		if p.bo == 0 {
			out = r.cl.signalFrame(out[:0], p.from, time.Now().UnixNano(), p.bt) // echo
		} else {
			out = r.cl.signalFrame(out[:0], c.nextPeer(), time.Now().UnixNano(), 0) // next
		}
		if c.write(out) != nil {
			continue // the reader sees the failure next
		}
		if r.recording.Load() {
			r.sent.Add(1)
		}
	}
}

// pace sends to the connection's peers in turn every interval (rate mode).
func (r *relayRun) pace(ctx context.Context, c *bconn, interval time.Duration) {
	select { // spread the connections over the interval
	case <-ctx.Done():
		return
	case <-time.After(rand.N(interval)):
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var out []byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		out = r.cl.signalFrame(out[:0], c.nextPeer(), time.Now().UnixNano(), 0)
		if c.write(out) != nil {
			return
		}
		if r.recording.Load() {
			r.sent.Add(1)
		}
	}
}

func readAll(rd io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, max(512, cap(buf)))
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// percentiles returns p50 and p99 of ns samples, in microseconds.
func percentiles(v []int64) (p50, p99 float64) {
	if len(v) == 0 {
		return 0, 0
	}
	slices.Sort(v)
	at := func(q float64) float64 { return float64(v[int(q*float64(len(v)-1))]) / 1e3 }
	return at(0.50), at(0.99)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
