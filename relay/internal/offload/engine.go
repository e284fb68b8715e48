//go:build linux

package offload

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
)

// Limits of the program's configuration map.
const (
	MaxListenPorts = 8
	MaxOwnAddrs    = 8
	// MaxBindings is the size of each forwarding map and of the counter
	// table: channel bindings beyond it stay in user space (ErrFull).
	MaxBindings = 65536
)

// Config says which packets are the relay's. A packet is looked at only when
// its UDP destination port is a listener port or inside the relay port
// range; everything else returns TCX_NEXT untouched and uncounted.
type Config struct {
	// ListenPorts are the UDP ports clients send ChannelData to (at most 8).
	ListenPorts []uint16
	// RelayPortMin and RelayPortMax bound (inclusive) the ports of relayed
	// transport addresses, where peers send.
	RelayPortMin, RelayPortMax uint16
	// OwnAddrs are the relay's own listener and relay IP addresses (at
	// most 8). Traffic between a peer at one of them and a relay address
	// (relay-to-relay) always goes through user space.
	OwnAddrs []netip.Addr
	// Logger receives the verifier log on a load failure and attach/detach
	// lines. Nil discards.
	Logger *slog.Logger
}

func (c Config) validate() error {
	var errs []error
	if len(c.ListenPorts) == 0 || len(c.ListenPorts) > MaxListenPorts {
		errs = append(errs, fmt.Errorf("%d listener ports, want 1 to %d", len(c.ListenPorts), MaxListenPorts))
	}
	for _, p := range c.ListenPorts {
		if p == 0 {
			errs = append(errs, errors.New("listener port 0"))
		}
		if p >= c.RelayPortMin && p <= c.RelayPortMax {
			errs = append(errs, fmt.Errorf("listener port %d inside the relay port range", p))
		}
	}
	if c.RelayPortMin == 0 || c.RelayPortMin > c.RelayPortMax {
		errs = append(errs, fmt.Errorf("relay port range %d-%d", c.RelayPortMin, c.RelayPortMax))
	}
	if len(c.OwnAddrs) > MaxOwnAddrs {
		errs = append(errs, fmt.Errorf("%d own addresses, at most %d", len(c.OwnAddrs), MaxOwnAddrs))
	}
	for _, a := range c.OwnAddrs {
		if !a.IsValid() || a.Unmap().IsUnspecified() {
			errs = append(errs, fmt.Errorf("own address %v is not a concrete address", a))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: config: %w", ErrInvalid, err)
	}
	return nil
}

func (c Config) kernel(enabled bool) offloadCfg {
	var k offloadCfg
	if enabled {
		k.Enabled = 1
	}
	for i, p := range c.ListenPorts {
		k.ListenPorts[i] = htons(p)
	}
	k.RelayLo, k.RelayHi = c.RelayPortMin, c.RelayPortMax
	for i, a := range c.OwnAddrs {
		k.Own[i] = a16(a)
	}
	k.N_own = uint32(len(c.OwnAddrs))
	return k
}

// Engine owns the loaded program, its maps and its tcx links. It is safe
// for concurrent use; all writes are serialised (user space is the maps'
// only writer).
type Engine struct {
	log *slog.Logger

	mu       sync.Mutex
	closed   bool
	cfg      Config
	enabled  bool
	objs     offloadObjects
	links    map[int]link.Link
	bindings map[BindingID]*entry
	slots    slotPool
}

// Load probes the kernel, loads the program and its maps, runs the built-in
// self-test and writes cfg. The program is not attached anywhere yet; call
// Attach. Forwarding starts enabled (see SetEnabled).
//
// Errors wrap ErrUnsupported (kernel lacks BPF/tcx or a helper),
// ErrPermission (missing CAP_BPF/CAP_NET_ADMIN), ErrSelfTest or ErrInvalid.
// A caller in "auto" mode treats any error as "use the user-space path".
func Load(cfg Config) (*Engine, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := features.HaveProgramType(ebpf.SchedCLS); err != nil {
		return nil, classify("probe sched_cls programs", err)
	}
	spec, err := loadOffload()
	if err != nil {
		return nil, fmt.Errorf("offload: read embedded object: %w", err)
	}
	e := &Engine{log: log, cfg: cfg, enabled: true, links: map[int]link.Link{}, bindings: map[BindingID]*entry{}}
	if err := spec.LoadAndAssign(&e.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			// The whole log: the last lines alone rarely say why.
			log.Error("offload: verifier rejected the program", "log", fmt.Sprintf("%+v", ve))
		}
		return nil, classify("load program", err)
	}
	e.slots.init(MaxBindings)
	if err := e.selfTest(); err != nil {
		e.objs.Close()
		return nil, err
	}
	if err := e.writeConfig(); err != nil {
		e.objs.Close()
		return nil, err
	}
	return e, nil
}

// classify wraps err with the sentinel a caller decides on.
func classify(what string, err error) error {
	switch {
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("%w: %s: %w", ErrUnsupported, what, err)
	case errors.Is(err, errEPERM), errors.Is(err, errEACCES):
		return fmt.Errorf("%w: %s: %w", ErrPermission, what, err)
	}
	return fmt.Errorf("offload: %s: %w", what, err)
}

// Attach attaches the program at tcx ingress of each interface (by index,
// in the calling thread's network namespace). Attach the interfaces packets
// arrive on: those owning listener addresses (client traffic) and relay
// addresses (peer traffic), and lo when either is a loopback address.
// Interfaces already attached are skipped. On error, the interfaces attached
// by this call are detached again.
func (e *Engine) Attach(ifindexes ...int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	var added []int
	for _, ifi := range ifindexes {
		if _, ok := e.links[ifi]; ok {
			continue
		}
		l, err := link.AttachTCX(link.TCXOptions{
			Interface: ifi,
			Program:   e.objs.TurnOffload,
			Attach:    ebpf.AttachTCXIngress,
		})
		if err != nil {
			for _, a := range added {
				e.links[a].Close()
				delete(e.links, a)
			}
			return classify(fmt.Sprintf("attach tcx ingress on ifindex %d", ifi), err)
		}
		e.links[ifi] = l
		added = append(added, ifi)
		e.log.Info("offload: attached", "ifindex", ifi)
	}
	return nil
}

// Detach removes the program from the given interfaces.
func (e *Engine) Detach(ifindexes ...int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	for _, ifi := range ifindexes {
		if l, ok := e.links[ifi]; ok {
			errs = append(errs, l.Close())
			delete(e.links, ifi)
		}
	}
	return errors.Join(errs...)
}

// Attached returns the interfaces the program is attached to.
func (e *Engine) Attached() []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]int, 0, len(e.links))
	for ifi := range e.links {
		out = append(out, ifi)
	}
	return out
}

// SetEnabled is the kill switch: false makes the program hand every packet
// on untouched (counted as "disabled") without forgetting the bindings, so
// traffic flows through user space; true resumes forwarding. Use false at
// the start of a drain and before changing policy wholesale.
func (e *Engine) SetEnabled(on bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	e.enabled = on
	return e.writeConfig()
}

// SetConfig replaces the ports and own addresses (after a reload).
func (e *Engine) SetConfig(cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	cfg.Logger = e.cfg.Logger
	e.cfg = cfg
	return e.writeConfig()
}

func (e *Engine) writeConfig() error {
	k := e.cfg.kernel(e.enabled)
	if err := e.objs.Config.Put(uint32(0), &k); err != nil {
		return fmt.Errorf("offload: write config: %w", err)
	}
	return nil
}

// Close detaches the program everywhere and frees the program and maps.
// It is idempotent.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	var errs []error
	for ifi, l := range e.links {
		errs = append(errs, l.Close())
		delete(e.links, ifi)
	}
	errs = append(errs, e.objs.Close())
	return errors.Join(errs...)
}
