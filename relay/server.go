package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v5"
)

// connectTimeout bounds an RFC 6062 Connect to a peer.
const connectTimeout = 10 * time.Second

// ErrClosed is returned by Run after Close.
var ErrClosed = errors.New("relay: server closed")

// Server is a running STUN/TURN relay. Create it with New.
type Server struct {
	cfg Config
	log *slog.Logger

	creds   atomic.Pointer[credentials]
	policy  atomic.Pointer[peerPolicy]
	cert    atomic.Pointer[tls.Certificate]
	getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)

	metrics     *metrics
	streamConns *connLimiter
	unauth      *ipLimiter
	// streamUnauth is unauth for requests over TCP and TLS
	// (front.unauthAllowed).
	streamUnauth *ipLimiter
	authFail     *ipLimiter
	stash        *authStash
	allocs       *allocTable
	userBW       *userLimits
	behavior     *behaviorResponder
	draining     atomic.Bool
	fast         *fastPath  // the user-space data plane (fastpath.go)
	offload      *offloader // the eBPF kernel path (offload_linux.go)
	// now is the clock credential expiry is judged by (Config.now).
	now func() time.Time
	// acceptFailing counts listeners whose Accept keeps failing.
	acceptFailing atomic.Int32

	relayBind4, relayBind6 netip.Addr

	turn    *turn.Server
	addrs   []net.Addr
	netlink *os.File // address-change events, closed by Close

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Stats is a point-in-time view of the server, for tests and status pages.
type Stats struct {
	ActiveAllocations int
	TotalAllocations  int64
	Draining          bool
}

// New validates cfg, binds every listening socket and starts serving.
// Errors name every configuration problem at once.
func New(cfg Config) (*Server, error) {
	askedSockets := cfg.UDPSockets
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("relay config: %w", err)
	}
	s := &Server{
		cfg:          cfg,
		log:          cfg.Logger,
		metrics:      newMetrics(),
		streamConns:  newConnLimiter(cfg.MaxStreamConns, cfg.MaxStreamConnsPerSource),
		unauth:       newIPLimiter(cfg.UnauthRate, int(2*cfg.UnauthRate)+1),
		streamUnauth: newIPLimiter(cfg.UnauthRate, int(2*cfg.UnauthRate)+1),
		authFail:     newIPLimiter(cfg.AuthFailRate/60, int(cfg.AuthFailRate)+1),
		stash:        newAuthStash(),
		allocs:       newAllocTable(),
		userBW:       newUserLimits(cfg.UserMaxBPS),
		getCert:      cfg.GetCertificate,
		stop:         make(chan struct{}),
		now:          cfg.now,
	}
	s.stash.checkGoroutine = cfg.checkHookGoroutine
	if askedSockets > cfg.UDPSockets {
		s.log.Info("udp: one socket per listener address on this platform (SO_REUSEPORT spreading is Linux-only)",
			"os", runtime.GOOS, "udp_sockets", askedSockets)
	}
	s.userBW.setCapacity(cfg.BPSCapacity)
	if cfg.MetricNames == MetricNamesCoturn {
		s.metrics.reg.MustRegister(newCoturnCollector(s.metrics, cfg.Realm))
	}
	s.fast = newFastPath(s)
	s.allocs.permTTL, s.allocs.chanTTL = cfg.PermissionLifetime, cfg.ChannelLifetime
	s.creds.Store(newCredentials(cfg))
	if cfg.Certificate != nil {
		s.cert.Store(cfg.Certificate)
	}

	pcs, lns, err := s.listen()
	if err != nil {
		return nil, err
	}
	if s.fast.enabled && !noRelayLoops.Load() {
		// The loops read relay sockets and, adopted off Go's poller, the
		// UDP listener sockets (relayloop_linux.go).
		s.fast.startLoops(cfg.UDPSockets)
		pcs = s.fast.adoptListeners(pcs)
	}
	closeAll := func() {
		s.fast.stopLoops()
		for _, c := range pcs {
			c.Close()
		}
		for _, l := range lns {
			l.Close()
		}
	}
	if err := s.pickRelayIPs(); err != nil {
		closeAll()
		return nil, err
	}
	s.policy.Store(newPeerPolicy(cfg.Peers, s.selfPorts(), s.readSelf()))

	if cfg.RFC5780 != nil {
		primary := pcs[0].LocalAddr().(*net.UDPAddr)
		adv := cfg.ExternalIPv4
		if primary.IP.To4() == nil {
			adv = cfg.ExternalIPv6
		}
		s.behavior, err = newBehaviorResponder(*cfg.RFC5780, primary, adv, s.log)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("relay: rfc5780: %w", err)
		}
		s.behavior.usePrimary(pcs[0])
		s.metrics.registerBehavior(s.behavior)
	}

	perm := func(_ net.Addr, peer net.IP) bool {
		ip, ok := netip.AddrFromSlice(peer)
		if !ok {
			return false
		}
		if reason := s.peerIPDenied(ip); reason != "" {
			s.metrics.policyDenials.WithLabelValues(reason).Inc()
			return false
		}
		return true
	}
	gen := generator{s: s}
	tc := turn.ServerConfig{
		LoggerFactory:      pionLoggerFactory{log: s.log, metrics: s.metrics},
		Realm:              cfg.Realm,
		AuthHandler:        s.authHandler,
		QuotaHandler:       s.quotaHandler,
		AllocationLifetime: cfg.AllocationLifetime,
		InboundMTU:         inboundMTU,
		PermissionTimeout:  cfg.PermissionLifetime,
		ChannelBindTimeout: cfg.ChannelLifetime,
		EventHandler: turn.EventHandler{
			OnAllocationCreated: func(src, dst net.Addr, _, userID, _ string, relayAddr net.Addr, _ int) {
				_, tcp := relayAddr.(*net.TCPAddr)
				s.allocs.add(tupleOf(src, dst), userID, s.sourceKey(addrIP(src)), tcp, time.Now())
				s.metrics.allocationsActive.Inc()
				s.metrics.allocationsCreated.WithLabelValues(s.clientTransport(src, dst)).Inc()
			},
			OnAllocationDeleted: func(src, dst net.Addr, _, _, _ string) {
				s.allocs.remove(tupleOf(src, dst))
				s.metrics.allocationsActive.Dec()
			},
		},
	}
	s.fast.hook(&tc.EventHandler)
	for _, pc := range pcs {
		spc, err := newServerPacketConn(s, pc)
		if err != nil {
			closeAll()
			if s.behavior != nil {
				_ = s.behavior.close()
			}
			return nil, fmt.Errorf("relay: %w", err)
		}
		tc.PacketConnConfigs = append(tc.PacketConnConfigs, turn.PacketConnConfig{
			PacketConn: spc, RelayAddressGenerator: generator{s: s, listener: spc}, PermissionHandler: perm,
		})
	}
	for _, l := range lns {
		tc.ListenerConfigs = append(tc.ListenerConfigs, turn.ListenerConfig{
			Listener: l, RelayAddressGenerator: gen, PermissionHandler: perm,
		})
	}
	s.turn, err = turn.NewServer(tc)
	if err != nil {
		s.fast.stopLoops()
		closeAll()
		if s.behavior != nil {
			s.behavior.close()
		}
		return nil, fmt.Errorf("relay: start pion server: %w", err)
	}
	s.offload = newOffloader(s)
	if err := s.offload.setMode(cfg.Offload); err != nil {
		s.Close()
		return nil, fmt.Errorf("relay: %w", err)
	}
	s.wg.Add(1)
	go s.janitor()
	s.watchAddresses()
	return s, nil
}

func newCredentials(cfg Config) *credentials {
	c := &credentials{realm: cfg.Realm, users: map[string][]byte{}, maxSession: cfg.MaxSessionLength}
	for _, u := range cfg.Users {
		c.users[u.Name] = append([]byte(nil), u.Key...)
	}
	for _, sec := range cfg.Secrets {
		c.secrets = append(c.secrets, append([]byte(nil), sec...))
	}
	return c
}

// listen binds every configured listener.
func (s *Server) listen() ([]net.PacketConn, []net.Listener, error) {
	var pcs []net.PacketConn
	var lns []net.Listener
	fail := func(err error) ([]net.PacketConn, []net.Listener, error) {
		for _, c := range pcs {
			c.Close()
		}
		for _, l := range lns {
			l.Close()
		}
		return nil, nil, err
	}
	tlsConf := &tls.Config{
		MinVersion:       s.cfg.TLSMinVersion,
		CipherSuites:     s.cfg.TLSCipherSuites,
		CurvePreferences: s.cfg.TLSCurves,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if s.getCert != nil {
				return s.getCert(hello)
			}
			return s.cert.Load(), nil
		},
	}
	if s.cfg.TLSClientCAs != nil {
		tlsConf.ClientCAs, tlsConf.ClientAuth = s.cfg.TLSClientCAs, tls.RequireAndVerifyClientCert
	}
	for _, l := range s.cfg.Listeners {
		switch l.Network {
		case "udp":
			conns, err := listenUDPShared(l.Addr, s.cfg.UDPSockets)
			if err != nil {
				return fail(err)
			}
			pcs = append(pcs, conns...)
			s.addrs = append(s.addrs, conns[0].LocalAddr())
		case "tcp", "tls":
			ln, err := new(net.ListenConfig).Listen(context.Background(), tcpNetwork(l.Addr), l.Addr)
			if err != nil {
				return fail(fmt.Errorf("listen %s %s: %w", l.Network, l.Addr, err))
			}
			sl := &serverListener{Listener: ln, s: s, transport: l.Network, conns: s.streamConns,
				health: &acceptHealth{s: s, addr: ln.Addr().String()}, closed: make(chan struct{})}
			if l.Network == "tls" {
				sl.tls = tlsConf
			}
			lns = append(lns, sl)
			s.addrs = append(s.addrs, tlsAddr{ln.Addr(), l.Network})
		}
	}
	return pcs, lns, nil
}

// tlsAddr labels a TCP listener address with the network it serves.
type tlsAddr struct {
	net.Addr
	network string
}

func (a tlsAddr) Network() string { return a.network }

// pickRelayIPs decides which local addresses relay sockets bind.
func (s *Server) pickRelayIPs() error {
	s.relayBind4, s.relayBind6 = s.cfg.RelayIPv4.Unmap(), s.cfg.RelayIPv6
	for _, a := range s.addrs {
		ip := toAddrPort(a).Addr().Unmap()
		if !ip.IsValid() || ip.IsUnspecified() {
			continue
		}
		if ip.Is4() && !s.relayBind4.IsValid() {
			s.relayBind4 = ip
		}
		if ip.Is6() && !s.relayBind6.IsValid() {
			s.relayBind6 = ip
		}
	}
	if !s.relayBind4.IsValid() || !s.relayBind6.IsValid() {
		v4, v6 := firstInterfaceAddrs()
		if !s.relayBind4.IsValid() {
			s.relayBind4 = v4
		}
		if !s.relayBind6.IsValid() && s.listensOnIPv6() {
			s.relayBind6 = v6
		}
	}
	if !s.relayBind4.IsValid() && !s.relayBind6.IsValid() {
		return errors.New("relay: no local address to bind relay sockets to")
	}
	return nil
}

func (s *Server) listensOnIPv6() bool {
	for _, a := range s.addrs {
		if ip := toAddrPort(a).Addr(); ip.Is6() && !ip.Is4In6() {
			return true
		}
	}
	return false
}

// firstInterfaceAddrs returns the first global-unicast address of each
// family, falling back to loopback.
func firstInterfaceAddrs() (v4, v6 netip.Addr) {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := pfx.Addr().Unmap()
		if !ip.IsGlobalUnicast() {
			continue
		}
		if ip.Is4() && !v4.IsValid() {
			v4 = ip
		}
		if ip.Is6() && !v6.IsValid() {
			v6 = ip
		}
	}
	if !v4.IsValid() {
		v4 = netip.MustParseAddr("127.0.0.1")
	}
	if !v6.IsValid() && HostHasIPv6() {
		v6 = netip.IPv6Loopback()
	}
	return v4, v6
}

// isRelayIP reports whether ip is an address relay sockets use.
func (s *Server) isRelayIP(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsValid() && (ip == s.relayBind4 || ip == s.relayBind6 ||
		ip == s.cfg.ExternalIPv4.Unmap() || ip == s.cfg.ExternalIPv6)
}

// clientTransport names how the client reaches us for the allocation with
// 5-tuple (src, dst): "udp", "tcp" or "tls" (pion's protocol argument is the
// relay's transport). dst is the listener's address.
func (s *Server) clientTransport(src, dst net.Addr) string {
	if _, ok := src.(*net.UDPAddr); ok {
		return "udp"
	}
	d := toAddrPort(dst)
	for _, a := range s.addrs {
		ta, ok := a.(tlsAddr)
		if !ok || ta.network != "tls" {
			continue
		}
		l := toAddrPort(ta.Addr)
		if l.Port() == d.Port() && (l.Addr().IsUnspecified() || l.Addr().Unmap() == d.Addr().Unmap()) {
			return "tls"
		}
	}
	return "tcp"
}

// peerIPDenied decides a permission for peer IP ip (CreatePermission,
// ChannelBind): "" when granted, else the denial reason. Our own relay IPs
// are granted (relay-to-relay): the per-datagram check then admits exactly
// the live relay ports on them.
func (s *Server) peerIPDenied(ip netip.Addr) string {
	if s.isRelayIP(ip) {
		return ""
	}
	return s.policy.Load().checkIP(ip)
}

// selfPorts are the ports a peer address may not name on our own IPs,
// each with its transport: UDP listeners on UDP, TCP and TLS listeners on
// TCP, admin ports (HTTP) on TCP, the RFC 5780 alternate port on both.
func (s *Server) selfPorts() []selfPort {
	var ports []selfPort
	add := func(proto uint8, port int) {
		if port > 0 && port < 65536 {
			ports = append(ports, selfPort{proto, uint16(port)})
		}
	}
	for _, port := range s.cfg.AdminPorts {
		add(protoTCP, port)
	}
	for _, a := range s.addrs {
		switch a := a.(type) {
		case *net.UDPAddr:
			add(protoUDP, a.Port)
		case tlsAddr: // the TCP and TLS listeners
			add(protoTCP, int(toAddrPort(a.Addr).Port()))
		default: // not expected; both, to stay on the safe side
			port := int(toAddrPort(a).Port())
			add(protoUDP, port)
			add(protoTCP, port)
		}
	}
	if r := s.cfg.RFC5780; r != nil {
		add(protoUDP, r.AlternatePort)
		add(protoTCP, r.AlternatePort)
	}
	return ports
}

// readSelf reads the host's addresses now: every interface address
// (wildcard listeners answer on all of them), the external and relay ones,
// and the broadcast address of every IPv4 subnet.
func (s *Server) readSelf() *selfSet {
	var prefixes []netip.Prefix
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if pfx, err := netip.ParsePrefix(a.String()); err == nil {
			prefixes = append(prefixes, pfx)
		}
	}
	return newSelfSet(prefixes, s.cfg.ExternalIPv4, s.cfg.ExternalIPv6, s.relayBind4, s.relayBind6)
}

// refreshSelf re-reads the host's addresses into the peer policy (SIGHUP
// and netlink address events).
func (s *Server) refreshSelf() {
	s.policy.Load().setSelf(s.readSelf())
	s.offload.refresh()
	if s.cfg.onSelfRefresh != nil {
		s.cfg.onSelfRefresh()
	}
}

// sourceKey is the identity a client address counts under for rate
// limits, source quotas and connection caps: the IPv4 address, or the
// IPv6 address's IPv6SourcePrefix (a /64 by default, which one host or
// subscriber usually owns whole).
func (s *Server) sourceKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if !ip.Is6() || s.cfg.IPv6SourcePrefix >= 128 {
		return ip
	}
	p, err := ip.Prefix(s.cfg.IPv6SourcePrefix)
	if err != nil {
		return ip
	}
	return p.Addr()
}

// quotaHandler is pion's quota hook: the front door reserved the slot when
// it passed the Allocate, so pion may only create what was reserved.
func (s *Server) quotaHandler(_, _ string, src net.Addr) bool {
	if !s.allocs.hasReservation(toAddrPort(src)) {
		s.metrics.quotaRejections.WithLabelValues("unreserved").Inc()
		return false
	}
	return true
}

func (s *Server) janitor() {
	defer s.wg.Done()
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.stash.sweep(now.Add(-10 * time.Second))
			s.allocs.sweepReservations(now.Add(-10 * time.Second))
			s.unauth.sweep(now.Add(-time.Minute))
			s.streamUnauth.sweep(now.Add(-time.Minute))
			s.authFail.sweep(now.Add(-5 * time.Minute))
		}
	}
}

// Addrs returns the bound listening addresses; TLS listeners report the
// network "tls".
func (s *Server) Addrs() []net.Addr { return append([]net.Addr(nil), s.addrs...) }

// Addr returns the first bound address of network ("udp", "tcp" or
// "tls"), or nil.
func (s *Server) Addr(network string) net.Addr {
	for _, a := range s.addrs {
		if a.Network() == network {
			if ta, ok := a.(tlsAddr); ok {
				return ta.Addr
			}
			return a
		}
	}
	return nil
}

// Stats reports allocation counts.
func (s *Server) Stats() Stats {
	active, created, _ := s.allocs.snapshot()
	return Stats{ActiveAllocations: active, TotalAllocations: created, Draining: s.draining.Load()}
}

// ICEServerURLs returns the URLs a client should use for this server's
// listeners, with host in place of wildcard addresses.
func (s *Server) ICEServerURLs(host string) []string {
	var urls []string
	for _, a := range s.addrs {
		ap := toAddrPort(a)
		h := host
		if h == "" {
			h = ap.Addr().Unmap().String()
		}
		hp := net.JoinHostPort(h, strconv.Itoa(int(ap.Port())))
		switch a.Network() {
		case "udp":
			urls = append(urls, "turn:"+hp+"?transport=udp")
		case "tcp":
			urls = append(urls, "turn:"+hp+"?transport=tcp")
		case "tls":
			urls = append(urls, "turns:"+hp+"?transport=tcp")
		}
	}
	return urls
}

// Run serves until ctx ends, then drains: new allocations are refused
// (508) while existing ones continue until they end or DrainTimeout
// passes; then it closes the server.
func (s *Server) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
	case <-s.stop:
		return ErrClosed
	}
	s.Drain(s.cfg.DrainTimeout)
	return s.Close()
}

// Drain refuses new allocations and waits up to timeout for the live ones
// to end. It returns the number still alive.
func (s *Server) Drain(timeout time.Duration) int {
	if !s.draining.Swap(true) {
		s.offload.drain()
		s.metrics.draining.Set(1)
		active, _, _ := s.allocs.snapshot()
		s.log.Info("draining: refusing new allocations", "active_allocations", active, "timeout", timeout)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		active, _, changed := s.allocs.snapshot()
		if active == 0 {
			return 0
		}
		select {
		case <-changed:
		case <-deadline.C:
			s.log.Warn("drain timeout: closing live allocations", "active_allocations", active)
			return active
		case <-s.stop:
			return active
		}
	}
}

// Close stops serving and closes every socket and allocation. It is
// idempotent and waits for the goroutines the server started.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.draining.Store(true)
		close(s.stop)
		if s.netlink != nil {
			s.netlink.Close()
		}
		if s.offload != nil {
			s.offload.close() // kernel entries go before pion closes the sockets
		}
		s.closeErr = s.turn.Close()
		s.fast.stopLoops()
		if s.behavior != nil {
			if err := s.behavior.close(); err != nil && s.closeErr == nil {
				s.closeErr = err
			}
		}
		s.wg.Wait()
	})
	return s.closeErr
}

// noRelayLoops makes servers created meanwhile read every relay socket
// with a goroutine of its own, as when the loops cannot start (tests of
// that path set it).
var noRelayLoops atomic.Bool

// tcpNetwork pins a listener to one family, so [::] and 0.0.0.0 on the
// same port can both be bound (Go's "tcp" on [::] would be dual-stack).
func tcpNetwork(addr string) string {
	host, _, _ := net.SplitHostPort(addr)
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() && !ip.Is4In6() {
		return "tcp6"
	}
	return "tcp4"
}
