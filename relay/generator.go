package relay

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"

	"github.com/pion/turn/v5"
)

var (
	errNoRelayFamily = errors.New("relay: no relay address for that address family")
	errNoRelayPort   = errors.New("relay: no free relay port in range")
)

// relayTries is how many random ports an allocation tries before giving up
// (pion then answers 508).
const relayTries = 64

// generator is pion's RelayAddressGenerator: it makes the relay sockets of
// new allocations and wraps them so policy, limits and counters apply.
type generator struct {
	s *Server
	// listener is the UDP listener socket whose allocations this generator
	// makes (nil for TCP/TLS listeners): the data plane answers from it.
	listener *serverPacketConn
}

var _ turn.RelayAddressGenerator = generator{}

func (g generator) Validate() error { return nil }

// relayIPs returns the bound and advertised relay IP for a network
// ("udp4", "tcp6", ...).
func (g generator) relayIPs(network string) (bind, adv netip.Addr, err error) {
	s := g.s
	switch network[len(network)-1] {
	case '4':
		bind, adv = s.relayBind4, s.cfg.ExternalIPv4
	case '6':
		bind, adv = s.relayBind6, s.cfg.ExternalIPv6
	}
	if !bind.IsValid() {
		return bind, adv, fmt.Errorf("%w: %s", errNoRelayFamily, network)
	}
	if !adv.IsValid() {
		adv = bind
	}
	return bind, adv, nil
}

func (g generator) ports(requested int) []int {
	if requested != 0 {
		return []int{requested}
	}
	lo, hi := g.s.cfg.MinPort, g.s.cfg.MaxPort
	out := make([]int, relayTries)
	for i := range out {
		out[i] = lo + rand.IntN(hi-lo+1) //nolint:gosec // a port choice, not a secret
	}
	return out
}

func (g generator) register(proto uint8, bind, adv netip.Addr, port int) []netip.AddrPort {
	addrs := []netip.AddrPort{netip.AddrPortFrom(bind, uint16(port))}
	if adv != bind {
		addrs = append(addrs, netip.AddrPortFrom(adv, uint16(port)))
	}
	pol := g.s.policy.Load()
	for _, ap := range addrs {
		pol.addRelay(proto, ap)
	}
	return addrs
}

func (g generator) AllocatePacketConn(conf turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	bind, adv, err := g.relayIPs(conf.Network)
	if err != nil {
		return nil, nil, err
	}
	for _, port := range g.ports(conf.RequestedPort) {
		c, err := g.s.fast.listenRelay(conf.Network, netip.AddrPortFrom(bind, uint16(port)))
		if err != nil {
			continue
		}
		rc, err := newRelayPacketConn(g.s, c, g.s.userBW.forAllocation(conf.UserID, g.s.cfg.MaxBPS),
			g.register(protoUDP, bind, adv, port))
		if err != nil {
			c.Close()
			return nil, nil, err
		}
		rc.fast = g.s.fast.newRelay(rc, g.listener, netip.AddrPortFrom(adv, uint16(port)))
		return rc, &net.UDPAddr{IP: adv.AsSlice(), Port: port}, nil
	}
	return nil, nil, errNoRelayPort
}

func (g generator) AllocateListener(conf turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	bind, adv, err := g.relayIPs(conf.Network)
	if err != nil {
		return nil, nil, err
	}
	lc := net.ListenConfig{Control: reusePortControl}
	for _, port := range g.ports(conf.RequestedPort) {
		ln, err := lc.Listen(context.Background(), conf.Network, net.JoinHostPort(bind.String(), strconv.Itoa(port)))
		if err != nil {
			continue
		}
		rl := &relayListener{
			Listener: ln,
			s:        g.s,
			bw:       g.s.userBW.forAllocation(conf.UserID, g.s.cfg.MaxBPS),
			addrs:    g.register(protoTCP, bind, adv, port),
		}
		return rl, &net.TCPAddr{IP: adv.AsSlice(), Port: port}, nil
	}
	return nil, nil, errNoRelayPort
}

// AllocateConn dials a peer for an RFC 6062 Connect request. pion checks
// permissions first; the policy check here is what stops a Connect to a
// denied peer (pion/turn before v5.0.8 skipped the permission handler for
// TCP, so this stays even though v5.1.1 checks too).
func (g generator) AllocateConn(conf turn.AllocateConnConfig) (net.Conn, error) {
	peer := toAddrPort(conf.RemoteAddr)
	if reason := g.s.policy.Load().checkAddrPort(peer, protoTCP); reason != "" {
		g.s.metrics.policyDenials.WithLabelValues(reason).Inc()
		return nil, fmt.Errorf("%w: %s", errPeerDenied, reason)
	}
	local := toAddrPort(conf.LocalAddr)
	bind, adv, err := g.relayIPs(conf.Network)
	if err != nil {
		return nil, err
	}
	if local.Addr() == adv {
		local = netip.AddrPortFrom(bind, local.Port())
	}
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(local), Control: reusePortControl, Timeout: connectTimeout}
	c, err := d.Dial(conf.Network, conf.RemoteAddr.String())
	if err != nil {
		return nil, err
	}
	return &relayConn{Conn: c, s: g.s, bw: g.s.userBW.forAllocation(conf.UserID, g.s.cfg.MaxBPS)}, nil
}
