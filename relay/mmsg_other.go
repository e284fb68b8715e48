//go:build !linux

package relay

import (
	"context"
	"errors"
	"net"
	"net/netip"
)

// The portable fallback of mmsg_linux.go: no batching and no shortcut
// (fastPathSupported is false, so pion carries every packet), but the
// relay read loop still enforces permissions and relays datagrams larger
// than pion's buffer.

const fastPathSupported = false

const slotSize = 1 << 16

const batchSlots = 1

type sockaddr struct{ ap netip.AddrPort }

type udpSock struct {
	c   *net.UDPConn
	raw *rawUDP
}

type rawUDP struct{}

func newUDPSock(c *net.UDPConn) (*udpSock, error) { return &udpSock{c: c}, nil }

func (u *udpSock) sockaddrFor(ap netip.AddrPort) (sockaddr, bool) { return sockaddr{ap}, true }

type nbSender struct{}

func newNBSender() *nbSender { return &nbSender{} }

// sendTo may block here: without MSG_DONTWAIT semantics the portable path
// behaves as pion's own writes do.
func (s *nbSender) sendTo(sock *udpSock, b []byte, to *sockaddr) error {
	_, err := sock.c.WriteToUDPAddrPort(b, to.ap)
	return err
}

// sendRaw is never called off Linux: there is no rawUDP socket.
func (s *nbSender) sendRaw(*rawUDP, []byte, *sockaddr) error { return errors.ErrUnsupported }

// batchReader is never built off Linux (the listener shortcut is off).
type batchReader struct {
	n       int
	process func(k int) bool
	idle    func()
}

func newBatchReader(*net.UDPConn) (*batchReader, error) { return nil, errors.ErrUnsupported }

func (r *batchReader) read() (int, error) { return 0, errors.ErrUnsupported }

func (r *batchReader) msg(int) ([]byte, netip.AddrPort, bool) { return nil, netip.AddrPort{}, false }

type pktReader struct {
	sock   *udpSock
	buf    []byte
	handle func([]byte, netip.AddrPort) bool
	idle   func()
}

func newPktReader(sock *udpSock, handle func([]byte, netip.AddrPort) bool, idle func()) *pktReader {
	return &pktReader{sock: sock, buf: make([]byte, 4+slotSize+3), handle: handle, idle: idle}
}

func (r *pktReader) read() ([]byte, netip.AddrPort, error) {
	for {
		r.idle()
		n, src, err := r.sock.c.ReadFromUDPAddrPort(r.buf[4:])
		if err != nil {
			return nil, src, err
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		if r.handle(r.buf[:4+n], src) {
			return r.buf[:4+n], src, nil
		}
	}
}

func rawSock(net.PacketConn) *udpSock { return nil }

func (fp *fastPath) startLoops(int) {}
func (fp *fastPath) stopLoops()     {}
func (fp *fastPath) listenRelay(network string, ap netip.AddrPort) (net.PacketConn, error) {
	return new(net.ListenConfig).ListenPacket(context.Background(), network, ap.String())
}
func (fp *fastPath) attachLoop(*relayFast) error { return errors.ErrUnsupported }

type relayLoop struct{}

// sendBatch is the relay loops' sendmmsg batch (loopsend_linux.go); off
// Linux a relay socket's reader sends each datagram itself.
type sendBatch struct{}

// add is never called: relayFast.out stays nil without relay loops.
func (*sendBatch) add(*udpSock, *sockaddr, *binding, []byte) {}

// c2pRun is the relay loops' client→peer run (loopsend_linux.go); off
// Linux forwardAt always gets nil.
type c2pRun struct{}

func (*c2pRun) add(*binding, []byte, *nbSender, *counts) {}

func (fp *fastPath) adoptListeners(pcs []net.PacketConn) []net.PacketConn { return pcs }

func loopListenerSock(net.PacketConn) *udpSock { return nil }

func (l *listenerFast) startLoop() error { return nil }

func (l *listenerFast) popForPion() ([]byte, netip.AddrPort, error) {
	return nil, netip.AddrPort{}, errors.ErrUnsupported
}
