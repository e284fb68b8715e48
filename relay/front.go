package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"
)

// front inspects every packet a client sends before pion sees it. It keeps
// one reusable STUN message, so each socket or TCP connection owns one
// front and uses it from its single reading goroutine.
type front struct {
	s         *Server
	transport string // "udp", "tcp" or "tls"
	local     net.Addr
	msg       stun.Message
	// reply sends a response to the client on the socket or connection the
	// request came in on.
	reply func(b []byte, to net.Addr) error
	// on is the socket itself for UDP (RFC 5780 answers need it), nil for TCP.
	on net.PacketConn

	// What the previous passed request left behind, settled when the reader
	// comes back for the next packet (pion has answered by then): the auth
	// hand-off entry, the quota reservation of an Allocate, and the
	// Allocate whose success answer is to be kept for retransmissions.
	stashed   bool
	stashSrc  netip.AddrPort
	stashTx   [stun.TransactionIDSize]byte
	reserved  bool
	resTuple  tupleKey
	pendingTx [stun.TransactionIDSize]byte
	pending   bool
	// lastKey is the long-term key of the last request passed to pion, for
	// signing answers pion sends unsigned (ConnectionBind, see tcp.go).
	lastKey []byte
	// stream is set for a TCP or TLS connection (unauthAllowed).
	stream bool
}

const stunMagicCookie = 0x2112A442

var allocateSuccess = stun.NewType(stun.MethodAllocate, stun.ClassSuccessResponse).Value()

// settle cleans up after the previous request, once pion is done with it.
func (f *front) settle() {
	if f.stashed {
		f.s.stash.forget(f.stashSrc, f.stashTx)
		f.stashed = false
	}
	if f.reserved {
		f.s.allocs.release(f.resTuple)
		f.reserved = false
	}
	f.pending = false
}

// observe sees every message pion writes to a client; it keeps pion's
// success answer to the Allocate just passed. Only the reading goroutine
// writes Allocate answers, so only it touches the pending fields.
func (f *front) observe(b []byte, to net.Addr) {
	if len(b) < 20 || binary.BigEndian.Uint16(b) != allocateSuccess || !f.pending {
		return
	}
	if string(b[8:20]) != string(f.pendingTx[:]) || tupleOf(to, f.local) != f.resTuple {
		return
	}
	f.s.allocs.setAnswer(f.resTuple, b[8:20], b)
	f.pending = false
}

// pass reports whether pion should handle the packet b from src, and how
// many of its bytes (the front door may cut MESSAGE-INTEGRITY off a request
// that failed authentication, so that pion answers 401 with a fresh
// nonce). Anything it refuses it has already answered, counted or silently
// dropped.
func (f *front) pass(b []byte, src net.Addr) (int, bool) {
	f.settle()
	s := f.s
	if len(b) == 0 {
		s.metrics.dropped.WithLabelValues(dropMalformed).Inc()
		return 0, false
	}
	if b[0]&0xC0 == 0x40 {
		// ChannelData: only meaningful on an existing allocation, which
		// pion looks up; relaying is accounted on the relay socket.
		return len(b), !s.cfg.STUNOnly
	}
	if !stun.IsMessage(b) {
		s.metrics.dropped.WithLabelValues(dropMalformed).Inc()
		return 0, false
	}
	// Decode in place: the message's attributes point into b and are used
	// only until pass returns (no copy per frame). The capacity is cut at
	// the message's end because MESSAGE-INTEGRITY checks append the HMAC
	// they compute to Raw: with room after b they would overwrite the next
	// frame in a stream buffer.
	m := &f.msg
	m.Raw = b[:len(b):len(b)]
	if err := m.Decode(); err != nil {
		s.metrics.dropped.WithLabelValues(dropMalformed).Inc()
		return 0, false
	}
	if !s.modeAllows(m) {
		return 0, false
	}
	switch m.Type.Class {
	case stun.ClassIndication:
		return len(b), m.Type.Method == stun.MethodSend && f.sendAllowed(m)
	case stun.ClassRequest:
	default:
		// Responses and errors sent to a server are never valid here.
		s.metrics.dropped.WithLabelValues(dropMalformed).Inc()
		return 0, false
	}
	now := s.now()
	ip := s.sourceKey(addrIP(src))

	if m.Type.Method == stun.MethodBinding {
		if !f.unauthAllowed(ip, now) {
			s.metrics.dropped.WithLabelValues(dropRateLimited).Inc()
			return 0, false
		}
		return len(b), f.binding(m, src)
	}

	if !m.Contains(stun.AttrMessageIntegrity) {
		if !f.unauthAllowed(ip, now) {
			s.metrics.dropped.WithLabelValues(dropRateLimited).Inc()
			return 0, false
		}
		return len(b), true // pion answers 401 with a nonce
	}
	var username stun.Username
	var realm stun.Realm
	var nonce stun.Nonce
	if username.GetFrom(m) != nil || realm.GetFrom(m) != nil || nonce.GetFrom(m) != nil {
		s.metrics.authFailures.WithLabelValues(authMalformed).Inc()
		return len(b), f.unauthAllowed(ip, now) // pion answers 400
	}
	if s.nonceStale(nonce, now) {
		if !f.unauthAllowed(ip, now) {
			s.metrics.dropped.WithLabelValues(dropRateLimited).Inc()
			return 0, false
		}
		// pion answers 438 with a fresh nonce to a nonce it cannot
		// validate, before it checks MESSAGE-INTEGRITY.
		spoilNonce(b)
		return len(b), true
	}
	creds := s.creds.Load()
	v := creds.authenticate(m, username.String(), realm.String())
	if v.reason == "" && v.rest && now.After(v.expires) {
		v = f.expiredREST(m, src, v, creds, now)
	}
	if v.reason != "" {
		s.metrics.authFailures.WithLabelValues(v.reason).Inc()
		if !s.authFail.allow(ip, now) {
			s.metrics.dropped.WithLabelValues(dropAuthLimited).Inc()
			return 0, false
		}
		// pion answers a request without MESSAGE-INTEGRITY with 401 and a
		// nonce of its own making, which is the only kind it accepts later.
		if n, ok := stripIntegrity(b); ok {
			return n, true
		}
		f.replyError(m, src, stun.CodeUnauthorized, nil, stun.NewRealm(creds.realm), &nonce)
		return 0, false
	}
	if !f.checkAllocation(m, src, v, ip, now) {
		return 0, false
	}
	if max := s.cfg.MaxAllocationLifetime; max > 0 &&
		(m.Type.Method == stun.MethodAllocate || m.Type.Method == stun.MethodRefresh) {
		capLifetime(b, max, v.key)
	}
	srcAP := unmapAP(toAddrPort(src))
	if !s.stash.put(srcAP, username.String(), m.TransactionID, v, now) {
		f.replyError(m, src, stun.CodeInsufficientCapacity, v.key)
		return 0, false
	}
	f.stashed, f.stashSrc, f.stashTx = true, srcAP, m.TransactionID
	f.lastKey = v.key
	return len(b), true
}

// unauthAllowed applies the per-source limit on requests without valid
// credentials, in a bucket for UDP and another for TCP and TLS. A UDP
// source address can be forged: with one bucket, anyone could spend the
// allowance of an address that TCP clients share (a carrier-grade NAT, an
// office) by sending unauthenticated UDP in its name, and over a stream a
// dropped request is never retransmitted (RFC 8489 §6.2.2), so the client
// waited for the first-frame deadline to close its connection. Every
// client's first request is unauthenticated (it learns the nonce from the
// 401). The stream bucket can only be spent by someone who completes TCP
// handshakes from that address.
func (f *front) unauthAllowed(ip netip.Addr, now time.Time) bool {
	if f.stream {
		return f.s.streamUnauth.allow(ip, now)
	}
	return f.s.unauth.allow(ip, now)
}

// checkAllocation applies what depends on the client's allocation to an
// authenticated request: 437 without one, ownership, Connect only on TCP
// allocations over TCP, the permission and channel bounds, and for
// Allocate the retransmission answer, draining and quotas. It reports
// whether pion should see the request.
func (f *front) checkAllocation(m *stun.Message, src net.Addr, v verdict, ip netip.Addr, now time.Time) bool {
	s := f.s
	tuple := tupleOf(src, f.local)
	info, exists := s.allocs.lookup(tuple)
	switch m.Type.Method {
	case stun.MethodRefresh, stun.MethodCreatePermission, stun.MethodChannelBind, stun.MethodConnect:
		if !exists {
			f.replyError(m, src, stun.CodeAllocMismatch, v.key)
			return false
		}
		// RFC 8656 section 6.2: later requests on an allocation must carry
		// the credentials that created it; pion would drop them silently.
		if info.userID != v.userID {
			s.metrics.authFailures.WithLabelValues(authWrongUser).Inc()
			f.replyError(m, src, stun.CodeWrongCredentials, nil)
			return false
		}
	}
	switch m.Type.Method {
	case stun.MethodConnect:
		// pion dials synchronously in the reading goroutine: only a TCP
		// control connection, which blocks nobody else, may ask.
		if f.transport == "udp" || !info.tcp {
			s.metrics.policyDenials.WithLabelValues(denyConnect).Inc()
			f.replyError(m, src, stun.CodeForbidden, v.key)
			return false
		}
		peers := xorPeerAddrs(m)
		if len(peers) == 0 {
			return true // pion answers 400
		}
		// pion dials the first XOR-PEER-ADDRESS.
		if reason := s.policy.Load().checkAddrPort(peers[0], protoTCP); reason != "" {
			s.metrics.policyDenials.WithLabelValues(reason).Inc()
			f.replyError(m, src, stun.CodeForbidden, v.key)
			return false
		}
	case stun.MethodCreatePermission, stun.MethodChannelBind:
		peers := xorPeerAddrs(m)
		ips := make([]netip.Addr, 0, len(peers))
		for _, p := range peers {
			ips = append(ips, p.Addr())
		}
		// pion answers a refused ChannelBind 401, which sends operators
		// after a password problem that does not exist: answer 403 first.
		for _, ip := range ips {
			if reason := s.peerIPDenied(ip); reason != "" {
				s.metrics.policyDenials.WithLabelValues(reason).Inc()
				f.replyError(m, src, stun.CodeForbidden, v.key)
				return false
			}
		}
		var ch uint16
		if m.Type.Method == stun.MethodChannelBind {
			if raw, err := m.Get(stun.AttrChannelNumber); err == nil && len(raw) >= 2 {
				ch = binary.BigEndian.Uint16(raw)
			}
		}
		if !s.allocs.admitPeers(tuple, ips, ch, s.cfg.MaxPermissions, s.cfg.MaxChannels, now) {
			s.metrics.quotaRejections.WithLabelValues("peers").Inc()
			f.replyError(m, src, stun.CodeInsufficientCapacity, v.key)
			return false
		}
	case stun.MethodAllocate:
		if !exists && !s.relayTransportAllowed(m) {
			f.replyError(m, src, stun.CodeUnsupportedTransProto, v.key)
			return false
		}
		if exists {
			if info.txid == m.TransactionID && info.answer != nil {
				// A retransmission whose first answer was lost.
				_ = f.reply(info.answer, src)
				return false
			}
			return true // pion answers 437
		}
		if s.draining.Load() {
			s.metrics.quotaRejections.WithLabelValues("draining").Inc()
			f.replyError(m, src, stun.CodeInsufficientCapacity, v.key)
			return false
		}
		cfg := s.cfg
		q := quotas{user: cfg.UserQuota, source: cfg.SourceQuota, total: cfg.TotalQuota}
		switch why := s.allocs.reserve(tuple, v.userID, ip, m.TransactionID, q, now); why {
		case "":
			f.reserved, f.resTuple = true, tuple
			f.pending, f.pendingTx = true, m.TransactionID
		case "total":
			s.metrics.quotaRejections.WithLabelValues(why).Inc()
			f.replyError(m, src, stun.CodeInsufficientCapacity, v.key)
			return false
		default:
			s.metrics.quotaRejections.WithLabelValues(why).Inc()
			f.replyError(m, src, stun.CodeAllocQuotaReached, v.key)
			return false
		}
	}
	return true
}

// sendAllowed reports whether a Send indication may go on to pion: one
// whose XOR-PEER-ADDRESS the peer policy refuses is dropped without an
// answer (indications get none) and counted.
func (f *front) sendAllowed(m *stun.Message) bool {
	for _, p := range xorPeerAddrs(m) {
		if reason := f.s.policy.Load().checkAddrPort(p, protoUDP); reason != "" {
			f.s.metrics.policyDenials.WithLabelValues(reason).Inc()
			f.s.metrics.dropped.WithLabelValues(dropForbiddenPeer).Inc()
			return false
		}
	}
	return true
}

// stripIntegrity cuts a STUN message in b before its MESSAGE-INTEGRITY
// attribute (dropping it and everything after, such as FINGERPRINT) and
// fixes the header length. It returns the new length.
func stripIntegrity(b []byte) (int, bool) {
	off := 20
	for off+4 <= len(b) {
		t := stun.AttrType(binary.BigEndian.Uint16(b[off:]))
		l := int(binary.BigEndian.Uint16(b[off+2:]))
		if t == stun.AttrMessageIntegrity || t == stun.AttrMessageIntegritySHA256 {
			binary.BigEndian.PutUint16(b[2:4], uint16(off-20))
			return off, true
		}
		off += 4 + (l+3)&^3
	}
	return 0, false
}

// xorPeerAddrs decodes every XOR-PEER-ADDRESS of m (CreatePermission may
// carry several); malformed ones are skipped for pion to answer 400.
func xorPeerAddrs(m *stun.Message) []netip.AddrPort {
	var out []netip.AddrPort
	for _, a := range m.Attributes {
		if a.Type != stun.AttrXORPeerAddress {
			continue
		}
		v := a.Value
		if len(v) < 8 {
			continue
		}
		port := binary.BigEndian.Uint16(v[2:4]) ^ uint16(stunMagicCookie>>16)
		var cookie [16]byte
		binary.BigEndian.PutUint32(cookie[:4], stunMagicCookie)
		copy(cookie[4:], m.TransactionID[:])
		switch {
		case v[1] == 0x01 && len(v) >= 8:
			var ip [4]byte
			for i := range ip {
				ip[i] = v[4+i] ^ cookie[i]
			}
			out = append(out, netip.AddrPortFrom(netip.AddrFrom4(ip), port))
		case v[1] == 0x02 && len(v) >= 20:
			var ip [16]byte
			for i := range ip {
				ip[i] = v[4+i] ^ cookie[i]
			}
			out = append(out, netip.AddrPortFrom(netip.AddrFrom16(ip), port))
		}
	}
	return out
}

// expiredREST decides on a request signed with a REST credential that has
// expired. It can never create an allocation; on an allocation made while
// it was valid it keeps working until MaxSessionLength after creation, so
// a long call does not drop when its credential ages.
func (f *front) expiredREST(m *stun.Message, src net.Addr, v verdict, creds *credentials, now time.Time) verdict {
	switch m.Type.Method {
	case stun.MethodAllocate:
		v.reason = authExpired
	case stun.MethodConnectionBind:
		// Arrives on a new TCP data connection; pion ties it to the
		// allocation by connection ID and the same user ID.
	default:
		info, ok := f.s.allocs.lookup(tupleOf(src, f.local))
		switch {
		case !ok || info.userID != v.userID:
			v.reason = authExpired
		case now.After(info.created.Add(creds.maxSession)):
			v.reason = authSessionLimit
		}
	}
	return v
}

// binding handles Binding requests: RFC 5780 answers when configured, 420
// for CHANGE-REQUEST when not, otherwise pion's plain answer.
func (f *front) binding(m *stun.Message, src net.Addr) bool {
	s := f.s
	if s.behavior != nil && f.on != nil {
		s.behavior.answer(f.on, m, src)
		s.metrics.bindingAnswers.Inc()
		return false
	}
	if m.Contains(stun.AttrChangeRequest) {
		if f.on != nil {
			answerChangeRequestUnsupported(f.on, m, src)
		} else {
			f.replyError(m, src, stun.CodeUnknownAttribute, nil, stun.UnknownAttributes{stun.AttrChangeRequest})
		}
		return false
	}
	return true
}

// replyError answers m (from src) with an error response, signed with key when the
// request was authenticated.
func (f *front) replyError(m *stun.Message, src net.Addr, code stun.ErrorCode, key []byte, extra ...stun.Setter) {
	setters := []stun.Setter{
		&stun.Message{TransactionID: m.TransactionID},
		stun.NewType(m.Type.Method, stun.ClassErrorResponse),
		code,
	}
	setters = append(setters, extra...)
	if key != nil {
		setters = append(setters, stun.MessageIntegrity(key))
	}
	setters = append(setters, stun.Fingerprint)
	resp, err := stun.Build(setters...)
	if err != nil {
		return
	}
	_ = f.reply(resp.Raw, src)
}
