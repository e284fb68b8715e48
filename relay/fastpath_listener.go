package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v4"
)

// timeNow is the wall clock bandwidth limiters read (a var for tests).
var timeNow = time.Now

// listenerFast is a UDP listener socket's share of the data plane. Its
// reader is the socket's only reader: pion's read loop calls
// serverPacketConn.ReadFrom, which lands here, and gets only what the
// shortcut did not forward.
type listenerFast struct {
	snooper
	conn *serverPacketConn
	sock *udpSock

	// fed: a relay loop reads the socket (adoptListeners) and queues for
	// pion what it does not forward; otherwise pion's goroutine reads it
	// through rd.
	fed bool

	// Owned by the reading goroutine (the loop's, when fed).
	rd      *batchReader
	next    int              // next message of the batch to look at
	toPion  [batchSlots]bool // messages of the batch the shortcut did not take
	snd     *nbSender
	pending counts
}

// snooper learns refreshed lifetimes from what pion answers on one
// listener socket or stream: it remembers the requests passed to pion
// whose success response carries no lifetime (CreatePermission,
// ChannelBind) by transaction ID, and applies the matching answers.
type snooper struct {
	fp    *fastPath
	local netip.AddrPort // the listener address as pion reports it
	lid   int            // local's id in the client→peer table (fastPath.listenerID)

	req     stun.Message // owned by the reading goroutine
	snoopMu sync.Mutex
	snoop   map[[stun.TransactionIDSize]byte]pendingRequest
	resp    stun.Message
}

type pendingRequest struct {
	method  stun.Method
	client  netip.AddrPort
	peers   []netip.AddrPort
	channel uint16
	at      int64
}

func newSnooper(fp *fastPath, local net.Addr) snooper {
	ap := unmapAP(toAddrPort(local))
	return snooper{fp: fp, local: ap, lid: fp.listenerID(ap),
		snoop: map[[stun.TransactionIDSize]byte]pendingRequest{}}
}

// snoopLimit bounds remembered requests; a client that never sees its
// answer (or an attacker) cannot grow the map.
const snoopLimit = 4096

func (fp *fastPath) newListener(c *serverPacketConn) *listenerFast {
	if fp == nil || !fastPathSupported {
		return nil
	}
	if sock := loopListenerSock(c.PacketConn); sock != nil {
		return &listenerFast{
			snooper: newSnooper(fp, c.LocalAddr()),
			conn:    c, sock: sock, snd: newNBSender(), fed: true,
		}
	}
	uc, ok := c.PacketConn.(*net.UDPConn)
	if !ok {
		return nil
	}
	sock, err := newUDPSock(uc)
	if err != nil {
		return nil
	}
	l := &listenerFast{
		snooper: newSnooper(fp, uc.LocalAddr()),
		conn:    c, sock: sock, snd: newNBSender(),
	}
	if fp.enabled {
		if l.rd, err = newBatchReader(uc); err != nil {
			return nil
		}
		l.rd.process, l.rd.idle = l.process, l.flush
	}
	return l
}

// active reports whether the data plane reads this socket (the loop, or
// the batch reader under pion's goroutine).
func (l *listenerFast) active() bool { return l != nil && (l.fed || l.rd != nil) }

// readFrom returns the next datagram pion should handle, forwarding
// ChannelData of known bindings on the way.
func (l *listenerFast) readFrom(p []byte) (int, net.Addr, error) {
	if l.fed {
		for {
			b, src, err := l.popForPion()
			if err != nil {
				return 0, nil, err
			}
			if n, addr, ok := l.passToPion(p, b, src, false); ok {
				return n, addr, nil
			}
		}
	}
	for {
		if l.next >= l.rd.n {
			l.next, l.rd.n = 0, 0
			if _, err := l.rd.read(); err != nil {
				l.rd.n = 0
				return 0, nil, err
			}
			continue
		}
		i := l.next
		l.next++
		if !l.toPion[i] {
			continue
		}
		b, src, cut := l.rd.msg(i)
		if n, addr, ok := l.passToPion(p, b, src, cut); ok {
			return n, addr, nil
		}
	}
}

// passToPion runs the front door on one datagram for pion's read into p:
// the bytes copied and the source, or ok false when it is dropped (cut by
// the read, too large for p: larger than any TURN message or ChannelData
// frame; or refused by the front door).
func (l *listenerFast) passToPion(p, b []byte, src netip.AddrPort, cut bool) (int, net.Addr, bool) {
	if cut || len(b) >= len(p) {
		l.fp.s.metrics.dropped.WithLabelValues(dropMalformed).Inc()
		return 0, nil, false
	}
	addr := net.UDPAddrFromAddrPort(src)
	n, ok := l.conn.front.pass(b, addr)
	if !ok {
		return 0, nil, false
	}
	l.snoopRequest(b[:n], src)
	return copy(p, b[:n]), addr, true
}

// process runs inside the reader's poller callback for each batch: it
// forwards what the shortcut can and reports whether anything is left for
// pion.
func (l *listenerFast) process(k int) bool {
	left := false
	for i := 0; i < k; i++ {
		b, src, cut := l.rd.msg(i)
		taken := isChannelData(b) && !cut && l.fp.forward(l.local, l.lid, src, b, l.snd, &l.pending)
		l.toPion[i] = !taken
		left = left || !taken
	}
	if left {
		l.flush()
	}
	return left
}

func isChannelData(b []byte) bool { return len(b) >= 4 && b[0]&0xC0 == 0x40 }

// forward relays one ChannelData message (a datagram, or a frame of a
// TCP/TLS stream, padding included) of a known binding to its peer and
// reports whether it handled it (forwarded or dropped by a rule); false
// hands it to pion. snd and tally belong to the calling reader.
func (fp *fastPath) forward(local netip.AddrPort, lid int, src netip.AddrPort, b []byte, snd *nbSender, tally *counts) bool {
	return fp.forwardAt(monoNow(), local, lid, src, b, snd, tally, nil)
}

// forwardAt is forward for a reader that read the clock (monoNow) once
// for a batch of datagrams: a relay loop, which saves a clock read per
// datagram (a vDSO call, a system call on some VMs' clock sources). With
// a run (relay loops), a datagram for a relay socket outside Go's poller
// joins the run, which sends and counts it at its flush.
func (fp *fastPath) forwardAt(now int64, local netip.AddrPort, lid int, src netip.AddrPort, b []byte, snd *nbSender, tally *counts, run *c2pRun) bool {
	ch := binary.BigEndian.Uint16(b[0:2])
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if 4+n > len(b) || len(b) > 4+n+3 {
		return false // bad length or odd padding: pion decides
	}
	bd := fp.lookup(c2pKey{listener: local, client: src, channel: ch}, lid)
	if bd == nil || now >= bd.until.Load() {
		return false
	}
	s := fp.s
	pol, gen := s.policy.Load(), fp.relayGen.Load()
	if bd.lastPol.Load() != pol || bd.lastGen.Load() != gen {
		if reason := pol.checkAddrPort(bd.peer, protoUDP); reason != "" {
			s.metrics.policyDenials.WithLabelValues(reason).Inc()
			return true
		}
		bd.lastPol.Store(pol)
		bd.lastGen.Store(gen)
	}
	if bd.bw != nil && !bd.bw.allowOut(n, timeNow()) {
		tally.bwDrops++
		return true
	}
	if bd.raw != nil && run != nil {
		run.add(bd, b[4:4+n], snd, tally)
		return true
	}
	var err error
	if bd.raw != nil {
		err = snd.sendRaw(bd.raw, b[4:4+n], &bd.peerSA)
	} else {
		err = snd.sendTo(bd.sock, b[4:4+n], &bd.peerSA)
	}
	if err != nil {
		tally.sendFull++
		return true
	}
	bd.pktsC2P.Add(1)
	bd.bytesC2P.Add(uint64(n))
	tally.pkts++
	tally.bytes += uint64(n)
	return true
}

// flush adds the batch's tallies to Prometheus.
func (l *listenerFast) flush() { l.fp.s.metrics.addTallies(&l.pending, dirClientToPeer) }

// snoopRequest remembers a CreatePermission or ChannelBind request pion is
// about to handle, so its success response (which carries no lifetime) can
// refresh the binding's deadlines.
func (l *snooper) snoopRequest(b []byte, src netip.AddrPort) {
	if len(b) < 20 || b[0]>>6 != 0 {
		return
	}
	t := binary.BigEndian.Uint16(b[0:2])
	isReq := func(m stun.Method) bool {
		return t == stun.MessageType{Method: m, Class: stun.ClassRequest}.Value()
	}
	if !isReq(stun.MethodCreatePermission) && !isReq(stun.MethodChannelBind) {
		return
	}
	m := &l.req
	m.Raw = append(m.Raw[:0], b...)
	if m.Decode() != nil {
		return
	}
	pr := pendingRequest{method: m.Type.Method, client: src, at: monoNow()}
	for _, a := range m.Attributes {
		if a.Type != stun.AttrXORPeerAddress {
			continue
		}
		var x stun.XORMappedAddress
		one := &stun.Message{Raw: m.Raw, TransactionID: m.TransactionID, Attributes: stun.Attributes{a}}
		if x.GetFromAs(one, stun.AttrXORPeerAddress) != nil {
			return
		}
		ip, ok := netip.AddrFromSlice(x.IP)
		if !ok {
			return
		}
		pr.peers = append(pr.peers, netip.AddrPortFrom(ip.Unmap(), uint16(x.Port)))
	}
	if v, err := m.Get(stun.AttrChannelNumber); err == nil && len(v) >= 2 {
		pr.channel = binary.BigEndian.Uint16(v)
	}
	l.snoopMu.Lock()
	if len(l.snoop) >= snoopLimit {
		old := monoNow() - int64(5*time.Second)
		for k, v := range l.snoop {
			if v.at < old {
				delete(l.snoop, k)
			}
		}
		if len(l.snoop) >= snoopLimit {
			clear(l.snoop)
		}
	}
	l.snoop[m.TransactionID] = pr
	l.snoopMu.Unlock()
}

// snoopWrite looks at a message pion sends to a client: a success
// response to Allocate or Refresh carries the allocation's new LIFETIME;
// one to CreatePermission or ChannelBind refreshes what its request named;
// an error response forgets the request.
func (l *snooper) snoopWrite(b []byte, to net.Addr) {
	if len(b) < 20 || b[0]>>6 != 0 {
		return
	}
	switch binary.BigEndian.Uint16(b[0:2]) & 0x0110 { // class bits
	case 0x0100:
		l.snoopSuccess(b, to)
	case 0x0110:
		var id [stun.TransactionIDSize]byte
		copy(id[:], b[8:20])
		l.snoopMu.Lock()
		delete(l.snoop, id)
		l.snoopMu.Unlock()
	}
}

func (l *snooper) snoopSuccess(b []byte, to net.Addr) {
	l.snoopMu.Lock()
	defer l.snoopMu.Unlock()
	m := &l.resp
	m.Raw = append(m.Raw[:0], b...)
	if m.Decode() != nil {
		return
	}
	client := unmapAP(toAddrPort(to))
	now := monoNow()
	switch m.Type.Method {
	case stun.MethodAllocate, stun.MethodRefresh:
		v, err := m.Get(stun.AttrLifetime)
		if err != nil || len(v) != 4 {
			return
		}
		lt := time.Duration(binary.BigEndian.Uint32(v)) * time.Second
		if rf := l.fp.byClientKey(l.local, client); rf != nil && lt > 0 {
			rf.refreshAllocation(now + int64(lt+deadlineSlack))
		}
	case stun.MethodCreatePermission, stun.MethodChannelBind:
		pr, ok := l.snoop[m.TransactionID]
		if !ok || pr.client != client {
			return
		}
		delete(l.snoop, m.TransactionID)
		rf := l.fp.byClientKey(l.local, client)
		if rf == nil {
			return
		}
		permDL := now + int64(l.fp.permTTL+deadlineSlack)
		for _, peer := range pr.peers {
			rf.refreshPermission(peer.Addr(), permDL)
		}
		if pr.method == stun.MethodChannelBind && len(pr.peers) == 1 {
			rf.refreshChannel(pr.peers[0], pr.channel, now+int64(l.fp.chanTTL+deadlineSlack))
		}
	}
}
