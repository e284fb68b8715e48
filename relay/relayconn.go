package relay

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// errPeerDenied is returned for relay traffic to a peer the policy refuses.
var errPeerDenied = errors.New("relay: peer address denied by policy")

// relayPacketConn is one UDP allocation's relay socket. Every datagram
// leaving it is checked against the peer policy (permissions alone are per
// IP and were granted under the policy of their time), counted, and held to
// the allocation's and user's bandwidth limits.
type relayPacketConn struct {
	net.PacketConn
	send  *udpSender
	s     *Server
	bw    *bandwidth
	addrs []netip.AddrPort // registered in the relay set

	// The peer last allowed, under which policy: a call usually talks to
	// one peer, so the policy walk runs once per peer, not per packet.
	lastPeer   netip.AddrPort
	lastPolicy *peerPolicy

	// fast is the allocation's share of the data plane
	// (fastpath_relay.go): bindings, live permissions, the read loop.
	fast *relayFast

	closeOnce sync.Once
}

func newRelayPacketConn(s *Server, c net.PacketConn, bw *bandwidth, addrs []netip.AddrPort) (*relayPacketConn, error) {
	send, err := newUDPSender(c)
	if err != nil {
		for _, ap := range addrs {
			s.policy.Load().removeRelay(protoUDP, ap)
		}
		bw.release()
		return nil, err
	}
	return &relayPacketConn{PacketConn: c, send: send, s: s, bw: bw, addrs: addrs}, nil
}

func toAddrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort()
	case *net.TCPAddr:
		return a.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// WriteTo sends client data to a peer.
func (c *relayPacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ap := toAddrPort(addr)
	if c.fast != nil && !c.fast.permitted(ap.Addr()) {
		// pion sends channel data on channel existence alone; RFC 8656
		// needs a live permission.
		c.s.metrics.dropped.WithLabelValues(dropNoPermission).Inc()
		return len(p), nil
	}
	pol := c.s.policy.Load()
	if ap != c.lastPeer || pol != c.lastPolicy {
		if reason := pol.checkAddrPort(ap, protoUDP); reason != "" {
			c.s.metrics.policyDenials.WithLabelValues(reason).Inc()
			return 0, errPeerDenied
		}
		c.lastPeer, c.lastPolicy = ap, pol
	}
	// A nil c.bw (no limits) allows everything: skip the clock read.
	if c.bw != nil && !c.bw.allowOut(len(p), time.Now()) {
		c.s.metrics.dropped.WithLabelValues(dropBandwidth).Inc()
		return len(p), nil // data has no error response: shaping is dropping
	}
	switch err := c.send.sendTo(p, ap); {
	case errors.Is(err, errWouldBlock):
		c.s.metrics.dropped.WithLabelValues(dropSendBuffer).Inc()
		return len(p), nil
	case err != nil:
		return 0, err
	}
	c.s.metrics.pktsC2P.Inc()
	c.s.metrics.bytesC2P.Add(float64(len(p)))
	return len(p), nil
}

// ReadFrom receives peer data for the client.
func (c *relayPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if c.fast != nil {
		return c.fast.readFrom(p)
	}
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil {
			return n, addr, err
		}
		if c.bw != nil && !c.bw.allowIn(n, time.Now()) {
			c.s.metrics.dropped.WithLabelValues(dropBandwidth).Inc()
			continue
		}
		c.s.metrics.pktsP2C.Inc()
		c.s.metrics.bytesP2C.Add(float64(n))
		return n, addr, nil
	}
}

func (c *relayPacketConn) Close() error {
	c.closeOnce.Do(func() {
		if c.fast != nil {
			c.fast.close() // bindings go before the socket does
		}
		for _, ap := range c.addrs {
			c.s.policy.Load().removeRelay(protoUDP, ap)
		}
		if c.s.fast != nil {
			c.s.fast.relayGen.Add(1) // cached relay-to-relay verdicts are stale
		}
		c.bw.release()
	})
	return c.PacketConn.Close()
}

// relayListener is a TCP allocation's relay listener (RFC 6062): peers
// connect in; inbound connections are counted and limited like datagrams.
type relayListener struct {
	net.Listener
	s         *Server
	bw        *bandwidth
	addrs     []netip.AddrPort
	closeOnce sync.Once
}

// Accept returns the next peer connection. Like the control listeners it
// retries errors with back-off (pion's accept loop for the allocation ends
// at the first error) and returns one only once the listener is closed.
func (l *relayListener) Accept() (net.Conn, error) {
	delay := acceptBackoffMin
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			return &relayConn{Conn: c, s: l.s, bw: l.bw.share()}, nil
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		l.s.metrics.acceptErrors.Inc()
		select {
		case <-time.After(delay):
		case <-l.s.stop:
			return nil, err
		}
		delay = min(2*delay, acceptBackoffMax)
	}
}

func (l *relayListener) Close() error {
	l.closeOnce.Do(func() {
		for _, ap := range l.addrs {
			l.s.policy.Load().removeRelay(protoTCP, ap)
		}
		l.bw.release()
	})
	return l.Listener.Close()
}

// relayConn is one RFC 6062 peer data connection.
type relayConn struct {
	net.Conn
	s         *Server
	bw        *bandwidth
	closeOnce sync.Once
}

func (c *relayConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.bw.waitIn(n) // TCP can be shaped: wait rather than drop
		c.s.metrics.pktsP2C.Inc()
		c.s.metrics.bytesP2C.Add(float64(n))
	}
	return n, err
}

func (c *relayConn) Write(p []byte) (int, error) {
	c.bw.waitOut(len(p))
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.s.metrics.pktsC2P.Inc()
		c.s.metrics.bytesC2P.Add(float64(n))
	}
	return n, err
}

func (c *relayConn) Close() error {
	c.closeOnce.Do(c.bw.release)
	return c.Conn.Close()
}
