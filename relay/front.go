package relay

import (
	"net"
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
}

// pass reports whether pion should handle the packet b from src. Anything
// it refuses it has already answered, counted or silently dropped.
func (f *front) pass(b []byte, src net.Addr) bool {
	s := f.s
	if len(b) == 0 {
		s.metrics.dropped.WithLabelValues(dropMalformed).Inc()
		return false
	}
	if b[0]&0xC0 == 0x40 {
		// ChannelData: only meaningful on an existing allocation, which
		// pion looks up; relaying is accounted on the relay socket.
		return true
	}
	if !stun.IsMessage(b) {
		s.metrics.dropped.WithLabelValues(dropMalformed).Inc()
		return false
	}
	m := &f.msg
	m.Raw = append(m.Raw[:0], b...)
	if err := m.Decode(); err != nil {
		s.metrics.dropped.WithLabelValues(dropMalformed).Inc()
		return false
	}
	switch m.Type.Class {
	case stun.ClassIndication:
		return m.Type.Method == stun.MethodSend
	case stun.ClassRequest:
	default:
		// Responses and errors sent to a server are never valid here.
		s.metrics.dropped.WithLabelValues(dropMalformed).Inc()
		return false
	}
	now := s.now()
	ip := addrIP(src)

	if m.Type.Method == stun.MethodBinding {
		if !s.unauth.allow(ip, now) {
			s.metrics.dropped.WithLabelValues(dropRateLimited).Inc()
			return false
		}
		return f.binding(m, src)
	}

	if !m.Contains(stun.AttrMessageIntegrity) {
		if !s.unauth.allow(ip, now) {
			s.metrics.dropped.WithLabelValues(dropRateLimited).Inc()
			return false
		}
		return true // pion answers 401 with a nonce
	}
	var username stun.Username
	var realm stun.Realm
	var nonce stun.Nonce
	if username.GetFrom(m) != nil || realm.GetFrom(m) != nil || nonce.GetFrom(m) != nil {
		s.metrics.authFailures.WithLabelValues(authMalformed).Inc()
		return s.unauth.allow(ip, now) // pion answers 400
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
			return false
		}
		f.replyError(m, src, stun.CodeUnauthorized, nil, stun.NewRealm(creds.realm), &nonce)
		return false
	}
	switch m.Type.Method {
	case stun.MethodRefresh, stun.MethodCreatePermission, stun.MethodChannelBind, stun.MethodConnect:
		// RFC 8656 section 6.2: later requests on an allocation must carry
		// the credentials that created it; pion would drop them silently.
		if info, ok := s.allocs.lookup(src, f.local); ok && info.userID != v.userID {
			s.metrics.authFailures.WithLabelValues(authWrongUser).Inc()
			f.replyError(m, src, stun.CodeWrongCredentials, nil)
			return false
		}
	}
	if m.Type.Method == stun.MethodAllocate {
		if s.draining.Load() {
			s.metrics.quotaRejections.WithLabelValues("draining").Inc()
			f.replyError(m, src, stun.CodeInsufficientCapacity, v.key)
			return false
		}
		cfg := s.cfg
		switch q := s.allocs.quotaExceeded(v.userID, ip, cfg.UserQuota, cfg.SourceQuota, cfg.TotalQuota); q {
		case "":
		case "total":
			s.metrics.quotaRejections.WithLabelValues(q).Inc()
			f.replyError(m, src, stun.CodeInsufficientCapacity, v.key)
			return false
		default:
			s.metrics.quotaRejections.WithLabelValues(q).Inc()
			f.replyError(m, src, stun.CodeAllocQuotaReached, v.key)
			return false
		}
	}
	s.stash.put(src, username.String(), v, now)
	return true
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
		info, ok := f.s.allocs.lookup(src, f.local)
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
