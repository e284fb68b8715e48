//go:build linux

package natlab

import (
	"net"
	"net/netip"

	"github.com/rtcsuite/rtcsuite/internal/netlab"
)

// ListenUDP opens a UDP socket on addr inside the namespace of role, from
// this process: a socket belongs to the namespace it was created in, so the
// caller reads and writes it like any other. The lab closes it on Close
// (closing it earlier is fine).
func (l *Lab) ListenUDP(r Role, addr netip.AddrPort) (*net.UDPConn, error) {
	var conn *net.UDPConn
	err := l.inNS(r, func() error {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		conn = c
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := l.onClose(func() error { conn.Close(); return nil }); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// inNS runs f on an OS thread switched into the namespace of role. The
// thread goes back to its own namespace afterwards; if that fails it is
// left locked, and the runtime discards it when the goroutine ends.
func (l *Lab) inNS(r Role, f func() error) error { return inNamespace(l.NS(r), f) }

// inNamespace runs f on an OS thread switched into the named namespace.
func inNamespace(ns string, f func() error) error { return netlab.Do(ns, f) }
