package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"

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
	o.k = &kernelObserver{eng: eng, m: o.m, log: o.log,
		tracked: map[offload.BindingID]*tracked{}, retry: map[offload.BindingID]retryBinding{}}
	o.stopPoll, o.pollDone = make(chan struct{}), make(chan struct{})
	interval := o.s.cfg.offloadPoll
	if interval <= 0 {
		interval = offloadPollInterval
	}
	every := o.s.cfg.offloadReconcile
	if every <= 0 {
		every = offloadReconcileInterval
	}
	go o.k.pollLoop(interval, every, o.stopPoll, o.pollDone)
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
