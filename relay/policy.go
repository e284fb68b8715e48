package relay

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Reasons a peer address is refused; they label the policy-denial metric.
const (
	denyLoopback    = "loopback"
	denyPrivate     = "private"
	denyLinkLocal   = "link-local"
	denyCGNAT       = "cgnat"
	denyMulticast   = "multicast"
	denyUnspecified = "unspecified"
	denyReserved    = "reserved"
	denyMetadata    = "metadata"
	denyOperator    = "operator"
	denySelf        = "self"
	denyBroadcast   = "broadcast"
	denyConnect     = "connect_transport"
)

// specialRange is a built-in denied range; reason labels denials.
type specialRange struct {
	prefix netip.Prefix
	reason string
}

var builtinDenied = func() []specialRange {
	r := func(s, reason string) specialRange {
		return specialRange{netip.MustParsePrefix(s), reason}
	}
	return []specialRange{
		// IPv4 (RFC 6890 special-purpose registry, plus cloud metadata).
		r("0.0.0.0/8", denyUnspecified),
		r("10.0.0.0/8", denyPrivate),
		r("100.64.0.0/10", denyCGNAT),
		r("127.0.0.0/8", denyLoopback),
		r("169.254.169.254/32", denyMetadata),
		r("169.254.0.0/16", denyLinkLocal),
		r("172.16.0.0/12", denyPrivate),
		r("192.0.0.0/24", denyReserved), // IETF protocol assignments
		r("192.0.2.0/24", denyReserved), // TEST-NET-1
		r("192.88.99.0/24", denyReserved),
		r("192.168.0.0/16", denyPrivate),
		r("198.18.0.0/15", denyReserved),   // benchmarking
		r("198.51.100.0/24", denyReserved), // TEST-NET-2
		r("203.0.113.0/24", denyReserved),  // TEST-NET-3
		r("224.0.0.0/4", denyMulticast),
		r("240.0.0.0/4", denyReserved), // includes 255.255.255.255
		// IPv6.
		r("::/128", denyUnspecified),
		r("::1/128", denyLoopback),
		r("100::/64", denyReserved),          // discard-only
		r("2001::/23", denyReserved),         // IETF protocol assignments (Teredo, benchmarking 2001:2::/48, ORCHID)
		r("2001:db8::/32", denyReserved),     // documentation
		r("3fff::/20", denyReserved),         // documentation (RFC 9637)
		r("fd00:ec2::254/128", denyMetadata), // AWS IMDS over IPv6; before fc00::/7
		r("fc00::/7", denyPrivate),           // unique local
		r("fe80::/10", denyLinkLocal),
		r("fec0::/10", denyLinkLocal), // deprecated site-local
		r("ff00::/8", denyMulticast),
		r("64:ff9b:1::/48", denyReserved), // local-use NAT64 (RFC 8215): operator layout, never public
	}
}()

// PeerPolicy validation and compilation.

func (p PeerPolicy) validate() []error {
	var errs []error
	for _, pf := range append(append([]netip.Prefix{}, p.Allowed...), p.Denied...) {
		if !pf.IsValid() {
			errs = append(errs, fmt.Errorf("peer policy: invalid prefix %v", pf))
		}
	}
	return errs
}

// Transport protocols of relay ports: a live UDP relay port must not open
// the TCP port of the same number (and the other way round).
const (
	protoUDP uint8 = 17
	protoTCP uint8 = 6
)

type relayKey struct {
	proto uint8
	ap    netip.AddrPort
}

// relaySet holds live relay addresses (bound and advertised) by protocol.
// Relaying between two relay addresses of this server is the normal path
// when both peers are relay-only, so it is allowed before any deny rule. It
// outlives policy reloads.
type relaySet struct {
	mu sync.RWMutex
	m  map[relayKey]int
}

func newRelaySet() *relaySet { return &relaySet{m: map[relayKey]int{}} }

func (r *relaySet) add(proto uint8, ap netip.AddrPort) {
	k := relayKey{proto, unmapAP(ap)}
	r.mu.Lock()
	r.m[k]++
	r.mu.Unlock()
}

func (r *relaySet) remove(proto uint8, ap netip.AddrPort) {
	k := relayKey{proto, unmapAP(ap)}
	r.mu.Lock()
	if r.m[k]--; r.m[k] <= 0 {
		delete(r.m, k)
	}
	r.mu.Unlock()
}

func (r *relaySet) has(proto uint8, ap netip.AddrPort) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.m[relayKey{proto, ap}] > 0
}

// selfSet is the server's own addresses: every interface address (wildcard
// listeners answer on all of them), the relay and external addresses, and
// the directed broadcast address of every IPv4 interface subnet. It is
// rebuilt when addresses change (netlink, SIGHUP).
type selfSet struct {
	ips   map[netip.Addr]bool
	bcast map[netip.Addr]bool
}

func (s *selfSet) isSelf(ip netip.Addr) bool {
	return ip.IsLoopback() || ip.IsUnspecified() || (s != nil && s.ips[ip])
}

func (s *selfSet) isBroadcast(ip netip.Addr) bool {
	return s != nil && s.bcast[ip]
}

// newSelfSet builds the set from interface prefixes plus extra addresses.
func newSelfSet(prefixes []netip.Prefix, extra ...netip.Addr) *selfSet {
	s := &selfSet{ips: map[netip.Addr]bool{}, bcast: map[netip.Addr]bool{}}
	for _, pfx := range prefixes {
		ip := pfx.Addr().Unmap().WithZone("")
		s.ips[ip] = true
		if ip.Is4() && pfx.Bits() < 31 {
			s.bcast[lastAddr(netip.PrefixFrom(ip, pfx.Bits()).Masked())] = true
		}
	}
	for _, ip := range extra {
		if ip.IsValid() {
			s.ips[ip.Unmap().WithZone("")] = true
		}
	}
	return s
}

// lastAddr is the highest address of an IPv4 prefix (its broadcast).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) | (1<<(32-p.Bits()) - 1)
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// peerPolicy is the compiled, immutable form of PeerPolicy plus the
// server's own addresses; reload swaps the whole value.
type peerPolicy struct {
	cfg PeerPolicy

	// selfPorts are the server's own listening and admin ports, each
	// with its transport: never reachable on its own addresses, whatever
	// the operator opened. Every other port on its own addresses is denied
	// too, except live relay ports of the same protocol and, with
	// AllowLoopback, loopback. A UDP peer on the number of a TCP listener
	// is not the listener (the port spaces are separate), so it is judged
	// as any other port.
	selfPorts map[selfPort]bool
	self      *atomic.Pointer[selfSet]

	relays *relaySet
}

// selfPort is one of the server's own ports with its transport
// (protoUDP, protoTCP).
type selfPort struct {
	proto uint8
	port  uint16
}

func newPeerPolicy(cfg PeerPolicy, selfPorts []selfPort, self *selfSet) *peerPolicy {
	p := &peerPolicy{cfg: cfg, selfPorts: map[selfPort]bool{}, self: &atomic.Pointer[selfSet]{}, relays: newRelaySet()}
	p.self.Store(self)
	for _, sp := range selfPorts {
		if sp.port != 0 {
			p.selfPorts[sp] = true
		}
	}
	return p
}

// withConfig returns a policy with cfg and the same self and relay sets.
func (p *peerPolicy) withConfig(cfg PeerPolicy) *peerPolicy {
	q := *p
	q.cfg = cfg
	return &q
}

// setSelf replaces the own-address set (shared by every policy version).
func (p *peerPolicy) setSelf(s *selfSet) { p.self.Store(s) }

func (p *peerPolicy) addRelay(proto uint8, ap netip.AddrPort)     { p.relays.add(proto, ap) }
func (p *peerPolicy) removeRelay(proto uint8, ap netip.AddrPort)  { p.relays.remove(proto, ap) }
func (p *peerPolicy) isRelay(proto uint8, ap netip.AddrPort) bool { return p.relays.has(proto, ap) }

// checkIP decides on a peer IP alone (CreatePermission, ChannelBind): it
// returns "" when the address may be reached, else the denial reason.
func (p *peerPolicy) checkIP(ip netip.Addr) string {
	return p.check(ip, 0, 0)
}

// checkAddrPort decides on a full peer address and transport (every
// datagram and TCP Connect), which also catches the server's own ports.
func (p *peerPolicy) checkAddrPort(ap netip.AddrPort, proto uint8) string {
	return p.check(ap.Addr(), ap.Port(), proto)
}

func (p *peerPolicy) check(ip netip.Addr, port uint16, proto uint8) string {
	if !ip.IsValid() {
		return denyUnspecified
	}
	ip = ip.Unmap().WithZone("")
	if port != 0 && p.isRelay(proto, netip.AddrPortFrom(ip, port)) {
		return ""
	}
	self := p.self.Load()
	// Every IPv4 address an IPv6 form embeds is judged as that IPv4 address
	// too; the stricter of the two verdicts wins.
	candidates := []netip.Addr{ip}
	if v4, ok := embeddedIPv4(ip); ok {
		candidates = append(candidates, v4)
	}
	for _, a := range candidates {
		if self.isBroadcast(a) {
			return denyBroadcast
		}
		if port != 0 && p.selfPorts[selfPort{proto, port}] && self.isSelf(a) {
			return denySelf
		}
	}
	for _, a := range candidates {
		if r := p.checkOne(a); r != "" {
			return r
		}
	}
	for _, a := range candidates {
		if self.isSelf(a) && !p.opened(a) {
			return denySelf
		}
	}
	return ""
}

// opened reports whether the operator opened the own address ip: only the
// loopback switch does (development). Every other own address stays
// closed on every port but live relay ports, whatever prefixes are allowed.
func (p *peerPolicy) opened(ip netip.Addr) bool {
	return p.cfg.AllowLoopback && ip.IsLoopback()
}

func (p *peerPolicy) checkOne(ip netip.Addr) string {
	for _, pf := range p.cfg.Allowed {
		if pf.Contains(ip) {
			return ""
		}
	}
	for _, pf := range p.cfg.Denied {
		if pf.Contains(ip) {
			return denyOperator
		}
	}
	for _, r := range builtinDenied {
		if !r.prefix.Contains(ip) {
			continue
		}
		switch {
		case r.reason == denyLoopback && p.cfg.AllowLoopback:
			continue
		case r.reason == denyPrivate && p.cfg.AllowPrivate:
			continue
		}
		return r.reason
	}
	return ""
}

// embeddedIPv4 extracts the IPv4 address carried by IPv6 transition forms:
// IPv4-compatible (::a.b.c.d), well-known NAT64 (64:ff9b::/96, RFC 6052)
// and 6to4 (2002:AABB:CCDD::/48). IPv4-mapped
// addresses are unmapped before this is called.
func embeddedIPv4(ip netip.Addr) (netip.Addr, bool) {
	if !ip.Is6() {
		return netip.Addr{}, false
	}
	b := ip.As16()
	last4 := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	switch {
	case isZero(b[:12]) && ip != netip.IPv6Loopback() && ip != netip.IPv6Unspecified():
		return last4, true // IPv4-compatible ::a.b.c.d (deprecated, still routable by some stacks)
	case nat64WellKnown.Contains(ip):
		return last4, true
	case b[0] == 0x20 && b[1] == 0x02:
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	}
	return netip.Addr{}, false
}

var nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96")

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}
