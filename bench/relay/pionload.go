//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v5"
)

// pionFlow is one pion/turn client with its allocation.
type pionFlow struct {
	conn   net.PacketConn
	client *turn.Client
	relay  net.PacketConn
}

func (f *pionFlow) close() {
	if f.relay != nil {
		f.relay.Close()
	}
	f.client.Close()
	f.conn.Close()
}

// allocateFlows makes n allocations on srv, each from its own UDP socket,
// with at most 16 in flight.
func allocateFlows(srv *server, n int) ([]*pionFlow, error) {
	flows := make([]*pionFlow, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range flows {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			flows[i], errs[i] = allocateFlow(srv)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeFlows(flows)
		return nil, err
	}
	return flows, nil
}

// flowConn opens a flow's client socket: on loopback, or (veth mode)
// inside the client namespace.
var flowConn = func() (net.PacketConn, error) { return net.ListenPacket("udp4", "127.0.0.1:0") }

func allocateFlow(srv *server) (*pionFlow, error) {
	conn, err := flowConn()
	if err != nil {
		return nil, err
	}
	addr := srv.addr.String()
	cl, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: benchUser, Password: benchPass, Realm: benchRealm,
		RTO: 200 * time.Millisecond,
	})
	if err != nil {
		conn.Close()
		return nil, err
	}
	f := &pionFlow{conn: conn, client: cl}
	if err := cl.Listen(); err != nil {
		f.close()
		return nil, err
	}
	if f.relay, err = cl.Allocate(); err != nil {
		f.close()
		return nil, fmt.Errorf("allocate: %w", err)
	}
	return f, nil
}

func closeFlows(flows []*pionFlow) {
	var wg sync.WaitGroup
	for _, f := range flows {
		if f != nil {
			wg.Add(1)
			go func() { defer wg.Done(); f.close() }()
		}
	}
	wg.Wait()
}

// pionRTT relays flows x pps packets of size bytes per second for seconds
// through srv to the echo peer with pion/turn clients, and measures the
// round trip of every packet (send time travels in the payload).
func pionRTT(srv *server, peer *net.UDPAddr, flows, pps, size, seconds int) (loadResult, error) {
	fl, err := allocateFlows(srv, flows)
	if err != nil {
		return loadResult{}, err
	}
	defer closeFlows(fl)

	// Prime every flow: the first datagram creates the permission (and
	// pion binds a channel); wait for its echo so setup stays out of the
	// measured window.
	for i, f := range fl {
		if err := primeFlow(f, peer, size); err != nil {
			return loadResult{}, fmt.Errorf("flow %d: %w", i, err)
		}
	}

	var sent, received atomic.Int64
	rtts := make([][]time.Duration, len(fl))
	var rwg sync.WaitGroup
	for i, f := range fl {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			buf := make([]byte, 2048)
			for {
				n, _, err := f.relay.ReadFrom(buf)
				if err != nil {
					return
				}
				if n < 16 || binary.BigEndian.Uint64(buf[8:]) == 0 {
					continue // a priming echo
				}
				sentAt := int64(binary.BigEndian.Uint64(buf[8:]))
				rtts[i] = append(rtts[i], time.Duration(time.Now().UnixNano()-sentAt))
				received.Add(1)
			}
		}()
	}

	cpu0, err := srv.cpu()
	if err != nil {
		return loadResult{}, err
	}
	sched0 := srv.schedCPU()
	interval := time.Second / time.Duration(pps)
	count := pps * seconds
	var swg sync.WaitGroup
	start := time.Now()
	for i, f := range fl {
		swg.Add(1)
		go func() {
			defer swg.Done()
			// Spread flows over the interval so the load is smooth.
			next := start.Add(interval * time.Duration(i) / time.Duration(len(fl)))
			payload := make([]byte, size)
			for seq := 1; seq <= count; seq++ {
				time.Sleep(time.Until(next))
				next = next.Add(interval)
				binary.BigEndian.PutUint64(payload, uint64(seq))
				binary.BigEndian.PutUint64(payload[8:], uint64(time.Now().UnixNano()))
				if _, err := f.relay.WriteTo(payload, peer); err == nil {
					sent.Add(1)
				}
			}
		}()
	}
	swg.Wait()
	window := time.Since(start).Seconds()
	// Stragglers: a second is far beyond any loopback round trip.
	time.Sleep(time.Second)
	cpu1, _ := srv.cpu()
	sched1 := srv.schedCPU()
	for _, f := range fl {
		f.relay.Close()
	}
	rwg.Wait()

	var all []time.Duration
	for _, r := range rtts {
		all = append(all, r...)
	}
	slices.Sort(all)
	r := loadResult{Sent: sent.Load(), Received: received.Load(), CPU: cpu1 - cpu0,
		SchedCPU: sched1 - sched0, RSS: srv.rss()}
	r.finish(window, size)
	if len(all) > 0 {
		r.P50 = ms(all[len(all)*50/100])
		r.P99 = ms(all[len(all)*99/100])
	}
	return r, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func primeFlow(f *pionFlow, peer *net.UDPAddr, size int) error {
	payload := make([]byte, size) // zero timestamp marks a priming packet
	buf := make([]byte, 2048)
	for try := 0; try < 10; try++ {
		if _, err := f.relay.WriteTo(payload, peer); err != nil {
			return err
		}
		f.relay.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, _, err := f.relay.ReadFrom(buf)
		if err == nil && n >= 16 && binary.BigEndian.Uint64(buf[8:]) == 0 {
			f.relay.SetReadDeadline(time.Time{})
			return nil
		}
	}
	return errors.New("no echo from the peer through the relay")
}

// idleResult is the memory cost of idle allocations.
type idleResult struct {
	Allocations   int
	RSSBefore     int64
	RSSAfter      int64
	BytesPerAlloc float64
	Threads       int
}

// idleAllocations measures srv's RSS before and after n allocations that
// then stay idle.
func idleAllocations(srv *server, n int) (idleResult, error) {
	// Let the fresh server settle, as the allocations will.
	time.Sleep(time.Second)
	r := idleResult{Allocations: n, RSSBefore: srv.rss()}
	fl, err := allocateFlows(srv, n)
	if err != nil {
		return r, err
	}
	defer closeFlows(fl)
	time.Sleep(2 * time.Second)
	r.RSSAfter = srv.rss()
	r.Threads = srv.threads()
	r.BytesPerAlloc = float64(r.RSSAfter-r.RSSBefore) / float64(n)
	return r, nil
}
