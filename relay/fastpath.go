package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v5"

	"github.com/rtcsuite/rtcsuite/internal/schedslice"
)

// The user-space data plane (design.md, "The relay's two planes"). pion
// stays the control plane; established ChannelData runs through our socket
// wrappers instead of pion's handlers:
//
//   - client→peer: the UDP listener wrapper reads batches (recvmmsg), looks
//     the ChannelData up in the binding table and sends the payload from
//     the allocation's relay socket;
//   - peer→client: the relay socket wrapper reads into buf[4:], writes the
//     ChannelData header in place and sends from the listener socket, or,
//     for a TCP/TLS client, pads the frame in place and writes it to the
//     client's stream (streamout_linux.go).
//
// The table is learned from pion's events (create/delete of allocations,
// permissions and channels, including expiry and close) and from the
// success responses pion sends (refresh lifetimes: pion reports nothing on
// refresh). Anything the table does not know goes to pion unchanged, so a
// miss is only slower, never wrong.
//
// Rules that hold on every path, ours and pion's: data needs a live
// permission (pion v5.1.1 forwards channel data on channel existence
// alone; we do not), the peer policy (re-checked after Reload), bandwidth
// limits, and counters.

// deadlineSlack is added to learned deadlines. pion's timers are the
// authority that ends a permission or channel (we hear about it as an
// event); the deadline only bounds the damage of an event we never saw,
// so it must never fire before pion's own timer.
const deadlineSlack = time.Second

// monoBase anchors the monotonic nanosecond clock deadlines are kept in.
var monoBase = time.Now()

// monoNow returns monotonic nanoseconds since monoBase.
func monoNow() int64 { return int64(time.Since(monoBase)) }

// fastPath owns the binding table.
type fastPath struct {
	s *Server
	// enabled turns the shortcuts on. Off, pion carries every packet, but
	// the permission rule and the large-datagram handling still apply.
	enabled bool
	chanTTL time.Duration
	permTTL time.Duration

	mu  sync.RWMutex
	c2p map[c2pIndex]*binding
	// c2p64 holds, per listener id (listenerID), the bindings of c2p
	// that an IPv4 client reaches through that listener, by c2pKey64: Go's
	// maps look up a uint64 on a fast path of their own.
	c2p64    [maxListenerIDs]map[uint64]*binding
	lids     map[apKey]int                 // listener address → its index in c2p64
	relays   map[netip.AddrPort]*relayFast // by relay address as pion reports it
	byClient map[clientKey]*relayFast      // by (listener address, client address)
	streams  map[clientKey]*streamOut      // TCP/TLS clients' output paths, by (local, remote) address
	obs      bindingObserver

	loops []*relayLoop // relay socket readers (Linux); none: a goroutine each
	// gso: the loops merge runs of equal datagrams into one send
	// (loopsend_linux.go). Fixed before the loops start.
	gso      bool
	loopNext atomic.Uint32
	// loopSpread: every loop reads its share of the sockets; else the
	// first reads them all (loopspread_linux.go). loopGen counts changes.
	loopSpread atomic.Bool
	loopGen    atomic.Uint32
	loopsWG    sync.WaitGroup
	// busySlice is Config.BusySlice (0: off); setSlice applies a slice to
	// every thread (schedslice.Set; tests record instead). The first loop
	// switches it with its load (loopslice_linux.go).
	busySlice time.Duration
	setSlice  func(time.Duration) (int, error)
	// relayGen changes whenever a relay address goes away, so cached
	// policy verdicts for relay-to-relay peers are re-checked.
	relayGen atomic.Uint64
}

// c2pKey finds a binding from a client's ChannelData.
type c2pKey struct {
	listener netip.AddrPort // the listener's local address, as pion sees it
	client   netip.AddrPort
	channel  uint16
}

// c2pIndex is a c2pKey as the table holds it: plain bytes, which the map
// hashes and compares as one block. A netip.AddrPort holds a pointer (its
// zone), so a key made of them is hashed and compared field by field: the
// two lookups per relayed datagram took 3% of turnd's CPU at 500 flows
// (docs/benchmarks.md, seventh pass). Addresses received are never zoned
// (parseSockaddr) and are unmapped, so nothing that matched before is lost.
type c2pIndex struct {
	listener, client apKey
	channel          uint16
}

func (k c2pKey) index() c2pIndex {
	return c2pIndex{listener: apKeyOf(k.listener), client: apKeyOf(k.client), channel: k.channel}
}

// apKey is a netip.AddrPort as a map key of plain bytes (see c2pIndex);
// an IPv4 address and its IPv4-mapped IPv6 form are one key.
type apKey struct {
	ip   [16]byte
	port uint16
}

func apKeyOf(ap netip.AddrPort) apKey { return apKey{ip: ap.Addr().As16(), port: ap.Port()} }

// maxListenerIDs is how many listener addresses get a table in c2p64; the
// bindings of any further ones stay in c2p only.
const maxListenerIDs = 16

// c2pKey64 packs an IPv4 client's address, port and channel into one
// uint64, the key in its listener's c2p64 table. ok is false for a
// listener without an id (lid < 0) and for an IPv6 client.
//
// The look-up per datagram in c2p, whose keys are 38 bytes, was the largest
// user-space item at 500 flows (docs/benchmarks.md, ninth pass); with a
// uint64 key the map neither hashes nor compares a byte block.
func c2pKey64(lid int, client netip.AddrPort, ch uint16) (uint64, bool) {
	a := client.Addr().Unmap()
	if lid < 0 || !a.Is4() {
		return 0, false
	}
	ip := a.As4()
	return uint64(binary.BigEndian.Uint32(ip[:]))<<32 | uint64(client.Port())<<16 | uint64(ch), true
}

// peerKey64 packs an IPv4 peer's address and port into one uint64 (see
// c2pKey64); ok is false for IPv6.
func peerKey64(peer netip.AddrPort) (uint64, bool) {
	a := peer.Addr().Unmap()
	if !a.Is4() {
		return 0, false
	}
	ip := a.As4()
	return uint64(binary.BigEndian.Uint32(ip[:]))<<16 | uint64(peer.Port()), true
}

// listenerID returns the id of listener address ap (its index in c2p64),
// assigning the next free one, or -1 once all are taken.
func (fp *fastPath) listenerID(ap netip.AddrPort) int {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return fp.listenerIDLocked(ap)
}

func (fp *fastPath) listenerIDLocked(ap netip.AddrPort) int {
	k := apKeyOf(ap)
	if id, ok := fp.lids[k]; ok {
		return id
	}
	if len(fp.lids) >= maxListenerIDs {
		return -1
	}
	id := len(fp.lids)
	fp.lids[k] = id
	fp.c2p64[id] = map[uint64]*binding{}
	return id
}

type clientKey struct{ listener, client netip.AddrPort }

// bindingObserver is told about every change to the table, so a kernel
// offload engine can mirror it (offload-brief.md section 4). Calls come
// from pion's event callbacks (under pion's allocation locks), from the
// listener goroutine that saw a refresh response, and from Reload; an
// observer must not block and must not call back into pion. The binding's
// fields it may read are those of (*binding).snapshot.
type bindingObserver interface {
	// bindingInstalled: a channel was created (its permission may or may
	// not be live: check Enabled).
	bindingInstalled(BindingSnapshot)
	// bindingChanged: deadlines refreshed, permission or policy changed.
	bindingChanged(BindingSnapshot)
	// bindingRemoved: the channel is gone (deleted, expired, or its
	// allocation closed). Remove both directions before returning.
	bindingRemoved(BindingSnapshot)
}

// BindingSnapshot describes one channel binding as an offload engine needs
// it. Deadlines are monotonic nanoseconds since monoBase (convert with
// the offset between monoBase and CLOCK_MONOTONIC), slack included.
type BindingSnapshot struct {
	Listener netip.AddrPort // local address of the client's listener socket
	Client   netip.AddrPort
	Relay    netip.AddrPort // local (bound) address of the relay socket
	Peer     netip.AddrPort
	Channel  uint16
	// ClientUDP is false for TCP/TLS clients (no UDP↔UDP shortcut).
	ClientUDP bool
	// Enabled is false while the permission is missing or the peer policy
	// refuses the peer: forward nothing, send everything to user space.
	Enabled bool
	// Capped is true when a bandwidth limit applies (MaxBPS, UserMaxBPS,
	// BPSCapacity): an offload engine charges what it relays to the
	// limiters and hands the binding to user space to shape once over.
	Capped bool
	// ChannelDeadline and PermissionDeadline bound forwarding even if a
	// removal were missed.
	ChannelDeadline, PermissionDeadline, AllocationDeadline int64
	// Removed is true once the channel is gone; a snapshot that says so
	// must take the binding out whatever event delivered it.
	Removed bool

	ref *binding // the table entry (for per-binding accounting)
}

func newFastPath(s *Server) *fastPath {
	return &fastPath{
		s:         s,
		enabled:   fastPathSupported && !s.cfg.DisableFastPath,
		gso:       !s.cfg.DisableGSO,
		chanTTL:   s.cfg.ChannelLifetime,
		permTTL:   s.cfg.PermissionLifetime,
		c2p:       map[c2pIndex]*binding{},
		lids:      map[apKey]int{},
		relays:    map[netip.AddrPort]*relayFast{},
		byClient:  map[clientKey]*relayFast{},
		streams:   map[clientKey]*streamOut{},
		busySlice: max(s.cfg.BusySlice, 0),
		setSlice:  schedslice.Set,
	}
}

// hook adds the table's event handlers to pion's, keeping the ones set.
func (fp *fastPath) hook(h *turn.EventHandler) {
	prevCreated := h.OnAllocationCreated
	h.OnAllocationCreated = func(src, dst net.Addr, protocol, userID, realm string, relay net.Addr, port int) {
		if prevCreated != nil {
			prevCreated(src, dst, protocol, userID, realm, relay, port)
		}
		if rf := fp.relay(relay); rf != nil {
			rf.attach(toAddrPort(dst), unmapAP(toAddrPort(src)))
		}
	}
	h.OnPermissionCreated = func(_, _ net.Addr, _, _, _ string, relay net.Addr, peer net.IP) {
		if rf := fp.relay(relay); rf != nil {
			if ip, ok := netip.AddrFromSlice(peer); ok {
				rf.permit(ip.Unmap(), monoNow()+int64(fp.permTTL+deadlineSlack))
			}
		}
	}
	h.OnPermissionDeleted = func(_, _ net.Addr, _, _, _ string, relay net.Addr, peer net.IP) {
		if rf := fp.relay(relay); rf != nil {
			if ip, ok := netip.AddrFromSlice(peer); ok {
				rf.revoke(ip.Unmap())
			}
		}
	}
	h.OnChannelCreated = func(_, _ net.Addr, _, _, _ string, relay, peer net.Addr, ch uint16) {
		if rf := fp.relay(relay); rf != nil {
			rf.addBinding(unmapAP(toAddrPort(peer)), ch)
		}
	}
	h.OnChannelDeleted = func(_, _ net.Addr, _, _, _ string, relay, peer net.Addr, ch uint16) {
		if rf := fp.relay(relay); rf != nil {
			rf.removeBinding(unmapAP(toAddrPort(peer)), ch)
		}
	}
}

func (fp *fastPath) relay(a net.Addr) *relayFast {
	if a == nil {
		return nil
	}
	ap := unmapAP(toAddrPort(a))
	fp.mu.RLock()
	defer fp.mu.RUnlock()
	return fp.relays[ap]
}

// lookup finds the binding of k; lid is the id of k's listener
// (listenerID), or -1.
func (fp *fastPath) lookup(k c2pKey, lid int) *binding {
	var b *binding
	k64, ok := c2pKey64(lid, k.client, k.channel)
	fp.mu.RLock()
	if ok {
		b = fp.c2p64[lid][k64]
	} else {
		b = fp.c2p[k.index()]
	}
	fp.mu.RUnlock()
	return b
}

func (fp *fastPath) byClientKey(listener, client netip.AddrPort) *relayFast {
	fp.mu.RLock()
	defer fp.mu.RUnlock()
	return fp.byClient[clientKey{listener, client}]
}

// revalidate re-checks every binding against the current peer policy
// (after Reload) and tells the observer about the ones that changed.
func (fp *fastPath) revalidate() {
	fp.mu.RLock()
	rfs := make([]*relayFast, 0, len(fp.relays))
	for _, rf := range fp.relays {
		rfs = append(rfs, rf)
	}
	fp.mu.RUnlock()
	for _, rf := range rfs {
		rf.revalidate()
	}
}

func (fp *fastPath) notify(kind int, b *binding) {
	fp.mu.RLock()
	obs := fp.obs
	fp.mu.RUnlock()
	if obs == nil {
		return
	}
	snap := b.snapshot()
	switch {
	case kind == bindingDeleted || snap.Removed:
		obs.bindingRemoved(snap)
		return
	case kind == bindingAdded:
		obs.bindingInstalled(snap)
	default:
		obs.bindingChanged(snap)
	}
	settle(obs, b, snap)
}

// settle re-reads b after the observer applied snap and applies what
// changed meanwhile. Two goroutines may report changes of one binding
// (pion's callback revoking a permission, a listener snooping a refresh)
// and deliver them in either order; the last delivery of each of them
// reflects a state read after its own write, so whichever delivers last
// delivers the current state. A removal is final: a late change that finds
// the binding removed removes it again rather than resurrecting it.
func settle(obs bindingObserver, b *binding, snap BindingSnapshot) {
	for range 8 {
		now := b.snapshot()
		if now == snap {
			return
		}
		if now.Removed {
			obs.bindingRemoved(now)
			return
		}
		obs.bindingChanged(now)
		snap = now
	}
}

const (
	bindingAdded = iota
	bindingUpdated
	bindingDeleted
)

// setObserver installs (or, with nil, removes) the table's observer and
// replays the live bindings to it as installs. Changes racing with the
// replay reach the observer too (they see it installed), and settle makes
// the replayed state the current one, so the observer ends up with exactly
// the live table.
func (fp *fastPath) setObserver(o bindingObserver) {
	fp.mu.Lock()
	fp.obs = o
	live := make([]*binding, 0, len(fp.c2p))
	for _, b := range fp.c2p {
		live = append(live, b)
	}
	fp.mu.Unlock()
	if o == nil {
		return
	}
	for _, b := range live {
		snap := b.snapshot()
		if snap.Removed {
			continue
		}
		o.bindingInstalled(snap)
		settle(o, b, snap)
	}
}

// binding is one channel: client (listener, client address, channel
// number) ↔ peer through one allocation's relay socket.
type binding struct {
	// The client→peer shortcut reads the first cache line and peerSA
	// only (forwardAt), the peer→client one until, the counters and
	// channel: each further struct or line it went through (relayFast,
	// udpSock) cost a cache miss per datagram at 500 flows
	// (docs/benchmarks.md, tenth pass). sock, raw and bw are copies of
	// rf's, which never change.

	// until is the monotonic time the shortcut may forward until; 0 while
	// disabled. The data path reads only this.
	until atomic.Int64
	raw   *rawUDP // rf.raw: the relay socket outside Go's poller (nil: send through sock)
	sock  *udpSock
	bw    *bandwidth
	// lastPol and lastGen are the policy and relay-set generation the
	// client→peer shortcut last approved the peer under.
	lastPol atomic.Pointer[peerPolicy]
	lastGen atomic.Uint64
	// Per-binding counters, both paths' shortcut traffic (an offload
	// engine adds what it forwarded).
	pktsC2P, bytesC2P atomic.Uint64
	peerSA            sockaddr // peer, in the relay socket's family
	pktsP2C, bytesP2C atomic.Uint64
	channel           uint16

	rf    *relayFast
	key   c2pKey
	lid   int // listener id: key64 is in fp.c2p64[lid], when in64
	key64 uint64
	in64  bool
	peer  netip.AddrPort

	// Guarded by rf.mu.
	chanDL, permDL int64
	permOK, polOK  bool
	removed        bool // out of the table for good

	// noGSO: the kernel refused to segment a merged send of this
	// binding's datagrams; they go one by one from then on.
	noGSO atomic.Bool

	// Pads the struct to 320 bytes, a size class of Go's allocator that
	// is a multiple of 64, so every binding starts on a cache line (at 288
	// bytes every other one would start mid-line, and its first line's
	// fields would straddle two). TestBindingLayout checks.
	_ [36]byte
}

// recompute sets until from the binding's state. Caller holds rf.mu.
func (b *binding) recompute() {
	rf := b.rf
	if !b.permOK || !b.polOK || rf.closed {
		b.until.Store(0)
		return
	}
	b.until.Store(min(b.chanDL, b.permDL, rf.allocDL))
}

// snapshot describes the binding (see BindingSnapshot).
func (b *binding) snapshot() BindingSnapshot {
	rf := b.rf
	rf.mu.RLock()
	defer rf.mu.RUnlock()
	return BindingSnapshot{
		Listener: b.key.listener, Client: b.key.client, Relay: rf.bound, Peer: b.peer, Channel: b.channel,
		ClientUDP: rf.listener != nil, Enabled: b.permOK && b.polOK && !rf.closed,
		Capped: rf.bw != nil, ChannelDeadline: b.chanDL, PermissionDeadline: b.permDL,
		AllocationDeadline: rf.allocDL, Removed: b.removed, ref: b,
	}
}

// Counters returns the binding's relayed packets and bytes in each
// direction (for tests and for per-binding accounting).
func (b *binding) counters() (pktsC2P, bytesC2P, pktsP2C, bytesP2C uint64) {
	return b.pktsC2P.Load(), b.bytesC2P.Load(), b.pktsP2C.Load(), b.bytesP2C.Load()
}

// addOffloaded adds what a kernel offload engine forwarded for b (deltas of
// its per-binding counters, read about once a second) to b's counters and
// to the relayed totals, so per-binding accounting and metrics see every
// path.
func (b *binding) addOffloaded(pktsC2P, bytesC2P, pktsP2C, bytesP2C uint64) {
	b.pktsC2P.Add(pktsC2P)
	b.bytesC2P.Add(bytesC2P)
	b.pktsP2C.Add(pktsP2C)
	b.bytesP2C.Add(bytesP2C)
	m := b.rf.fp.s.metrics
	m.addTallies(&counts{pkts: pktsC2P, bytes: bytesC2P}, dirClientToPeer)
	m.addTallies(&counts{pkts: pktsP2C, bytes: bytesP2C}, dirPeerToClient)
}

// FastPathStats counts the bindings the data plane currently knows.
type FastPathStats struct {
	Enabled  bool
	Bindings int // channels learned from pion
	Active   int // of which the shortcut forwards now (live permission, allowed peer)
}

// FastPathStats reports the binding table's size.
func (s *Server) FastPathStats() FastPathStats {
	fp := s.fast
	fp.mu.RLock()
	defer fp.mu.RUnlock()
	st := FastPathStats{Enabled: fp.enabled, Bindings: len(fp.c2p)}
	now := monoNow()
	for _, b := range fp.c2p {
		if now < b.until.Load() {
			st.Active++
		}
	}
	return st
}

// counts are a reader's tallies not yet added to Prometheus.
type counts struct{ pkts, bytes, sendFull, noPerm, bwDrops, malformed uint64 }

// take adds o's tallies to c and zeroes o.
func (c *counts) take(o *counts) {
	c.pkts += o.pkts
	c.bytes += o.bytes
	c.sendFull += o.sendFull
	c.noPerm += o.noPerm
	c.bwDrops += o.bwDrops
	c.malformed += o.malformed
	*o = counts{}
}

// addTallies adds a reader's tallies (dir: dirClientToPeer or
// dirPeerToClient) to the metrics and zeroes them: one call per burst.
func (m *metrics) addTallies(c *counts, dir string) {
	if *c == (counts{}) {
		return
	}
	if c.pkts > 0 {
		if dir == dirClientToPeer {
			m.pktsC2P.Add(float64(c.pkts))
			m.bytesC2P.Add(float64(c.bytes))
		} else {
			m.pktsP2C.Add(float64(c.pkts))
			m.bytesP2C.Add(float64(c.bytes))
		}
	}
	if c.sendFull > 0 {
		m.dropped.WithLabelValues(dropSendBuffer).Add(float64(c.sendFull))
	}
	if c.noPerm > 0 {
		m.dropped.WithLabelValues(dropNoPermission).Add(float64(c.noPerm))
	}
	if c.bwDrops > 0 {
		m.dropped.WithLabelValues(dropBandwidth).Add(float64(c.bwDrops))
	}
	if c.malformed > 0 {
		m.dropped.WithLabelValues(dropMalformed).Add(float64(c.malformed))
	}
	*c = counts{}
}

// dropNoPermission counts data without a live permission (both
// directions, both paths). Full send buffers (and a full queue towards
// pion's read loop) count as dropSendBuffer, a
// peer datagram too large for a TCP/TLS client's stream as dropOversize.
const dropNoPermission = "no_permission"
