//go:build unix

package relay

import (
	"errors"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// udpSender sends datagrams without ever blocking: relay sends and answers
// to clients run in a listener's only reading goroutine, and a blocking
// send (an address on the server's own subnet that never answers ARP fills
// the socket's send buffer with queued packets) would freeze every client
// of that socket. A full buffer drops the datagram, as a router would.
// This is the hook where a batched (sendmmsg) path can slot in.
type udpSender struct {
	rc syscall.RawConn
	v6 bool // the socket is AF_INET6
}

func newUDPSender(c net.PacketConn) (*udpSender, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, errors.New("relay: relay socket has no raw access")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	ap := toAddrPort(c.LocalAddr())
	return &udpSender{rc: rc, v6: ap.Addr().Is6() && !ap.Addr().Is4In6()}, nil
}

func (u *udpSender) sendTo(p []byte, to netip.AddrPort) error {
	var sa unix.Sockaddr
	if u.v6 {
		sa = &unix.SockaddrInet6{Port: int(to.Port()), Addr: to.Addr().As16()}
	} else {
		if !to.Addr().Unmap().Is4() {
			return errPeerDenied
		}
		sa = &unix.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().Unmap().As4()}
	}
	var serr error
	err := u.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), p, unix.MSG_DONTWAIT, sa)
		return true // never wait for writability
	})
	if err != nil {
		return err
	}
	if errors.Is(serr, unix.EAGAIN) || errors.Is(serr, unix.ENOBUFS) {
		return errWouldBlock
	}
	return serr
}
