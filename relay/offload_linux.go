package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rtcsuite/rtcsuite/relay/internal/offload"
)

// offloader runs the eBPF kernel path (relay/internal/offload) next to
// the user-space fast path, which keeps the state of every binding at all
// times: the kernel only ever holds a copy, so switching it on or off
// moves packets between two paths that agree.
//
// ctl serialises the life cycle (start at New, SIGHUP, address events,
// drain, Close). pion's callbacks never take ctl: they reach the engine
// through the kernelObserver only.
type offloader struct {
	s   *Server
	log *slog.Logger
	m   *offloadMetrics

	ctl      sync.Mutex
	mode     OffloadMode
	closed   bool
	draining bool
	eng      *offload.Engine
	k        *kernelObserver
	stopPoll chan struct{}
	pollDone chan struct{}
}

func newOffloader(s *Server) *offloader {
	o := &offloader{s: s, log: s.log, m: s.metrics.offload}
	for _, r := range offload.Reasons() {
		if !forwardedReason(r) {
			o.m.passed.WithLabelValues(r.String())
		}
	}
	return o
}

func forwardedReason(r offload.Reason) bool {
	return r == offload.ForwardedToPeer || r == offload.ForwardedToClient
}

// setMode applies a mode at start and on Reload. Under auto, a kernel path
// that cannot start logs one line and leaves user space in charge; under
// tc it is an error (New fails; Reload reports it and relays in user
// space).
func (o *offloader) setMode(mode OffloadMode) error {
	o.ctl.Lock()
	defer o.ctl.Unlock()
	prev := o.mode
	o.mode = mode
	switch {
	case o.closed:
		return nil
	case mode == OffloadOff:
		if o.eng != nil {
			o.stopLocked()
			o.log.Info("offload: kernel path off; relaying in user space")
		}
		return nil
	case o.eng != nil:
		return nil // auto and tc alike: already running
	}
	err := o.startLocked()
	switch {
	case err == nil:
		o.log.Info("offload: kernel path on", "mode", string(mode), "interfaces", len(o.eng.Attached()))
		return nil
	case mode == OffloadTC:
		return fmt.Errorf("offload=tc: the eBPF kernel path cannot start (use --offload=auto to fall back to user space): %w", err)
	}
	if prev != mode { // one line per decision, not per SIGHUP
		o.log.Info("offload: kernel path unavailable; relaying in user space", "reason", err.Error())
	}
	return nil
}

func (o *offloader) startLocked() error {
	cfg, ifaces, err := o.kernelConfig()
	if err != nil {
		return err
	}
	cfg.Logger = o.log
	eng, err := offload.Load(cfg)
	if err != nil {
		return err
	}
	if err := eng.Attach(ifaces...); err != nil {
		eng.Close()
		return err
	}
	if o.draining {
		if err := eng.SetEnabled(false); err != nil {
			eng.Close()
			return err
		}
	}
	o.eng = eng
	o.k = &kernelObserver{eng: eng, m: o.m, log: o.log, tracked: map[offload.BindingID]*tracked{}}
	o.stopPoll, o.pollDone = make(chan struct{}), make(chan struct{})
	interval := o.s.cfg.offloadPoll
	if interval <= 0 {
		interval = offloadPollInterval
	}
	go o.k.pollLoop(interval, o.stopPoll, o.pollDone)
	o.m.active.Set(1)
	// Replays every live binding; changes racing with it reach k too.
	o.s.fast.setObserver(o.k)
	return nil
}

// stopLocked hands every packet back to user space and frees the kernel
// path: forwarding off first (the bindings stay known to user space), then
// a last counter reading, then detach and close.
func (o *offloader) stopLocked() {
	o.s.fast.setObserver(nil)
	if err := o.eng.SetEnabled(false); err != nil {
		o.log.Warn("offload: disable", "err", err)
	}
	close(o.stopPoll)
	<-o.pollDone
	o.k.poll()
	if err := o.eng.Close(); err != nil {
		o.log.Warn("offload: close", "err", err)
	}
	o.eng, o.k = nil, nil
	o.m.active.Set(0)
	o.m.bindings.Set(0)
}

// refresh re-reads own addresses and interfaces (netlink address events,
// SIGHUP): the program learns the new addresses and is attached to new
// interfaces and detached from those that no longer qualify.
func (o *offloader) refresh() {
	o.ctl.Lock()
	defer o.ctl.Unlock()
	if o.eng == nil {
		return
	}
	cfg, ifaces, err := o.kernelConfig()
	if err == nil {
		err = o.eng.SetConfig(cfg)
	}
	if err != nil {
		o.log.Warn("offload: addresses changed; keeping the previous configuration", "err", err)
		return
	}
	var gone []int
	for _, ifi := range o.eng.Attached() {
		if !slices.Contains(ifaces, ifi) {
			gone = append(gone, ifi)
		}
	}
	if err := o.eng.Detach(gone...); err != nil {
		o.log.Debug("offload: detach from a vanished interface", "err", err)
	}
	for _, ifi := range ifaces {
		// One at a time: an interface that vanished meanwhile must not
		// keep the others unattached.
		if err := o.eng.Attach(ifi); err != nil {
			o.log.Warn("offload: attach", "ifindex", ifi, "err", err)
		}
	}
}

// drain hands every packet to user space for the rest of the server's
// life (the drain's own accounting and policy then see every packet).
func (o *offloader) drain() {
	o.ctl.Lock()
	defer o.ctl.Unlock()
	o.draining = true
	if o.eng != nil {
		if err := o.eng.SetEnabled(false); err != nil {
			o.log.Warn("offload: disable for drain", "err", err)
		}
	}
}

// close stops the kernel path for good (Server.Close, before pion closes
// the allocations).
func (o *offloader) close() {
	o.ctl.Lock()
	defer o.ctl.Unlock()
	if o.eng != nil {
		o.stopLocked()
	}
	o.closed = true
}

// engine returns the running engine, or nil (tests).
func (o *offloader) engine() *offload.Engine {
	o.ctl.Lock()
	defer o.ctl.Unlock()
	return o.eng
}

// kernelConfig says which packets are ours and where they arrive: UDP
// listener ports, the relay port range, own addresses (relay IPs first,
// then specific listener IPs) and the interfaces to attach to — those
// carrying own addresses and lo, or, with a wildcard UDP listener, every
// interface that has an address.
func (o *offloader) kernelConfig() (offload.Config, []int, error) {
	s := o.s
	cfg := offload.Config{RelayPortMin: uint16(s.cfg.MinPort), RelayPortMax: uint16(s.cfg.MaxPort)}
	var own []netip.Addr
	addOwn := func(ip netip.Addr) {
		if ip = ip.Unmap(); ip.IsValid() && !ip.IsUnspecified() && !slices.Contains(own, ip) {
			own = append(own, ip)
		}
	}
	addOwn(s.relayBind4)
	addOwn(s.relayBind6)
	wildcard := false
	for _, a := range s.addrs {
		if a.Network() != "udp" {
			continue
		}
		ap := toAddrPort(a)
		if !slices.Contains(cfg.ListenPorts, ap.Port()) {
			cfg.ListenPorts = append(cfg.ListenPorts, ap.Port())
		}
		if ap.Addr().Unmap().IsUnspecified() {
			wildcard = true
		}
		addOwn(ap.Addr())
	}
	if len(cfg.ListenPorts) == 0 {
		return cfg, nil, errors.New("no UDP listener")
	}
	if len(own) > offload.MaxOwnAddrs {
		return cfg, nil, fmt.Errorf("%d own relay and listener addresses, the program holds %d", len(own), offload.MaxOwnAddrs)
	}
	cfg.OwnAddrs = own
	ifs, err := net.Interfaces()
	if err != nil {
		return cfg, nil, fmt.Errorf("list interfaces: %w", err)
	}
	var ifaces []int
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback != 0 {
			ifaces = append(ifaces, ifi.Index)
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			pfx, err := netip.ParsePrefix(a.String())
			if err == nil && (wildcard || slices.Contains(own, pfx.Addr().Unmap())) {
				ifaces = append(ifaces, ifi.Index)
				break
			}
		}
	}
	return cfg, ifaces, nil
}

// kernelObserver mirrors the fast path's binding table into one engine
// (bindingObserver). It runs on pion's callbacks under pion's allocation
// locks: it takes only mu, which is held across engine calls (map updates
// and one route lookup: syscalls that do not wait on anything of ours) and
// never while calling anything that could wait on pion.
type kernelObserver struct {
	eng *offload.Engine
	m   *offloadMetrics
	log *slog.Logger

	mu      sync.Mutex
	gen     uint64
	tracked map[offload.BindingID]*tracked

	lastReasons []uint64 // owned by the poller
}

// tracked is one binding installed in the kernel.
type tracked struct {
	b    *binding
	want offload.Binding // as last written
	last offload.Stats   // counters already added to b
	gen  uint64          // when installed (see poll)
}

func (k *kernelObserver) bindingInstalled(s BindingSnapshot) { k.apply(s, true) }
func (k *kernelObserver) bindingChanged(s BindingSnapshot)   { k.apply(s, false) }
func (k *kernelObserver) bindingRemoved(s BindingSnapshot) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.removeLocked(offload.BindingID{Relay: unmapAP(s.Relay), Peer: unmapAP(s.Peer)}, s.ref)
}

// apply makes the kernel hold what the snapshot says: the binding,
// forwarding until its deadlines, when user space would forward it now;
// nothing otherwise (a revoked permission or a refused peer takes the
// binding out, and a later permission puts it back).
func (k *kernelObserver) apply(s BindingSnapshot, installed bool) {
	id := offload.BindingID{Relay: unmapAP(s.Relay), Peer: unmapAP(s.Peer)}
	k.mu.Lock()
	defer k.mu.Unlock()
	if !s.ClientUDP {
		if installed {
			k.m.skipped.WithLabelValues(skipStreamClient).Inc()
		}
		return
	}
	if s.Removed || !s.Enabled {
		k.removeLocked(id, s.ref)
		return
	}
	t := k.tracked[id]
	if t != nil && t.b != s.ref {
		// A live binding replaces an earlier one of the same (relay,
		// peer) whose removal has not arrived: the earlier one's counters
		// are settled first, and the new one starts on a fresh slot.
		k.removeLocked(id, t.b)
		t = nil
	}
	want := offload.Binding{
		Client: s.Client, Listener: s.Listener, Relay: s.Relay, Peer: s.Peer, Channel: s.Channel,
		ChannelExpiry:    monoTime(min(s.ChannelDeadline, s.AllocationDeadline)),
		PermissionExpiry: monoTime(s.PermissionDeadline),
	}
	switch {
	case t != nil:
		want.Listener = t.want.Listener // resolved once
	case s.Listener.Addr().Unmap().IsUnspecified():
		src, err := sourceAddrFor(s.Client.Addr().Unmap())
		if err != nil {
			k.m.skipped.WithLabelValues(skipNoLocalAddr).Inc()
			k.log.Debug("offload: no local address towards the client; binding stays in user space", "err", err)
			return
		}
		want.Listener = netip.AddrPortFrom(src, s.Listener.Port())
	}
	if t != nil {
		want.Throttled = t.want.Throttled // the poller's decision (bandwidth caps)
		if t.want == want {
			return
		}
	}
	if err := k.eng.Upsert(want); err != nil {
		reason := skipError
		switch {
		case errors.Is(err, offload.ErrInvalid):
			reason = skipInvalid
		case errors.Is(err, offload.ErrFull):
			reason = skipFull
		case errors.Is(err, offload.ErrClosed):
			return
		}
		k.m.skipped.WithLabelValues(reason).Inc()
		k.log.Debug("offload: binding stays in user space", "err", err)
		// A failed update may have rolled the entry back: forget it.
		if old := k.tracked[id]; old != nil {
			k.removeLocked(id, old.b)
		}
		return
	}
	if t == nil {
		k.gen++
		t = &tracked{b: s.ref, gen: k.gen}
		k.tracked[id] = t
		k.m.bindings.Set(float64(len(k.tracked)))
	}
	t.want = want
}

// removeLocked takes binding id out of the kernel when it is b's, and
// adds its last counters to b.
func (k *kernelObserver) removeLocked(id offload.BindingID, b *binding) {
	t := k.tracked[id]
	if t == nil || t.b != b {
		return
	}
	st, err := k.eng.Remove(id)
	if err != nil && !errors.Is(err, offload.ErrClosed) && !errors.Is(err, offload.ErrNotFound) {
		k.log.Warn("offload: remove binding", "err", err)
	}
	delete(k.tracked, id)
	k.m.bindings.Set(float64(len(k.tracked)))
	if err == nil {
		k.account(t, st)
	}
}

// shapeLocked enforces bandwidth caps on a binding the kernel carries: what
// it relayed is drawn from the limiters user space draws from (going into
// debt when over), and a binding whose limiters are in debt is throttled
// to user space, which then shapes it — dropping until the debt is paid —
// until the limiters have half their burst again. The overshoot before
// the throttle is at most one poll interval of traffic above the cap, and
// it is paid back rather than forgiven.
func (k *kernelObserver) shapeLocked(id offload.BindingID, t *tracked, bw *bandwidth, d offload.Stats, now time.Time) {
	over := bw.chargeOffloaded(d.ToPeerBytes, d.ToClientBytes, now)
	var throttle bool
	switch {
	case over && !t.want.Throttled:
		throttle = true
	case !over && t.want.Throttled && bw.rested(now):
		throttle = false
	default:
		return
	}
	if err := k.eng.SetThrottled(id, throttle); err != nil {
		if !errors.Is(err, offload.ErrClosed) {
			k.log.Warn("offload: throttle", "err", err)
		}
		return
	}
	t.want.Throttled = throttle
}

// account adds the counters grown since t.last to t's binding and to the
// kernel path's metrics, and returns what it added.
func (k *kernelObserver) account(t *tracked, st offload.Stats) offload.Stats {
	d := offload.Stats{
		ToPeerPackets: sub(st.ToPeerPackets, t.last.ToPeerPackets), ToPeerBytes: sub(st.ToPeerBytes, t.last.ToPeerBytes),
		ToClientPackets: sub(st.ToClientPackets, t.last.ToClientPackets), ToClientBytes: sub(st.ToClientBytes, t.last.ToClientBytes),
	}
	t.last = st
	if d == (offload.Stats{}) {
		return d
	}
	t.b.addOffloaded(d.ToPeerPackets, d.ToPeerBytes, d.ToClientPackets, d.ToClientBytes)
	k.m.packets.WithLabelValues(dirClientToPeer).Add(float64(d.ToPeerPackets))
	k.m.bytes.WithLabelValues(dirClientToPeer).Add(float64(d.ToPeerBytes))
	k.m.packets.WithLabelValues(dirPeerToClient).Add(float64(d.ToClientPackets))
	k.m.bytes.WithLabelValues(dirPeerToClient).Add(float64(d.ToClientBytes))
	return d
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// pollLoop reads the counters every interval until stop closes.
func (k *kernelObserver) pollLoop(interval time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			k.poll()
		}
	}
}

// poll reads every counter once: per-binding deltas go to the bindings'
// totals, the relayed/offloaded metrics and the bandwidth limiters, reason
// deltas to turnd_offload_passed_packets_total.
func (k *kernelObserver) poll() { k.pollAt(timeNow()) }

// pollAt is poll with the bandwidth limiters' clock at now.
func (k *kernelObserver) pollAt(now time.Time) {
	k.mu.Lock()
	gen := k.gen
	k.mu.Unlock()
	// Read without mu: pion's callbacks must not wait for a full read.
	c, err := k.eng.Counters()
	if err != nil {
		if !errors.Is(err, offload.ErrClosed) {
			k.log.Warn("offload: read counters", "err", err)
		}
		return
	}
	k.mu.Lock()
	for id, t := range k.tracked {
		// A binding installed after the reading began may hold a slot
		// whose reading belonged to its predecessor: next round.
		st, ok := c.Bindings[id]
		if !ok || t.gen > gen {
			continue
		}
		d := k.account(t, st)
		if bw := t.b.rf.bw; bw != nil {
			k.shapeLocked(id, t, bw, d, now)
		}
	}
	k.mu.Unlock()
	if k.lastReasons == nil {
		k.lastReasons = make([]uint64, len(c.Reasons))
	}
	for i, v := range c.Reasons {
		r := offload.Reason(i)
		if d := sub(v, k.lastReasons[i]); d > 0 && !forwardedReason(r) {
			k.m.passed.WithLabelValues(r.String()).Add(float64(d))
		}
		k.lastReasons[i] = v
	}
}

// monoTime converts a deadline in monotonic nanoseconds since monoBase to
// a time.Time whose monotonic reading the engine turns into
// CLOCK_MONOTONIC (both are the same clock on Linux).
func monoTime(ns int64) time.Time {
	if ns <= 0 {
		return time.Time{}
	}
	return monoBase.Add(time.Duration(ns))
}

// sourceAddrFor returns the address this host sends from towards dst:
// what a wildcard listener's replies carry, and so the address clients
// send to. A connected UDP socket asks the routing table; nothing is sent.
func sourceAddrFor(dst netip.Addr) (netip.Addr, error) {
	fam := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: 9, Addr: dst.As16()}
	if dst.Is4() {
		fam, sa = unix.AF_INET, &unix.SockaddrInet4{Port: 9, Addr: dst.As4()}
	}
	fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("source address towards %v: %w", dst, err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, sa); err != nil {
		return netip.Addr{}, fmt.Errorf("source address towards %v: %w", dst, err)
	}
	lsa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("source address towards %v: %w", dst, err)
	}
	switch a := lsa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(a.Addr), nil
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(a.Addr).Unmap(), nil
	}
	return netip.Addr{}, fmt.Errorf("source address towards %v: unexpected %T", dst, lsa)
}
