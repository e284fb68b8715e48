package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"
	"golang.org/x/time/rate"
)

// RFC 5780 NAT behaviour discovery.
//
// The responder owns three extra UDP sockets next to the primary listener:
//
//	            primary port   alternate port
//	primary IP  (server's)     sockets[0][1]
//	alt IP      sockets[1][0]  sockets[1][1]
//
// The primary socket(s) belong to the server: it hands Binding requests that
// arrive there to answer, and answer sends from the socket the request came
// in on unless CHANGE-REQUEST asks for another one. Requests that arrive on
// the extra sockets are read and answered here.

// CHANGE-REQUEST flags (RFC 5780 section 7.2).
const (
	changeIPFlag   = 0x04
	changePortFlag = 0x02
)

// defaultRFC5780Rate is RFC5780Config.Rate when zero.
const defaultRFC5780Rate = 20

// maxRateSources bounds the per-source limiter table so a flood of spoofed
// sources cannot grow it without limit.
const maxRateSources = 1 << 16

// behaviorStats are the responder's counters, all monotonic.
type behaviorStats struct {
	// Answers counts Binding success answers sent (from any of the four sockets).
	Answers uint64
	// ChangeRequests counts answers that honoured a CHANGE-REQUEST asking for
	// another IP or port.
	ChangeRequests uint64
	// ResponsePort counts answers redirected by RESPONSE-PORT.
	ResponsePort uint64
	// RateLimited counts requests dropped by the per-source rate limit.
	RateLimited uint64
	// BadRequests counts requests answered 400 (malformed CHANGE-REQUEST or
	// RESPONSE-PORT).
	BadRequests uint64
	// Ignored counts datagrams on the extra sockets that were not Binding
	// requests (TURN traffic, garbage), plus answers that could not leave
	// from the primary because no primary socket was known yet.
	Ignored uint64
	// SendErrors counts failed writes.
	SendErrors uint64
}

// behaviorResponder answers RFC 5780 Binding requests. Create it with
// newBehaviorResponder, feed it the primary socket's Binding requests with
// answer, and close it with close.
type behaviorResponder struct {
	log *slog.Logger

	// addrs are the bound addresses: addrs[ip][port], index 0 = primary,
	// 1 = alternate.
	addrs [2][2]netip.AddrPort
	// advertised are the addresses put in OTHER-ADDRESS and RESPONSE-ORIGIN.
	advertised [2][2]netip.AddrPort
	// conns are the extra sockets; conns[0][0] is nil (the server owns it).
	conns [2][2]net.PacketConn
	// primaryConn is a socket bound to the primary address used to send
	// answers that must leave from the primary but were asked for on an
	// extra socket. Set by usePrimary, else by the first answer call.
	primaryConn atomic.Pointer[net.PacketConn]

	limiter *sourceLimiter // nil when disabled

	answers, changeRequests, responsePort, rateLimited atomic.Uint64
	badRequests, ignored, sendErrors                   atomic.Uint64

	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// newBehaviorResponder binds the extra sockets (primaryIP:altPort,
// altIP:primaryPort, altIP:altPort) next to the primary UDP socket address
// and starts their read loops (which answer only Binding requests).
// advertisedPrimary is the IP to put in RESPONSE-ORIGIN for the primary
// (ExternalIPv4/6, or the invalid Addr to advertise the bound one).
//
// Every configuration problem is reported at once (errors.Join).
func newBehaviorResponder(cfg RFC5780Config, primary *net.UDPAddr, advertisedPrimary netip.Addr, log *slog.Logger) (*behaviorResponder, error) {
	if log == nil {
		log = slog.Default()
	}
	if primary == nil {
		return nil, errors.New("rfc5780: no primary UDP address")
	}
	pAP := primary.AddrPort()
	pIP := pAP.Addr().Unmap()
	pPort := int(pAP.Port())
	aIP := cfg.AlternateIP.Unmap()
	aPort := cfg.AlternatePort
	if aPort == 0 {
		aPort = pPort + 1
	}

	var errs []error
	if !pIP.IsValid() || pIP.IsUnspecified() {
		errs = append(errs, fmt.Errorf("rfc5780: the primary UDP listener must be bound to an explicit IP, not %v (a wildcard socket can answer from the wrong address)", primary))
	}
	if pPort == 0 {
		errs = append(errs, errors.New("rfc5780: primary UDP port is 0 (pass the bound address)"))
	}
	switch {
	case !aIP.IsValid():
		errs = append(errs, errors.New("rfc5780: AlternateIP is required"))
	case aIP.IsUnspecified():
		errs = append(errs, fmt.Errorf("rfc5780: AlternateIP %v must be an explicit address", aIP))
	case pIP.IsValid() && aIP.Is4() != pIP.Is4():
		errs = append(errs, fmt.Errorf("rfc5780: AlternateIP %v and primary %v are of different families", aIP, pIP))
	case aIP == pIP:
		errs = append(errs, fmt.Errorf("rfc5780: AlternateIP %v equals the primary IP", aIP))
	}
	if aPort < 1 || aPort > 65535 {
		errs = append(errs, fmt.Errorf("rfc5780: alternate port %d out of range 1-65535", aPort))
	} else if aPort == pPort {
		errs = append(errs, fmt.Errorf("rfc5780: alternate port %d equals the primary port", aPort))
	}
	advP := advertisedPrimary.Unmap()
	if !advP.IsValid() {
		advP = pIP
	}
	advA := cfg.AdvertisedAlternateIP.Unmap()
	if !advA.IsValid() {
		advA = aIP
	}
	if advP.IsValid() && advA.IsValid() && advP.Is4() != advA.Is4() {
		errs = append(errs, fmt.Errorf("rfc5780: advertised addresses %v and %v are of different families", advP, advA))
	}
	if advP.IsValid() && advP == advA {
		errs = append(errs, fmt.Errorf("rfc5780: advertised primary and alternate IP are both %v", advP))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	b := &behaviorResponder{log: log}
	ips := [2]netip.Addr{pIP, aIP}
	advIPs := [2]netip.Addr{advP, advA}
	ports := [2]uint16{uint16(pPort), uint16(aPort)} // range checked above
	for i := range 2 {
		for j := range 2 {
			b.addrs[i][j] = netip.AddrPortFrom(ips[i], ports[j])
			b.advertised[i][j] = netip.AddrPortFrom(advIPs[i], ports[j])
		}
	}
	r := cfg.Rate
	if r == 0 {
		r = defaultRFC5780Rate
	}
	if r > 0 {
		b.limiter = newSourceLimiter(rate.Limit(r), int(2*r+0.5))
	}

	network := "udp4"
	if pIP.Is6() {
		network = "udp6"
	}
	for _, ij := range [][2]int{{0, 1}, {1, 0}, {1, 1}} {
		i, j := ij[0], ij[1]
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(b.addrs[i][j]))
		if err != nil {
			_ = b.closeConns()
			return nil, fmt.Errorf("rfc5780: bind %v: %w", b.addrs[i][j], err)
		}
		b.conns[i][j] = c
	}
	for _, ij := range [][2]int{{0, 1}, {1, 0}, {1, 1}} {
		i, j := ij[0], ij[1]
		b.wg.Add(1)
		go b.readLoop(i, j)
	}
	log.Info("RFC 5780 behaviour discovery enabled",
		"primary", b.addrs[0][0], "alt_port", b.addrs[0][1], "alt_ip", b.addrs[1][0], "alt_both", b.addrs[1][1],
		"advertised_primary", advP, "advertised_alternate", advA, "rate_per_source", r)
	return b, nil
}

// usePrimary gives the responder a socket bound to the primary address, used
// for answers that were asked for on an extra socket but must leave from the
// primary (CHANGE-REQUEST undoing the change). Any one socket of a
// SO_REUSEPORT group will do. Until it is called, the first socket passed to
// answer is used.
func (b *behaviorResponder) usePrimary(c net.PacketConn) {
	b.primaryConn.Store(&c)
}

// stats returns a snapshot of the counters.
func (b *behaviorResponder) stats() behaviorStats {
	return behaviorStats{
		Answers:        b.answers.Load(),
		ChangeRequests: b.changeRequests.Load(),
		ResponsePort:   b.responsePort.Load(),
		RateLimited:    b.rateLimited.Load(),
		BadRequests:    b.badRequests.Load(),
		Ignored:        b.ignored.Load(),
		SendErrors:     b.sendErrors.Load(),
	}
}

// answer handles a Binding request that arrived on a primary socket on from
// from: it answers with XOR-MAPPED-ADDRESS, OTHER-ADDRESS and
// RESPONSE-ORIGIN, honouring CHANGE-REQUEST (change IP, port or both) by
// sending from the right socket and RESPONSE-PORT by sending to that port.
// It always consumes the request.
func (b *behaviorResponder) answer(on net.PacketConn, req *stun.Message, from net.Addr) {
	if on != nil && b.primaryConn.Load() == nil {
		b.primaryConn.CompareAndSwap(nil, &on)
	}
	b.handle(0, 0, on, req, from)
}

// close closes the extra sockets and waits for their read loops. It is
// idempotent.
func (b *behaviorResponder) close() error {
	b.closeOnce.Do(func() {
		b.closeErr = b.closeConns()
		b.wg.Wait()
	})
	return b.closeErr
}

func (b *behaviorResponder) closeConns() error {
	var errs []error
	for i := range 2 {
		for j := range 2 {
			if c := b.conns[i][j]; c != nil {
				if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

func (b *behaviorResponder) readLoop(i, j int) {
	defer b.wg.Done()
	c := b.conns[i][j]
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Unconnected UDP sockets see no ICMP errors; anything else is
			// transient. Keep serving.
			b.log.Debug("rfc5780: read", "addr", b.addrs[i][j], "err", err)
			continue
		}
		pkt := buf[:n]
		if !stun.IsMessage(pkt) {
			b.ignored.Add(1)
			continue
		}
		m := &stun.Message{Raw: pkt}
		if err := m.Decode(); err != nil || m.Type != stun.BindingRequest {
			b.ignored.Add(1)
			continue
		}
		b.handle(i, j, c, m, from)
	}
}

// handle answers req, which arrived on socket [i][j] (conn on) from from.
func (b *behaviorResponder) handle(i, j int, on net.PacketConn, req *stun.Message, from net.Addr) {
	src, ok := udpAddrPort(from)
	if !ok {
		b.ignored.Add(1)
		return
	}
	extra := i != 0 || j != 0

	change, badChange := changeRequestFlags(req)
	respPort, hasRespPort, badRespPort := responsePort(req)
	if badChange || badRespPort {
		if extra && !b.allow(src.Addr()) {
			b.rateLimited.Add(1)
			return
		}
		b.badRequests.Add(1)
		b.sendError(on, req, src, stun.CodeBadRequest, nil)
		return
	}
	si, sj := i, j
	if change&changeIPFlag != 0 {
		si ^= 1
	}
	if change&changePortFlag != 0 {
		sj ^= 1
	}
	if (extra || si != 0 || sj != 0) && !b.allow(src.Addr()) {
		b.rateLimited.Add(1)
		return
	}

	dst := src
	if hasRespPort {
		dst = netip.AddrPortFrom(src.Addr(), respPort)
	}
	out := b.advertised
	other := out[i^1][j^1]
	msg, err := stun.Build(
		stun.NewTransactionIDSetter(req.TransactionID),
		stun.BindingSuccess,
		&stun.XORMappedAddress{IP: src.Addr().AsSlice(), Port: int(src.Port())},
		&stun.OtherAddress{IP: other.Addr().AsSlice(), Port: int(other.Port())},
		&stun.ResponseOrigin{IP: out[si][sj].Addr().AsSlice(), Port: int(out[si][sj].Port())},
		stun.Fingerprint,
	)
	if err != nil {
		// Only reachable with impossible addresses; never crash on input.
		b.ignored.Add(1)
		return
	}
	var sender net.PacketConn
	switch {
	case si == i && sj == j:
		sender = on
	case si == 0 && sj == 0:
		if p := b.primaryConn.Load(); p != nil {
			sender = *p
		}
	default:
		sender = b.conns[si][sj]
	}
	if sender == nil {
		b.ignored.Add(1)
		return
	}
	if _, err := sender.WriteTo(msg.Raw, net.UDPAddrFromAddrPort(dst)); err != nil {
		b.sendErrors.Add(1)
		b.log.Debug("rfc5780: send", "to", dst, "err", err)
		return
	}
	b.answers.Add(1)
	if si != i || sj != j {
		b.changeRequests.Add(1)
	}
	if hasRespPort {
		b.responsePort.Add(1)
	}
}

func (b *behaviorResponder) allow(ip netip.Addr) bool {
	return b.limiter == nil || b.limiter.allow(ip, time.Now())
}

func (b *behaviorResponder) sendError(on net.PacketConn, req *stun.Message, to netip.AddrPort, code stun.ErrorCode, unknown stun.UnknownAttributes) {
	if on == nil {
		return
	}
	if err := writeError(on, req, net.UDPAddrFromAddrPort(to), code, unknown); err != nil {
		b.sendErrors.Add(1)
	}
}

// answerChangeRequestUnsupported answers 420 (UNKNOWN-ATTRIBUTES:
// CHANGE-REQUEST, and RESPONSE-PORT when present) to a Binding request when
// RFC 5780 is off.
func answerChangeRequestUnsupported(on net.PacketConn, req *stun.Message, from net.Addr) {
	var unknown stun.UnknownAttributes
	if req.Contains(stun.AttrChangeRequest) {
		unknown = append(unknown, stun.AttrChangeRequest)
	}
	if req.Contains(stun.AttrResponsePort) {
		unknown = append(unknown, stun.AttrResponsePort)
	}
	if len(unknown) == 0 {
		unknown = stun.UnknownAttributes{stun.AttrChangeRequest}
	}
	_ = writeError(on, req, from, stun.CodeUnknownAttribute, unknown)
}

func writeError(on net.PacketConn, req *stun.Message, to net.Addr, code stun.ErrorCode, unknown stun.UnknownAttributes) error {
	setters := []stun.Setter{
		stun.NewTransactionIDSetter(req.TransactionID),
		stun.NewType(req.Type.Method, stun.ClassErrorResponse),
		code,
	}
	if len(unknown) > 0 {
		setters = append(setters, unknown)
	}
	setters = append(setters, stun.Fingerprint)
	msg, err := stun.Build(setters...)
	if err != nil {
		return err
	}
	_, err = on.WriteTo(msg.Raw, to)
	return err
}

// changeRequestFlags returns the CHANGE-REQUEST flags (0 when absent) and
// whether the attribute is malformed.
func changeRequestFlags(m *stun.Message) (flags byte, bad bool) {
	v, err := m.Get(stun.AttrChangeRequest)
	if err != nil {
		return 0, false
	}
	if len(v) != 4 {
		return 0, true
	}
	return v[3] & (changeIPFlag | changePortFlag), false
}

// responsePort returns the RESPONSE-PORT value, whether it is present and
// whether it is malformed (RFC 5780 section 7.5: 2-byte port, 2 bytes
// padding; port 0 is meaningless).
func responsePort(m *stun.Message) (port uint16, ok, bad bool) {
	v, err := m.Get(stun.AttrResponsePort)
	if err != nil {
		return 0, false, false
	}
	if len(v) != 4 {
		return 0, false, true
	}
	p := binary.BigEndian.Uint16(v[:2])
	if p == 0 {
		return 0, false, true
	}
	return p, true, false
}

// udpAddrPort returns a's address and port (unmapped), accepting
// *net.UDPAddr and any net.Addr whose String is ip:port.
func udpAddrPort(a net.Addr) (netip.AddrPort, bool) {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		if a == nil {
			return netip.AddrPort{}, false
		}
		ap = a.AddrPort()
	case nil:
		return netip.AddrPort{}, false
	default:
		p, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.AddrPort{}, false
		}
		ap = p
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if !ap.Addr().IsValid() || ap.Port() == 0 {
		return netip.AddrPort{}, false
	}
	return ap, true
}

// sourceLimiter is a token bucket per source IP with a bounded table.
type sourceLimiter struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	sources map[netip.Addr]*sourceEntry
}

type sourceEntry struct {
	lim  *rate.Limiter
	last time.Time
}

func newSourceLimiter(limit rate.Limit, burst int) *sourceLimiter {
	if burst < 1 {
		burst = 1
	}
	return &sourceLimiter{limit: limit, burst: burst, sources: make(map[netip.Addr]*sourceEntry)}
}

func (s *sourceLimiter) allow(ip netip.Addr, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.sources[ip]
	if e == nil {
		if len(s.sources) >= maxRateSources {
			// Forget sources idle long enough for their bucket to be full
			// again; they lose nothing by being forgotten.
			idle := time.Duration(float64(s.burst)/float64(s.limit)*float64(time.Second)) + time.Second
			for k, v := range s.sources {
				if now.Sub(v.last) > idle {
					delete(s.sources, k)
				}
			}
			if len(s.sources) >= maxRateSources {
				return false
			}
		}
		e = &sourceEntry{lim: rate.NewLimiter(s.limit, s.burst)}
		s.sources[ip] = e
	}
	e.last = now
	return e.lim.AllowN(now, 1)
}
