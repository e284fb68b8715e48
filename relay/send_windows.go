package relay

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
)

// Winsock errors a full send path reports (winerror.h); package syscall
// does not name them.
const (
	wsaeWouldBlock syscall.Errno = 10035
	wsaeNoBufs     syscall.Errno = 10055
)

// udpSender on Windows writes through Go's poller. Winsock completes a
// UDP send at once or reports it could not queue it, so a send does not
// wait for the network the way a blocking Unix sendto can; that report
// counts as a full buffer (a drop), as on Unix (send_unix.go).
type udpSender struct {
	c  net.PacketConn
	uc *net.UDPConn // nil when c is some other PacketConn
	v6 bool         // the socket is AF_INET6
}

func newUDPSender(c net.PacketConn) (*udpSender, error) {
	if _, ok := c.(syscall.Conn); !ok {
		return nil, errors.New("relay: relay socket has no raw access")
	}
	uc, _ := c.(*net.UDPConn)
	ap := toAddrPort(c.LocalAddr())
	return &udpSender{c: c, uc: uc, v6: ap.Addr().Is6() && !ap.Addr().Is4In6()}, nil
}

func (u *udpSender) sendTo(p []byte, to netip.AddrPort) error {
	if !u.v6 {
		if !to.Addr().Unmap().Is4() {
			return errPeerDenied
		}
		to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	}
	var err error
	if u.uc != nil {
		_, err = u.uc.WriteToUDPAddrPort(p, to)
	} else {
		_, err = u.c.WriteTo(p, net.UDPAddrFromAddrPort(to))
	}
	if errors.Is(err, wsaeWouldBlock) || errors.Is(err, wsaeNoBufs) {
		return errWouldBlock
	}
	return err
}
