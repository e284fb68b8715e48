package relay

import (
	"fmt"
	"net/netip"
	"sync"
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

// relaySet holds live relay addresses (bound and advertised). Relaying
// between two relay addresses of this server is the normal path when both
// peers are relay-only, so it is allowed before any deny rule. It outlives
// policy reloads.
type relaySet struct {
	mu sync.RWMutex
	m  map[netip.AddrPort]int
}

func newRelaySet() *relaySet { return &relaySet{m: map[netip.AddrPort]int{}} }

func (r *relaySet) add(ap netip.AddrPort) {
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	r.mu.Lock()
	r.m[ap]++
	r.mu.Unlock()
}

func (r *relaySet) remove(ap netip.AddrPort) {
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	r.mu.Lock()
	if r.m[ap]--; r.m[ap] <= 0 {
		delete(r.m, ap)
	}
	r.mu.Unlock()
}

func (r *relaySet) has(ap netip.AddrPort) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.m[ap] > 0
}

// peerPolicy is the compiled, immutable form of PeerPolicy plus the
// server's own addresses; reload swaps the whole value.
type peerPolicy struct {
	cfg PeerPolicy

	// selfPorts and selfIPs describe the server's own listening and admin
	// sockets: relaying to them would loop traffic back into turnd.
	selfPorts map[uint16]bool
	selfIPs   func(netip.Addr) bool

	relays *relaySet
}

func newPeerPolicy(cfg PeerPolicy, selfPorts []int, selfIPs func(netip.Addr) bool) *peerPolicy {
	p := &peerPolicy{cfg: cfg, selfPorts: map[uint16]bool{}, selfIPs: selfIPs, relays: newRelaySet()}
	for _, port := range selfPorts {
		if port > 0 && port < 65536 {
			p.selfPorts[uint16(port)] = true
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

func (p *peerPolicy) addRelay(ap netip.AddrPort)     { p.relays.add(ap) }
func (p *peerPolicy) removeRelay(ap netip.AddrPort)  { p.relays.remove(ap) }
func (p *peerPolicy) isRelay(ap netip.AddrPort) bool { return p.relays.has(ap) }

// checkIP decides on a peer IP alone (CreatePermission, ChannelBind): it
// returns "" when the address may be reached, else the denial reason.
func (p *peerPolicy) checkIP(ip netip.Addr) string {
	return p.check(ip, 0)
}

// checkAddrPort decides on a full peer address (every datagram and TCP
// Connect), which also catches the server's own ports.
func (p *peerPolicy) checkAddrPort(ap netip.AddrPort) string {
	return p.check(ap.Addr(), ap.Port())
}

func (p *peerPolicy) check(ip netip.Addr, port uint16) string {
	if !ip.IsValid() {
		return denyUnspecified
	}
	ip = ip.Unmap().WithZone("")
	if port != 0 && p.isRelay(netip.AddrPortFrom(ip, port)) {
		return ""
	}
	if port != 0 && p.selfPorts[port] && p.selfIPs != nil && p.selfIPs(ip) {
		return denySelf
	}
	// Every IPv4 address an IPv6 form embeds is judged as that IPv4 address
	// too; the stricter of the two verdicts wins.
	candidates := []netip.Addr{ip}
	if v4, ok := embeddedIPv4(ip); ok {
		candidates = append(candidates, v4)
		if port != 0 && p.selfPorts[port] && p.selfIPs != nil && p.selfIPs(v4) {
			return denySelf
		}
	}
	for _, a := range candidates {
		if r := p.checkOne(a); r != "" {
			return r
		}
	}
	return ""
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
