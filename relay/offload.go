package relay

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// OffloadMode chooses the kernel data path (docs/offload.md).
type OffloadMode string

// Offload modes (the --offload flag's values).
const (
	// OffloadAuto uses the eBPF path when it loads, passes its self-test
	// and attaches; otherwise it logs one line and relays in user space.
	OffloadAuto OffloadMode = "auto"
	// OffloadTC requires the eBPF path (tcx): failing to start it is a
	// start-up error.
	OffloadTC OffloadMode = "tc"
	// OffloadOff never loads it.
	OffloadOff OffloadMode = "off"
)

func (m OffloadMode) validate() error {
	switch m {
	case OffloadAuto, OffloadTC, OffloadOff:
		return nil
	}
	return fmt.Errorf("offload %q: want auto, tc or off", string(m))
}

// offloadPollInterval is how often the kernel path's counters are read
// into metrics, per-binding totals and bandwidth decisions.
const offloadPollInterval = time.Second

// offloadReconcileInterval is how often the kernel's bindings are compared
// with user space's and fixed (a failed map write, any drift).
const offloadReconcileInterval = 30 * time.Second

// Reasons a channel binding stays in user space although the kernel path
// runs (turnd_offload_skipped_bindings_total{reason}).
const (
	skipStreamClient = "stream_client"    // TCP/TLS client: no UDP↔UDP shortcut
	skipNoLocalAddr  = "no_local_address" // wildcard listener, no source address towards the client
	skipInvalid      = "invalid"          // mixed families, or an address the program cannot carry
	skipFull         = "full"             // binding table full
	skipError        = "error"            // a map update failed
)

var skipReasons = []string{skipStreamClient, skipNoLocalAddr, skipInvalid, skipFull, skipError}

// Kinds of reconciliation fix (turnd_offload_reconciled_total{kind}).
const (
	reconcileStale   = "stale"   // in the kernel, not wanted by user space: removed
	reconcileMissing = "missing" // wanted, not in the kernel: installed
	reconcileChanged = "changed" // in the kernel with other forwarding values: rewritten
)

var reconcileKinds = []string{reconcileStale, reconcileMissing, reconcileChanged}

// offloadMetrics are the kernel path's series.
type offloadMetrics struct {
	active   prometheus.Gauge
	bindings prometheus.Gauge
	packets  *prometheus.CounterVec // direction
	bytes    *prometheus.CounterVec // direction
	passed   *prometheus.CounterVec // reason
	skipped  *prometheus.CounterVec // reason
	// reconciled counts fixes of the reconciliation pass, by kind.
	reconciled *prometheus.CounterVec
}

func newOffloadMetrics(reg prometheus.Registerer) *offloadMetrics {
	m := &offloadMetrics{
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "turnd_offload_active", Help: "1 while the eBPF kernel path forwards channel data, else 0.",
		}),
		bindings: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "turnd_offload_bindings", Help: "Channel bindings installed in the kernel path.",
		}),
		packets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turnd_offload_packets_total", Help: "Datagrams the kernel path relayed, by direction (also counted in turnd_relayed_packets_total).",
		}, []string{"direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turnd_offload_bytes_total", Help: "Payload bytes the kernel path relayed, by direction (also counted in turnd_relayed_bytes_total).",
		}, []string{"direction"}),
		passed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turnd_offload_passed_packets_total", Help: "Packets to the relay's ports the kernel path handed to user space, by reason.",
		}, []string{"reason"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turnd_offload_skipped_bindings_total", Help: "Channel bindings kept in user space while the kernel path runs, by reason.",
		}, []string{"reason"}),
		reconciled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turnd_offload_reconciled_total", Help: "Kernel bindings the periodic reconciliation fixed: stale (removed), missing (installed), changed (rewritten).",
		}, []string{"kind"}),
	}
	reg.MustRegister(m.active, m.bindings, m.packets, m.bytes, m.passed, m.skipped, m.reconciled)
	for _, d := range []string{dirClientToPeer, dirPeerToClient} {
		m.packets.WithLabelValues(d)
		m.bytes.WithLabelValues(d)
	}
	for _, r := range skipReasons {
		m.skipped.WithLabelValues(r)
	}
	for _, k := range reconcileKinds {
		m.reconciled.WithLabelValues(k)
	}
	return m
}

// chargeOffloaded draws what the kernel path relayed for one binding
// (toPeer: client→peer bytes, limited as user space's allowOut; toClient:
// peer→client, as allowIn) from every limiter the binding answers to,
// going into debt past the burst, and reports whether any of them is now
// in debt: over its cap.
func (b *bandwidth) chargeOffloaded(toPeer, toClient uint64, now time.Time) bool {
	over := false
	for _, l := range b.limiters() {
		over = l.out.charge(toPeer, now) || over
		over = l.in.charge(toClient, now) || over
	}
	return over
}

// rested reports whether every limiter has at least half its burst again.
func (b *bandwidth) rested(now time.Time) bool {
	for _, l := range b.limiters() {
		if !l.in.rested(now) || !l.out.rested(now) {
			return false
		}
	}
	return true
}

// limiters lists the allocation's, the user's and the server's limiter
// pairs (those configured).
func (b *bandwidth) limiters() []*userLimit {
	ls := []*userLimit{{in: b.in, out: b.out}}
	if b.user != nil {
		ls = append(ls, b.user)
	}
	if b.total != nil {
		ls = append(ls, b.total)
	}
	return ls
}

// charge takes n bytes unconditionally (in bursts' worth, since a
// reservation may not exceed the burst) and reports whether the limiter
// is in debt afterwards.
func (l *byteLimiter) charge(n uint64, now time.Time) bool {
	if l == nil {
		return false
	}
	burst := uint64(l.lim.Burst())
	for n > 0 {
		c := min(n, burst)
		l.lim.ReserveN(now, int(c))
		n -= c
	}
	return l.lim.TokensAt(now) < 0
}

func (l *byteLimiter) rested(now time.Time) bool {
	return l == nil || l.lim.TokensAt(now) >= float64(l.lim.Burst())/2
}
