//go:build linux

package offload

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// loopbackIfindex is lo's index in every network namespace.
const loopbackIfindex = 1

const (
	flagEnabled   = 1
	flagThrottled = 2
	flagLocal     = 4
)

var (
	errEPERM  = unix.EPERM
	errEACCES = unix.EACCES
)

// Binding is one channel binding of one allocation, as pion knows it: the
// program forwards ChannelData Channel from Client to Listener out of Relay
// to Peer, and UDP from Peer to Relay as ChannelData out of Listener to
// Client. All four addresses must be concrete (a listener bound to 0.0.0.0
// passes the address the client actually sent to) and of one family.
type Binding struct {
	Client   netip.AddrPort // the client's address as the listener sees it
	Listener netip.AddrPort // where the client sends
	Relay    netip.AddrPort // the allocation's relayed transport address
	Peer     netip.AddrPort
	Channel  uint16 // 0x4000-0x7FFF

	// ChannelExpiry and PermissionExpiry are when the channel and the
	// permission for Peer's IP lapse; the program stops forwarding at the
	// earlier one even if no delete event arrives. Zero means no deadline.
	ChannelExpiry, PermissionExpiry time.Time
	// Throttled starts the binding in user space (bandwidth cap).
	Throttled bool

	// ToPeer and ToClient say how packets leave; the zero Route asks the
	// engine to look it up in the routing table (of the calling thread's
	// network namespace) when the binding is installed.
	ToPeer, ToClient Route
}

// Route is how a rewritten packet leaves: out of an interface, or up the
// local stack through lo, both through bpf_redirect_neigh (the kernel picks
// the next hop and MAC; ip_forward is not needed).
type Route struct {
	Local   bool // destination is an address of this host
	Ifindex int  // egress interface when not Local
	MTU     int  // egress MTU in bytes; 0 skips the MTU check
}

func (r Route) zero() bool { return !r.Local && r.Ifindex == 0 }

// BindingID names a binding the way pion's channel events do.
type BindingID struct {
	Relay, Peer netip.AddrPort
}

// ID returns the binding's identity.
func (b Binding) ID() BindingID {
	return BindingID{Relay: unmapAP(b.Relay), Peer: unmapAP(b.Peer)}
}

type entry struct {
	b      Binding
	c2pKey offloadC2pKey
	p2cKey offloadP2cKey
	toPeer offloadFwd // value under c2pKey
	toCli  offloadFwd // value under p2cKey; both share one counter slot for life
}

func unmapAP(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func (b Binding) validate() error {
	var errs []error
	addrs := []struct {
		name string
		ap   netip.AddrPort
	}{{"client", b.Client}, {"listener", b.Listener}, {"relay", b.Relay}, {"peer", b.Peer}}
	is4 := b.Client.Addr().Unmap().Is4()
	for _, a := range addrs {
		ad := a.ap.Addr().Unmap()
		switch {
		case !a.ap.IsValid() || ad.IsUnspecified() || a.ap.Port() == 0:
			errs = append(errs, fmt.Errorf("%s address %v is not concrete", a.name, a.ap))
		case ad.Is4() != is4:
			errs = append(errs, fmt.Errorf("%s address %v: mixed address families are not offloaded", a.name, a.ap))
		case ad.Zone() != "":
			errs = append(errs, fmt.Errorf("%s address %v has a zone", a.name, a.ap))
		}
	}
	if b.Channel < 0x4000 || b.Channel > 0x7fff {
		errs = append(errs, fmt.Errorf("channel %#x outside 0x4000-0x7FFF", b.Channel))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: binding: %w", ErrInvalid, err)
	}
	return nil
}

// Upsert installs a binding in both directions, or updates it (same
// Relay and Peer). It fails with ErrInvalid for a binding the program cannot
// carry and ErrFull when the tables are full; either way the binding simply
// stays in user space. A route lookup happens here for a zero Route.
func (e *Engine) Upsert(b Binding) error {
	if err := b.validate(); err != nil {
		return err
	}
	var err error
	if b.ToPeer.zero() {
		if b.ToPeer, err = lookupRoute(b.Peer.Addr().Unmap()); err != nil {
			return err
		}
	}
	if b.ToClient.zero() {
		if b.ToClient, err = lookupRoute(b.Client.Addr().Unmap()); err != nil {
			return err
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	id := b.ID()
	old := e.bindings[id]
	var slot uint32
	if old != nil {
		slot = old.toPeer.Slot
	} else {
		var ok bool
		if slot, ok = e.slots.get(); !ok {
			return ErrFull
		}
		if err := e.zeroSlot(slot); err != nil {
			e.slots.put(slot)
			return err
		}
	}
	n := newEntry(b, slot)
	if old != nil && old.c2pKey != n.c2pKey {
		// The channel or client moved: the old client-side key must go.
		if err := e.objs.C2p.Delete(&old.c2pKey); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("offload: delete old client key: %w", err)
		}
	}
	// Peer side first: a half-installed pair only sends some packets to
	// user space, which is correct.
	if err := e.objs.P2c.Put(&n.p2cKey, &n.toCli); err != nil {
		if old == nil {
			e.slots.put(slot)
		}
		return fmt.Errorf("offload: insert peer key: %w", err)
	}
	if err := e.objs.C2p.Put(&n.c2pKey, &n.toPeer); err != nil {
		// Take the whole binding out of the kernel (user space carries
		// it): a leftover entry would forward for a binding the engine no
		// longer tracks.
		stale := []*ebpf.Map{e.objs.P2c}
		keys := []any{&n.p2cKey}
		if old != nil {
			stale, keys = append(stale, e.objs.C2p), append(keys, &old.c2pKey)
		}
		for i, m := range stale {
			if derr := m.Delete(keys[i]); derr != nil && !errors.Is(derr, ebpf.ErrKeyNotExist) {
				err = errors.Join(err, fmt.Errorf("roll back: %w", derr))
			}
		}
		e.slots.put(slot)
		delete(e.bindings, id)
		return fmt.Errorf("offload: insert client key: %w", err)
	}
	e.bindings[id] = n
	return nil
}

func newEntry(b Binding, slot uint32) *entry {
	fam := uint8(6)
	if b.Client.Addr().Unmap().Is4() {
		fam = 4
	}
	n := &entry{b: b}
	n.c2pKey = offloadC2pKey{Fam: fam, Chan: htons(b.Channel),
		Cport: htons(b.Client.Port()), Lport: htons(b.Listener.Port()),
		Caddr: a16(b.Client.Addr()), Laddr: a16(b.Listener.Addr())}
	n.p2cKey = offloadP2cKey{Fam: fam, Pport: htons(b.Peer.Port()), Rport: htons(b.Relay.Port()),
		Paddr: a16(b.Peer.Addr()), Raddr: a16(b.Relay.Addr())}
	flags := uint8(flagEnabled)
	if b.Throttled {
		flags |= flagThrottled
	}
	cd, pd := monoDeadline(b.ChannelExpiry), monoDeadline(b.PermissionExpiry)
	n.toPeer = offloadFwd{Fam: fam, Flags: flags, Chan: htons(b.Channel),
		Sport: htons(b.Relay.Port()), Dport: htons(b.Peer.Port()),
		Saddr: a16(b.Relay.Addr()), Daddr: a16(b.Peer.Addr()),
		Slot: slot, ChanDeadline: cd, PermDeadline: pd}
	n.toPeer.setRoute(b.ToPeer)
	n.toCli = offloadFwd{Fam: fam, Flags: flags, Chan: htons(b.Channel),
		Sport: htons(b.Listener.Port()), Dport: htons(b.Client.Port()),
		Saddr: a16(b.Listener.Addr()), Daddr: a16(b.Client.Addr()),
		Slot: slot, ChanDeadline: cd, PermDeadline: pd}
	n.toCli.setRoute(b.ToClient)
	return n
}

func (f *offloadFwd) setRoute(r Route) {
	if r.Local {
		// Up the stack through lo (see deliver in offload.c).
		f.Flags |= flagLocal
		f.Ifindex = loopbackIfindex
		return
	}
	f.Ifindex = uint32(r.Ifindex)
	if r.MTU > 0 {
		f.Mtu = uint32(r.MTU)
	}
}

// Remove deletes a binding in both directions (pion's OnChannelDeleted) and
// returns its final counters.
func (e *Engine) Remove(id BindingID) (Stats, error) {
	id = BindingID{unmapAP(id.Relay), unmapAP(id.Peer)}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return Stats{}, ErrClosed
	}
	n := e.bindings[id]
	if n == nil {
		return Stats{}, ErrNotFound
	}
	return e.removeLocked(id, n)
}

func (e *Engine) removeLocked(id BindingID, n *entry) (Stats, error) {
	var errs []error
	for _, err := range []error{e.objs.C2p.Delete(&n.c2pKey), e.objs.P2c.Delete(&n.p2cKey)} {
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	delete(e.bindings, id)
	// A program that looked the entry up just before the delete may still
	// count into the slot; the pool hands slots out oldest-freed first, so
	// that count lands before anyone reuses it (and is zeroed then).
	st, err := e.readSlot(n.toPeer.Slot)
	errs = append(errs, err)
	e.slots.put(n.toPeer.Slot)
	if err := errors.Join(errs...); err != nil {
		return st, fmt.Errorf("offload: remove binding: %w", err)
	}
	return st, nil
}

// RemoveRelay deletes every binding of one relayed address (pion's
// OnAllocationDeleted, before the relay socket closes) and returns how many
// it removed.
func (e *Engine) RemoveRelay(relay netip.AddrPort) (int, error) {
	relay = unmapAP(relay)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return 0, ErrClosed
	}
	var errs []error
	n := 0
	for id, b := range e.bindings {
		if id.Relay == relay {
			_, err := e.removeLocked(id, b)
			errs = append(errs, err)
			n++
		}
	}
	return n, errors.Join(errs...)
}

// update applies fn to a binding's kernel values and writes both back.
func (e *Engine) update(id BindingID, fn func(f *offloadFwd)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	n := e.bindings[BindingID{unmapAP(id.Relay), unmapAP(id.Peer)}]
	if n == nil {
		return ErrNotFound
	}
	return e.updateLocked(n, fn)
}

func (e *Engine) updateLocked(n *entry, fn func(f *offloadFwd)) error {
	fn(&n.toPeer)
	fn(&n.toCli)
	if err := e.objs.P2c.Update(&n.p2cKey, &n.toCli, ebpf.UpdateExist); err != nil {
		return fmt.Errorf("offload: update peer key: %w", err)
	}
	if err := e.objs.C2p.Update(&n.c2pKey, &n.toPeer, ebpf.UpdateExist); err != nil {
		return fmt.Errorf("offload: update client key: %w", err)
	}
	return nil
}

// SetThrottled moves a binding to user space (true: over a bandwidth cap or
// quota) or back into the kernel (false).
func (e *Engine) SetThrottled(id BindingID, throttled bool) error {
	return e.update(id, func(f *offloadFwd) {
		if throttled {
			f.Flags |= flagThrottled
		} else {
			f.Flags &^= flagThrottled
		}
	})
}

// SetDeadlines moves a binding's channel and permission deadlines (after a
// successful ChannelBind refresh or CreatePermission). Zero means none.
func (e *Engine) SetDeadlines(id BindingID, channel, permission time.Time) error {
	cd, pd := monoDeadline(channel), monoDeadline(permission)
	return e.update(id, func(f *offloadFwd) {
		f.ChanDeadline, f.PermDeadline = cd, pd
		f.Flags |= flagEnabled
	})
}

// SetPermission applies a (re)installed permission for peer IP on relay to
// every binding it covers: forwarding resumes and lapses at until (zero:
// no deadline). It returns how many bindings it touched.
func (e *Engine) SetPermission(relay netip.AddrPort, peer netip.Addr, until time.Time) (int, error) {
	pd := monoDeadline(until)
	return e.forPermission(relay, peer, func(f *offloadFwd) {
		f.PermDeadline = pd
		f.Flags |= flagEnabled
	})
}

// RevokePermission stops forwarding for every binding from relay to peer IP
// (pion's OnPermissionDeleted) while keeping the bindings, since the
// channel may outlive the permission and be permitted again.
func (e *Engine) RevokePermission(relay netip.AddrPort, peer netip.Addr) (int, error) {
	return e.forPermission(relay, peer, func(f *offloadFwd) { f.Flags &^= flagEnabled })
}

func (e *Engine) forPermission(relay netip.AddrPort, peer netip.Addr, fn func(*offloadFwd)) (int, error) {
	relay, peer = unmapAP(relay), peer.Unmap()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return 0, ErrClosed
	}
	var errs []error
	n := 0
	for id, b := range e.bindings {
		if id.Relay == relay && id.Peer.Addr() == peer {
			errs = append(errs, e.updateLocked(b, fn))
			n++
		}
	}
	return n, errors.Join(errs...)
}

// Bindings returns the installed bindings' IDs.
func (e *Engine) Bindings() []BindingID {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]BindingID, 0, len(e.bindings))
	for id := range e.bindings {
		out = append(out, id)
	}
	return out
}

// Installed returns the installed bindings as last written, routes as
// resolved: what a caller reconciling its own table against the kernel's
// compares with.
func (e *Engine) Installed() []Binding {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Binding, 0, len(e.bindings))
	for _, n := range e.bindings {
		out = append(out, n.b)
	}
	return out
}

// a16 is the program's 16-byte address form: IPv4 as ::ffff:a.b.c.d.
func a16(a netip.Addr) [16]byte { return a.As16() }

// htons returns p with its bytes in network order, as the kernel structs
// (generated with host layout) hold __be16 fields.
func htons(p uint16) uint16 {
	b := [2]byte{byte(p >> 8), byte(p)}
	return binary.NativeEndian.Uint16(b[:])
}
