package relay

import (
	"errors"
	"net/netip"

	"github.com/rtcsuite/rtcsuite/relay/internal/offload"
)

// offloadDrift is what a reconciliation pass must fix.
type offloadDrift struct {
	stale   []offload.BindingID
	missing []offload.Binding
	changed []offload.Binding
}

func (d offloadDrift) empty() bool {
	return len(d.stale) == 0 && len(d.missing) == 0 && len(d.changed) == 0
}

// diffOffload compares the bindings user space wants in the kernel with
// those the kernel holds: kernel entries nobody wants are stale, wanted
// ones the kernel lacks are missing, and those whose forwarding values
// differ are changed (written again as wanted).
func diffOffload(want map[offload.BindingID]offload.Binding, have []offload.Binding) offloadDrift {
	var d offloadDrift
	seen := make(map[offload.BindingID]bool, len(have))
	for _, h := range have {
		id := h.ID()
		seen[id] = true
		w, ok := want[id]
		switch {
		case !ok:
			d.stale = append(d.stale, id)
		case !sameForwarding(w, h):
			d.changed = append(d.changed, w)
		}
	}
	for id, w := range want {
		if !seen[id] {
			d.missing = append(d.missing, w)
		}
	}
	return d
}

// sameForwarding reports whether a and b forward the same packets the
// same way until the same deadlines. Routes are left out: a wanted
// binding leaves them to the engine's lookup.
func sameForwarding(a, b offload.Binding) bool {
	eq := func(x, y netip.AddrPort) bool { return unmapAP(x) == unmapAP(y) }
	return eq(a.Client, b.Client) && eq(a.Listener, b.Listener) && eq(a.Relay, b.Relay) && eq(a.Peer, b.Peer) &&
		a.Channel == b.Channel && a.Throttled == b.Throttled &&
		a.ChannelExpiry.Equal(b.ChannelExpiry) && a.PermissionExpiry.Equal(b.PermissionExpiry)
}

// reconcile makes the kernel hold exactly the bindings user space wants
// there: the installed ones as last written and those whose install
// failed (kept in user space until now). It runs every
// offloadReconcileInterval on the poller's goroutine, so a failed map
// write or any other drift lasts at most that long.
func (k *kernelObserver) reconcile() {
	k.mu.Lock()
	defer k.mu.Unlock()
	want := make(map[offload.BindingID]offload.Binding, len(k.tracked)+len(k.retry))
	for id, t := range k.tracked {
		want[id] = t.want
	}
	for id, r := range k.retry {
		want[id] = r.want
	}
	d := diffOffload(want, k.eng.Installed())
	if d.empty() {
		return
	}
	fixed := map[string]int{}
	for _, id := range d.stale {
		if _, err := k.eng.Remove(id); err != nil && !errors.Is(err, offload.ErrNotFound) {
			if !errors.Is(err, offload.ErrClosed) {
				k.log.Warn("offload: reconcile: remove a stale binding", "err", err)
			}
			continue
		}
		fixed[reconcileStale]++
	}
	for _, w := range d.missing {
		if k.reinstallLocked(w, true) {
			fixed[reconcileMissing]++
		}
	}
	for _, w := range d.changed {
		if k.reinstallLocked(w, false) {
			fixed[reconcileChanged]++
		}
	}
	if len(fixed) == 0 {
		return
	}
	for kind, n := range fixed {
		k.m.reconciled.WithLabelValues(kind).Add(float64(n))
	}
	k.m.bindings.Set(float64(len(k.tracked)))
	k.log.Warn("offload: kernel bindings drifted from user space; reconciled",
		reconcileStale, fixed[reconcileStale], reconcileMissing, fixed[reconcileMissing], reconcileChanged, fixed[reconcileChanged])
}

// reinstallLocked writes wanted binding w again and reports success. A
// binding that was missing starts on a fresh counter slot: its counters
// begin at zero, and a counter reading already under way belongs to the
// slot's previous owner. One that fails stays in user space, retried on
// the next pass.
func (k *kernelObserver) reinstallLocked(w offload.Binding, fresh bool) bool {
	id := w.ID()
	t, r := k.tracked[id], k.retry[id]
	if err := k.eng.Upsert(w); err != nil {
		if errors.Is(err, offload.ErrClosed) {
			return false
		}
		reason := skipReason(err)
		if t != nil {
			// Whatever the kernel kept of it must not forward.
			k.removeLocked(id, t.b)
			if reason != skipInvalid {
				k.retry[id] = retryBinding{b: t.b, want: w}
			}
		}
		k.m.skipped.WithLabelValues(reason).Inc()
		k.log.Debug("offload: reconcile: binding stays in user space", "err", err)
		return false
	}
	switch {
	case t == nil:
		delete(k.retry, id)
		k.gen++
		k.tracked[id] = &tracked{b: r.b, want: w, gen: k.gen}
	case fresh:
		k.gen++
		t.last, t.gen = offload.Stats{}, k.gen
	}
	return true
}
