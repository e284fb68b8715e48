//go:build linux

package e2e

import (
	"context"
	"net"
	"net/http"

	"github.com/pion/transport/v4"
	"github.com/pion/transport/v4/stdnet"

	"github.com/rtcsuite/rtcsuite/internal/netlab"
)

// turnd_nsNet is pion's network stack inside one network namespace: every
// socket pion opens is created on a thread switched into ns (a socket stays
// in the namespace it was created in), and the interface list is the
// namespace's. In-process pion peers can then sit in a lab namespace.
type turnd_nsNet struct {
	*stdnet.Net
	ns string
}

var _ transport.Net = (*turnd_nsNet)(nil)

func turnd_newNSNet(ns string) (*turnd_nsNet, error) {
	var std *stdnet.Net
	err := netlab.Do(ns, func() (err error) {
		std, err = stdnet.NewNet()
		return err
	})
	if err != nil {
		return nil, err
	}
	return &turnd_nsNet{Net: std, ns: ns}, nil
}

func (n *turnd_nsNet) ListenPacket(network, address string) (c net.PacketConn, err error) {
	err = netlab.Do(n.ns, func() (err error) { c, err = n.Net.ListenPacket(network, address); return err })
	return c, err
}

func (n *turnd_nsNet) ListenUDP(network string, laddr *net.UDPAddr) (c transport.UDPConn, err error) {
	err = netlab.Do(n.ns, func() (err error) { c, err = n.Net.ListenUDP(network, laddr); return err })
	return c, err
}

func (n *turnd_nsNet) ListenTCP(network string, laddr *net.TCPAddr) (l transport.TCPListener, err error) {
	err = netlab.Do(n.ns, func() (err error) { l, err = n.Net.ListenTCP(network, laddr); return err })
	return l, err
}

func (n *turnd_nsNet) Dial(network, address string) (c net.Conn, err error) {
	err = netlab.Do(n.ns, func() (err error) { c, err = n.Net.Dial(network, address); return err })
	return c, err
}

func (n *turnd_nsNet) DialUDP(network string, laddr, raddr *net.UDPAddr) (c transport.UDPConn, err error) {
	err = netlab.Do(n.ns, func() (err error) { c, err = n.Net.DialUDP(network, laddr, raddr); return err })
	return c, err
}

func (n *turnd_nsNet) DialTCP(network string, laddr, raddr *net.TCPAddr) (c transport.TCPConn, err error) {
	err = netlab.Do(n.ns, func() (err error) { c, err = n.Net.DialTCP(network, laddr, raddr); return err })
	return c, err
}

func (n *turnd_nsNet) CreateDialer(d *net.Dialer) transport.Dialer {
	return turnd_nsDialer{d: d, ns: n.ns}
}

func (n *turnd_nsNet) CreateListenConfig(lc *net.ListenConfig) transport.ListenConfig {
	return turnd_nsListenConfig{lc: lc, ns: n.ns}
}

type turnd_nsDialer struct {
	d  *net.Dialer
	ns string
}

func (d turnd_nsDialer) Dial(network, address string) (c net.Conn, err error) {
	err = netlab.Do(d.ns, func() (err error) { c, err = d.d.Dial(network, address); return err })
	return c, err
}

type turnd_nsListenConfig struct {
	lc *net.ListenConfig
	ns string
}

func (l turnd_nsListenConfig) Listen(ctx context.Context, network, address string) (ln net.Listener, err error) {
	err = netlab.Do(l.ns, func() (err error) { ln, err = l.lc.Listen(ctx, network, address); return err })
	return ln, err
}

func (l turnd_nsListenConfig) ListenPacket(ctx context.Context, network, address string) (c net.PacketConn, err error) {
	err = netlab.Do(l.ns, func() (err error) { c, err = l.lc.ListenPacket(ctx, network, address); return err })
	return c, err
}

// turnd_nsHTTPClient is an HTTP client whose connections are made inside
// namespace ns (to reach an admin endpoint bound to that namespace's
// loopback).
func turnd_nsHTTPClient(ns string) *http.Client {
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = netlab.Do(ns, func() (err error) {
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}
	return &http.Client{Transport: tr}
}
