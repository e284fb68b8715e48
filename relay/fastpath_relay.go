package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pion/stun/v4"
)

// relayFast is one UDP allocation's share of the data plane: its bindings
// by peer, its live permissions, and the peer→client reader that pion's
// per-allocation goroutine runs through relayPacketConn.ReadFrom.
type relayFast struct {
	// The peer→client shortcut (relayLoop.drain, handleAt,
	// sendChannelData) reads the first three cache lines; anything it
	// reads further down costs a cache miss per datagram at 500 flows
	// (docs/benchmarks.md, tenth pass).

	mu sync.RWMutex
	// peerSlots holds byPeer4's bindings while it has at most
	// len(peerSlots) (nPeerSlots of them; -1: more, use the map). Most
	// allocations talk to one or two peers, and scanning a few words next
	// to mu saves the map's cache misses on every peer datagram.
	nPeerSlots int
	peerSlots  [2]peerSlot

	raw      *rawUDP           // sock.raw: the relay socket outside Go's poller, or nil
	listener *serverPacketConn // the UDP listener socket the allocation lives on; nil for TCP/TLS clients
	bw       *bandwidth
	// stream is a TCP/TLS client's output path, set once pion reports the
	// allocation's client (attach); nil for UDP clients.
	stream atomic.Pointer[streamOut]
	out    *sendBatch // the reading loop's batch (relay loops only); owned by the reader
	fp     *fastPath
	// Owned by the relay socket's reading goroutine.
	pending  counts
	clientSA sockaddr // client, in the listener socket's family; set by attach under mu

	conn  *relayPacketConn
	sock  *udpSock
	key   netip.AddrPort // relay address as pion reports it (advertised)
	bound netip.AddrPort // relay socket's local address

	// Under mu.
	listenAddr netip.AddrPort
	client     netip.AddrPort
	attached   bool
	byPeer     map[apKey]*binding
	byPeer4    map[uint64]*binding  // byPeer's IPv4 peers (peerKey64): the per-datagram look-up
	perms      map[netip.Addr]int64 // live permissions → deadline
	allocDL    int64
	closed     bool

	// Owned by the relay socket's reading goroutine.
	rd       *pktReader
	snd      *nbSender
	ind      stun.Message
	inPeer   netip.AddrPort // last inbound peer the policy allowed, under inPolicy
	inPolicy *peerPolicy
	inGen    uint64
}

func (fp *fastPath) newRelay(c *relayPacketConn, listener *serverPacketConn, adv netip.AddrPort) *relayFast {
	var sock *udpSock
	switch pc := c.PacketConn.(type) {
	case *net.UDPConn:
		var err error
		if sock, err = newUDPSock(pc); err != nil {
			return nil
		}
		// Peers burst into one socket each; the 208 KiB default drops a
		// video keyframe's worth of datagrams on a short stall (coturn
		// #1902).
		_ = pc.SetReadBuffer(udpSocketBuffer)
	default:
		if sock = rawSock(pc); sock == nil {
			return nil
		}
	}
	rf := &relayFast{
		fp: fp, conn: c, sock: sock, raw: sock.raw, key: unmapAP(adv),
		bound: unmapAP(toAddrPort(c.LocalAddr())), listener: listener, bw: c.bw,
		byPeer: map[apKey]*binding{}, byPeer4: map[uint64]*binding{}, perms: map[netip.Addr]int64{},
		allocDL: monoNow() + int64(fp.s.cfg.AllocationLifetime+deadlineSlack),
		snd:     newNBSender(),
	}
	if sock.c != nil {
		rf.rd = newPktReader(sock, rf.handle, rf.flush)
	}
	fp.mu.Lock()
	fp.relays[rf.key] = rf
	fp.mu.Unlock()
	if sock.raw != nil {
		if err := fp.attachLoop(rf); err != nil {
			rf.close()
			return nil
		}
	}
	return rf
}

// attach records the allocation's client once pion has created it.
func (rf *relayFast) attach(listenAddr, client netip.AddrPort) {
	rf.mu.Lock()
	rf.listenAddr, rf.client, rf.attached = listenAddr, client, true
	if rf.listener != nil {
		sa, ok := rf.listener.fast.sock.sockaddrFor(client)
		if ok {
			rf.clientSA = sa
		} else {
			rf.listener = nil // no shortcut for a client we cannot address
		}
	}
	rf.mu.Unlock()
	fp := rf.fp
	if rf.listener == nil {
		if out := fp.stream(listenAddr, client); out != nil {
			rf.stream.Store(out)
		}
	}
	fp.mu.Lock()
	fp.byClient[clientKey{listenAddr, client}] = rf
	fp.mu.Unlock()
}

func (rf *relayFast) permit(ip netip.Addr, deadline int64) {
	var changed []*binding
	rf.mu.Lock()
	rf.perms[ip] = deadline
	for _, b := range rf.byPeer {
		if b.peer.Addr() == ip {
			b.permOK, b.permDL = true, deadline
			b.recompute()
			changed = append(changed, b)
		}
	}
	rf.mu.Unlock()
	for _, b := range changed {
		rf.fp.notify(bindingUpdated, b)
	}
}

func (rf *relayFast) revoke(ip netip.Addr) {
	var changed []*binding
	rf.mu.Lock()
	delete(rf.perms, ip)
	for _, b := range rf.byPeer {
		if b.peer.Addr() == ip {
			b.permOK = false
			b.recompute()
			changed = append(changed, b)
		}
	}
	rf.mu.Unlock()
	for _, b := range changed {
		rf.fp.notify(bindingUpdated, b)
	}
}

// refreshPermission applies a CreatePermission or ChannelBind success.
func (rf *relayFast) refreshPermission(ip netip.Addr, deadline int64) {
	rf.mu.RLock()
	_, live := rf.perms[ip]
	rf.mu.RUnlock()
	if live { // never resurrect: only pion's event creates a permission
		rf.permit(ip, deadline)
	}
}

func (rf *relayFast) refreshChannel(peer netip.AddrPort, ch uint16, deadline int64) {
	rf.mu.Lock()
	b := rf.byPeer[apKeyOf(peer)]
	if b == nil || b.channel != ch {
		rf.mu.Unlock()
		return
	}
	b.chanDL = deadline
	b.recompute()
	rf.mu.Unlock()
	rf.fp.notify(bindingUpdated, b)
}

func (rf *relayFast) refreshAllocation(deadline int64) {
	rf.mu.Lock()
	rf.allocDL = deadline
	bs := make([]*binding, 0, len(rf.byPeer))
	for _, b := range rf.byPeer {
		b.recompute()
		bs = append(bs, b)
	}
	rf.mu.Unlock()
	for _, b := range bs {
		rf.fp.notify(bindingUpdated, b)
	}
}

func (rf *relayFast) addBinding(peer netip.AddrPort, ch uint16) {
	fp := rf.fp
	b := &binding{rf: rf, peer: peer, channel: ch, raw: rf.raw, sock: rf.sock, bw: rf.bw}
	b.peerSA, _ = rf.sock.sockaddrFor(peer)
	now := monoNow()
	rf.mu.Lock()
	if rf.closed {
		rf.mu.Unlock()
		return
	}
	b.key = c2pKey{listener: rf.listenAddr, client: rf.client, channel: ch}
	b.chanDL = now + int64(fp.chanTTL+deadlineSlack)
	b.permDL, b.permOK = rf.perms[peer.Addr()]
	b.polOK = fp.s.policy.Load().checkAddrPort(peer, protoUDP) == ""
	b.recompute()
	rf.byPeer[apKeyOf(peer)] = b
	if k, ok := peerKey64(peer); ok {
		rf.byPeer4[k] = b
		rf.syncPeerSlots()
	}
	rf.mu.Unlock()
	fp.mu.Lock()
	fp.c2p[b.key.index()] = b
	b.lid = fp.listenerIDLocked(b.key.listener)
	b.key64, b.in64 = c2pKey64(b.lid, b.key.client, ch)
	if b.in64 {
		fp.c2p64[b.lid][b.key64] = b
	}
	fp.mu.Unlock()
	fp.s.metrics.fastBindings.Inc()
	fp.notify(bindingAdded, b)
}

func (rf *relayFast) removeBinding(peer netip.AddrPort, ch uint16) {
	rf.mu.Lock()
	b := rf.byPeer[apKeyOf(peer)]
	if b == nil || b.channel != ch {
		rf.mu.Unlock()
		return
	}
	delete(rf.byPeer, apKeyOf(peer))
	if k, ok := peerKey64(peer); ok && rf.byPeer4[k] == b {
		delete(rf.byPeer4, k)
		rf.syncPeerSlots()
	}
	b.removed = true
	b.until.Store(0)
	rf.mu.Unlock()
	rf.fp.drop(b)
}

// drop removes b from the client→peer table and tells the observer.
func (fp *fastPath) drop(b *binding) {
	fp.mu.Lock()
	if k := b.key.index(); fp.c2p[k] == b {
		delete(fp.c2p, k)
	}
	if b.in64 && fp.c2p64[b.lid][b.key64] == b {
		delete(fp.c2p64[b.lid], b.key64)
	}
	fp.mu.Unlock()
	fp.s.metrics.fastBindings.Dec()
	fp.notify(bindingDeleted, b)
}

func (rf *relayFast) revalidate() {
	pol := rf.fp.s.policy.Load()
	var changed []*binding
	rf.mu.Lock()
	for _, b := range rf.byPeer {
		ok := pol.checkAddrPort(b.peer, protoUDP) == ""
		if ok != b.polOK {
			b.polOK = ok
			b.recompute()
			changed = append(changed, b)
		}
	}
	rf.mu.Unlock()
	for _, b := range changed {
		rf.fp.notify(bindingUpdated, b)
	}
}

// close removes the allocation's bindings before its socket closes.
func (rf *relayFast) close() {
	rf.mu.Lock()
	rf.closed = true
	bs := make([]*binding, 0, len(rf.byPeer))
	for _, b := range rf.byPeer {
		b.removed = true
		b.until.Store(0)
		bs = append(bs, b)
	}
	rf.byPeer = map[apKey]*binding{}
	rf.byPeer4 = map[uint64]*binding{}
	rf.syncPeerSlots()
	rf.perms = map[netip.Addr]int64{}
	attached, key := rf.attached, clientKey{rf.listenAddr, rf.client}
	rf.mu.Unlock()
	for _, b := range bs {
		rf.fp.drop(b)
	}
	fp := rf.fp
	fp.mu.Lock()
	if fp.relays[rf.key] == rf {
		delete(fp.relays, rf.key)
	}
	if attached && fp.byClient[key] == rf {
		delete(fp.byClient, key)
	}
	fp.mu.Unlock()
}

// permitted reports whether the allocation holds a live permission for ip
// (pion's own paths are held to it too: see relayPacketConn).
func (rf *relayFast) permitted(ip netip.Addr) bool {
	rf.mu.RLock()
	_, ok := rf.perms[ip.Unmap()]
	rf.mu.RUnlock()
	return ok
}

// pionRelayBuffer is the buffer pion v5.1.1 reads relay sockets into
// (allocation.go rtpMTU); it silently cuts anything larger.
const pionRelayBuffer = 1600

// readFrom is the relay socket's read loop, run by pion's per-allocation
// goroutine. Datagrams are handled inside the poller callback (handle);
// only those pion must frame (no live binding, small enough for its
// buffer) are returned.
func (rf *relayFast) readFrom(p []byte) (int, net.Addr, error) {
	if rf.rd == nil { // a relay loop reads the socket; pion gets its queue
		return rf.conn.PacketConn.ReadFrom(p)
	}
	for {
		frame, src, err := rf.rd.read()
		if err != nil {
			rf.flush()
			return 0, nil, err
		}
		if len(frame)-4 >= len(p) { // pion's buffer shrank: never cut
			rf.frameItself(rf.lookupPeer(src), src, frame)
			continue
		}
		return copy(p, frame[4:]), net.UDPAddrFromAddrPort(src), nil
	}
}

func (rf *relayFast) lookupPeer(src netip.AddrPort) *binding {
	rf.mu.RLock()
	defer rf.mu.RUnlock()
	return rf.peerLocked(src)
}

// peerLocked returns the binding of peer src. Caller holds rf.mu.
func (rf *relayFast) peerLocked(src netip.AddrPort) *binding {
	if k, ok := peerKey64(src); ok {
		if rf.nPeerSlots < 0 {
			return rf.byPeer4[k]
		}
		for _, sl := range rf.peerSlots[:rf.nPeerSlots] {
			if sl.key == k {
				return sl.b
			}
		}
		return nil
	}
	return rf.byPeer[apKeyOf(src)]
}

type peerSlot struct {
	key uint64
	b   *binding
}

// syncPeerSlots refills peerSlots after a change to byPeer4. Caller holds
// rf.mu.
func (rf *relayFast) syncPeerSlots() {
	rf.peerSlots = [len(rf.peerSlots)]peerSlot{}
	if len(rf.byPeer4) > len(rf.peerSlots) {
		rf.nPeerSlots = -1
		return
	}
	rf.nPeerSlots = 0
	for k, b := range rf.byPeer4 {
		rf.peerSlots[rf.nPeerSlots] = peerSlot{k, b}
		rf.nPeerSlots++
	}
}

// handle decides one peer datagram (payload at frame[4:]): on a live
// binding it is framed in place and sent to the client; without a
// permission, or refused by policy or bandwidth, it is dropped; larger than
// pion's buffer, it is framed here as pion would; otherwise it goes to
// pion (true).
func (rf *relayFast) handle(frame []byte, src netip.AddrPort) bool {
	return rf.handleAt(monoNow(), frame, src)
}

// handleAt is handle for a reader that read the clock once for a batch
// (relayLoop.drain).
func (rf *relayFast) handleAt(now int64, frame []byte, src netip.AddrPort) bool {
	n := len(frame) - 4
	rf.mu.RLock()
	b := rf.peerLocked(src)
	// A binding's until is 0 without a live permission for its peer
	// (permit and revoke update both under rf.mu), so a live binding
	// proves the permission and the lookup in perms is left for misses.
	live := b != nil && now < b.until.Load()
	perm := live
	if !live {
		_, perm = rf.perms[src.Addr()]
	}
	rf.mu.RUnlock()
	if !perm {
		rf.pending.noPerm++
		return false
	}
	// The shortcut answers UDP clients from their listener socket and
	// TCP/TLS clients through their stream's output path.
	hit := live && rf.fp.enabled && (rf.listener != nil || rf.stream.Load() != nil)
	if !hit && !rf.allowPeer(src) {
		return false
	}
	if rf.bw != nil && !rf.bw.allowIn(n, timeNow()) {
		rf.pending.bwDrops++
		return false
	}
	rf.pending.pkts++
	rf.pending.bytes += uint64(n)
	switch {
	case hit:
		rf.sendChannelData(b, frame)
	case n >= pionRelayBuffer:
		rf.frameItself(b, src, frame)
	default:
		rf.flush()
		return true
	}
	return false
}

// frameItself sends a datagram pion's buffer would cut, framed as pion
// would frame it: ChannelData on a channel, else a Data indication.
func (rf *relayFast) frameItself(b *binding, src netip.AddrPort, frame []byte) {
	switch {
	case rf.listener == nil && rf.stream.Load() == nil:
		// A stream client without an output path (the fast path could not
		// reach its socket): pion would cut the datagram.
		rf.fp.s.metrics.dropped.WithLabelValues(dropOversize).Inc()
	case b != nil && len(frame)-4 <= maxChannelPayload:
		rf.sendChannelData(b, frame)
	default:
		rf.sendDataIndication(src, frame)
	}
}

// allowPeer applies the peer policy to inbound datagrams off the shortcut
// (a live binding was checked when the policy last changed), caching the
// verdict per peer and policy as relayPacketConn.WriteTo does.
func (rf *relayFast) allowPeer(src netip.AddrPort) bool {
	s := rf.fp.s
	pol, gen := s.policy.Load(), rf.fp.relayGen.Load()
	if src == rf.inPeer && pol == rf.inPolicy && gen == rf.inGen {
		return true
	}
	if reason := pol.checkAddrPort(src, protoUDP); reason != "" {
		s.metrics.policyDenials.WithLabelValues(reason).Inc()
		return false
	}
	rf.inPeer, rf.inPolicy, rf.inGen = src, pol, gen
	return true
}

// maxChannelPayload is the largest payload a ChannelData header can state.
const maxChannelPayload = 0xffff

// sendChannelData frames the payload at frame[4:] for b's channel
// and sends it to the client. No padding over UDP (RFC 8656 12.5).
func (rf *relayFast) sendChannelData(b *binding, frame []byte) {
	n := len(frame) - 4
	buf := frame
	binary.BigEndian.PutUint16(buf[0:2], b.channel)
	binary.BigEndian.PutUint16(buf[2:4], uint16(n))
	if rf.listener == nil {
		rf.sendStream(b, buf)
		return
	}
	if rf.out != nil {
		rf.out.add(rf.listener.fast.sock, &rf.clientSA, b, buf) // sent by the loop's sendmmsg
		return
	}
	if err := rf.snd.sendTo(rf.listener.fast.sock, buf, &rf.clientSA); err != nil {
		rf.pending.sendFull++
		return
	}
	b.pktsP2C.Add(1)
	b.bytesP2C.Add(uint64(n))
}

// sendDataIndication sends the payload at frame[4:] from src to
// the client as a Data indication (slow path: large datagrams only).
func (rf *relayFast) sendDataIndication(src netip.AddrPort, frame []byte) {
	m := &rf.ind
	m.Reset()
	m.Type = stun.NewType(stun.MethodData, stun.ClassIndication)
	m.TransactionID = stun.NewTransactionID()
	m.WriteHeader()
	peer := stun.XORMappedAddress{IP: src.Addr().AsSlice(), Port: int(src.Port())}
	if err := peer.AddToAs(m, stun.AttrXORPeerAddress); err != nil {
		return
	}
	m.Add(stun.AttrData, frame[4:])
	if rf.listener == nil {
		rf.sendStream(nil, m.Raw) // STUN attributes keep it a multiple of 4
		return
	}
	if err := rf.snd.sendTo(rf.listener.fast.sock, m.Raw, &rf.clientSA); err != nil {
		rf.pending.sendFull++
	}
}

// sendStream writes a framed ChannelData (b's) or Data indication (b nil)
// to a TCP/TLS client's stream, padded to 4 bytes in place (RFC 8656
// 12.5: padding is mandatory over streams). The frames' buffers keep 3
// spare bytes for it. A full backlog drops the frame and counts it.
func (rf *relayFast) sendStream(b *binding, frame []byte) {
	out := rf.stream.Load()
	n := len(frame)
	if pad := (4 - n&3) & 3; pad > 0 {
		if cap(frame)-n < pad {
			frame = append(frame[:n:n], 0, 0, 0)[:n+pad] // never with our buffers
		}
		frame = frame[:n+pad]
		clear(frame[n:]) // stale bytes of an earlier datagram must not leak
	}
	if out == nil || !out.sendFrame(frame) {
		rf.pending.sendFull++
		return
	}
	if b != nil {
		b.pktsP2C.Add(1)
		b.bytesP2C.Add(uint64(n - 4))
	}
}

// flush adds the reader's tallies to Prometheus: once per burst (before
// the reader waits for the socket), not per packet.
func (rf *relayFast) flush() { rf.fp.s.metrics.addTallies(&rf.pending, dirPeerToClient) }
