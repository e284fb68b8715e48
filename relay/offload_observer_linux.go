package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rtcsuite/rtcsuite/relay/internal/offload"
)

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
	// retry holds bindings user space wants in the kernel whose install
	// failed (table full, a map write error): they stay in user space and
	// the next reconciliation pass tries again.
	retry map[offload.BindingID]retryBinding

	lastReasons []uint64 // owned by the poller
}

// tracked is one binding installed in the kernel.
type tracked struct {
	b    *binding
	want offload.Binding // as last written
	last offload.Stats   // counters already added to b
	gen  uint64          // when installed (see poll)
}

// retryBinding is a binding wanted in the kernel but not installed.
type retryBinding struct {
	b    *binding
	want offload.Binding
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
		if errors.Is(err, offload.ErrClosed) {
			return
		}
		reason := skipReason(err)
		k.m.skipped.WithLabelValues(reason).Inc()
		k.log.Debug("offload: binding stays in user space", "err", err)
		// A failed update may have rolled the entry back: take out what
		// is left and keep the binding in user space.
		if old := k.tracked[id]; old != nil {
			k.removeLocked(id, old.b)
		}
		if reason != skipInvalid { // the program can never carry an invalid one
			k.retry[id] = retryBinding{b: s.ref, want: want}
		}
		return
	}
	delete(k.retry, id)
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
	if r, ok := k.retry[id]; ok && r.b == b {
		delete(k.retry, id)
	}
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

// skipReason names why an Upsert left a binding in user space.
func skipReason(err error) string {
	switch {
	case errors.Is(err, offload.ErrInvalid):
		return skipInvalid
	case errors.Is(err, offload.ErrFull):
		return skipFull
	}
	return skipError
}

// pollLoop reads the counters every interval and reconciles the kernel's
// bindings with user space's every reconcile, until stop closes.
func (k *kernelObserver) pollLoop(interval, reconcile time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	rt := time.NewTicker(reconcile)
	defer rt.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			k.poll()
		case <-rt.C:
			k.reconcile()
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
