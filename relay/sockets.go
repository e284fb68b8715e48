package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// udpSocketBuffer is the SO_RCVBUF/SO_SNDBUF asked for on listener
// sockets (the kernel doubles it and caps it at net.core.rmem_max and
// wmem_max). Every client's traffic funnels into these few sockets, and the
// 208 KiB default holds under a hundred 1200-byte datagrams: a short stall
// of the reading goroutine then drops packets (seen as 10% loss at 200
// flows x 50 pps in bench/relay). coturn asks for the same size.
const udpSocketBuffer = 2 << 20

// listenUDPShared binds n UDP sockets to addr with SO_REUSEPORT. With port
// 0 the first socket picks the port and the rest join it.
func listenUDPShared(addr string, n int) ([]net.PacketConn, error) {
	lc := net.ListenConfig{Control: reusePortControl}
	network := "udp"
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
			network = "udp6"
		} else if ip != nil {
			network = "udp4"
		}
	}
	var conns []net.PacketConn
	for i := 0; i < n; i++ {
		c, err := lc.ListenPacket(context.Background(), network, addr)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, fmt.Errorf("listen udp %s (socket %d of %d): %w", addr, i+1, n, err)
		}
		if uc, ok := c.(*net.UDPConn); ok {
			// Best effort: the kernel caps it silently, and a smaller
			// buffer still works.
			_ = uc.SetReadBuffer(udpSocketBuffer)
			_ = uc.SetWriteBuffer(udpSocketBuffer)
		}
		if i == 0 {
			addr = c.LocalAddr().String()
		}
		conns = append(conns, c)
	}
	// Keep every client IP on one socket (EVEN-PORT reservations live
	// per socket): see steer_linux.go.
	if err := steerBySource(conns); err != nil {
		for _, c := range conns {
			c.Close()
		}
		return nil, fmt.Errorf("listen udp %s: %w", addr, err)
	}
	return conns, nil
}

// serverPacketConn is a UDP listener socket as pion sees it: every datagram
// passes the front door first, and every answer or relayed datagram to a
// client leaves without blocking. A client address is whatever a datagram
// claims, so a spoofed source on the server's own subnet that never answers
// ARP would otherwise fill the socket's send buffer and stall the socket's
// only reading goroutine; a full buffer drops and counts instead.
type serverPacketConn struct {
	net.PacketConn
	front *front
	send  *udpSender
	fast  *listenerFast // the data plane's share (fastpath_listener.go); nil off Linux
}

func newServerPacketConn(s *Server, c net.PacketConn) (*serverPacketConn, error) {
	send, err := newUDPSender(c)
	if err != nil {
		return nil, err
	}
	sc := &serverPacketConn{PacketConn: c, send: send}
	f := &front{s: s, transport: "udp", local: c.LocalAddr(), on: c}
	f.reply = func(b []byte, to net.Addr) error {
		_, err := sc.write(b, to)
		return err
	}
	sc.front = f
	sc.fast = s.fast.newListener(sc)
	if sc.fast != nil {
		if err := sc.fast.startLoop(); err != nil {
			return nil, fmt.Errorf("listener %v: %w", c.LocalAddr(), err)
		}
	}
	return sc, nil
}

// ReadFrom returns the next datagram pion should handle.
func (c *serverPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if c.fast.active() {
		return c.fast.readFrom(p) // batched, forwarding known ChannelData itself
	}
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil {
			return n, addr, err
		}
		if n >= len(p) {
			// Truncated: larger than any valid TURN message we accept.
			c.front.s.metrics.dropped.WithLabelValues(dropMalformed).Inc()
			continue
		}
		if m, ok := c.front.pass(p[:n], addr); ok {
			return m, addr, nil
		}
	}
}

// WriteTo sends pion's answers and relayed data to a client.
func (c *serverPacketConn) WriteTo(b []byte, to net.Addr) (int, error) {
	c.front.observe(b, to)
	if c.fast.active() {
		c.fast.snoopWrite(b, to) // refreshed lifetimes for the data plane
	}
	return c.write(b, to)
}

func (c *serverPacketConn) write(b []byte, to net.Addr) (int, error) {
	switch err := c.send.sendTo(b, toAddrPort(to)); {
	case errors.Is(err, errWouldBlock):
		c.front.s.metrics.dropped.WithLabelValues(dropSendBuffer).Inc()
		return len(b), nil
	case err != nil:
		return 0, err
	}
	return len(b), nil
}
