//go:build linux

package relay

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The data plane's system calls, written against golang.org/x/sys/unix so
// that nothing allocates per datagram: golang.org/x/net's ReadBatch builds
// a net.IP and a *net.UDPAddr for every message, and net.UDPConn's writes
// block when the socket buffer is full. Every call goes through the
// socket's syscall.RawConn, which holds a reference on the descriptor, so a
// concurrent Close can never leave us writing to a reused descriptor.

// batchSlots is how many datagrams one recvmmsg may return. coturn measured
// 11-16 of 16 slots filled under load; 32 leaves headroom for bursts.
const batchSlots = 32

// slotSize holds the largest UDP payload (65,507 bytes over IPv4, 65,527
// over IPv6 without jumbograms) so no datagram is ever cut.
const slotSize = 1 << 16

// sockaddr is a raw socket address in the family of the socket it is sent
// from, built once per binding so sends need no conversion.
type sockaddr struct {
	raw unix.RawSockaddrInet6 // large enough for sockaddr_in too
	len uint32
}

// makeSockaddr encodes ap for a socket of family (AF_INET or AF_INET6).
// IPv4 addresses on an AF_INET6 socket become v4-mapped.
func makeSockaddr(ap netip.AddrPort, family int) (sockaddr, bool) {
	var sa sockaddr
	port := ap.Port()
	addr := ap.Addr()
	switch family {
	case unix.AF_INET:
		addr = addr.Unmap()
		if !addr.Is4() {
			return sa, false
		}
		r4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa.raw))
		r4.Family = unix.AF_INET
		r4.Port = htons(port)
		r4.Addr = addr.As4()
		sa.len = unix.SizeofSockaddrInet4
	case unix.AF_INET6:
		sa.raw.Family = unix.AF_INET6
		sa.raw.Port = htons(port)
		sa.raw.Addr = addr.As16()
		sa.len = unix.SizeofSockaddrInet6
	default:
		return sa, false
	}
	return sa, true
}

func htons(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	b[0], b[1] = byte(p>>8), byte(p)
	return p
}

func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// parseSockaddr decodes a received source address, unmapping v4-mapped
// IPv6 so every table key has one form.
func parseSockaddr(raw *unix.RawSockaddrInet6) netip.AddrPort {
	switch raw.Family {
	case unix.AF_INET:
		r4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(raw))
		return netip.AddrPortFrom(netip.AddrFrom4(r4.Addr), ntohs(r4.Port))
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(raw.Addr).Unmap(), ntohs(raw.Port))
	}
	return netip.AddrPort{}
}

// fastPathSupported: the batching data plane runs on Linux.
const fastPathSupported = true

// udpSock is a UDP socket the data plane sends from: a net.UDPConn, or a
// relay loop's raw socket.
type udpSock struct {
	c      *net.UDPConn
	rc     syscall.RawConn
	raw    *rawUDP
	family int // AF_INET or AF_INET6
}

func newUDPSock(c *net.UDPConn) (*udpSock, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	s := &udpSock{c: c, rc: rc}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		s.family, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	return s, nil
}

// sockaddrFor encodes ap for sending from this socket.
func (u *udpSock) sockaddrFor(ap netip.AddrPort) (sockaddr, bool) {
	return makeSockaddr(ap, u.family)
}

// nbSender sends datagrams without ever waiting for buffer space: a full
// socket buffer drops the datagram (errSendFull). One nbSender belongs to
// one goroutine; its method value is made once, so a send allocates
// nothing.
type nbSender struct {
	buf []byte
	to  *sockaddr
	err error
	fn  func(fd uintptr) bool
}

var errSendFull = errors.New("relay: socket send buffer full")

func newNBSender() *nbSender {
	s := &nbSender{}
	s.fn = s.send
	return s
}

func (s *nbSender) send(fd uintptr) bool {
	var p unsafe.Pointer
	if len(s.buf) > 0 {
		p = unsafe.Pointer(&s.buf[0])
	}
	// Raw: MSG_DONTWAIT never blocks, and entersyscall would wake an idle
	// sysmon (relayLoop.serve).
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(p), uintptr(len(s.buf)),
		unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&s.to.raw)), uintptr(s.to.len))
	switch e {
	case 0:
		s.err = nil
	case unix.EAGAIN:
		s.err = errSendFull
	default:
		s.err = e
	}
	return true // never wait for writability: a relay drops instead
}

// sendTo sends b to `to` from sock and reports the outcome.
func (s *nbSender) sendTo(sock *udpSock, b []byte, to *sockaddr) error {
	if c := sock.raw; c != nil {
		return s.sendRaw(c, b, to)
	}
	s.buf, s.to = b, to
	if err := sock.rc.Write(s.fn); err != nil {
		s.buf, s.to = nil, nil
		return err
	}
	s.buf, s.to = nil, nil
	return s.err
}

// sendRaw is sendTo for a socket outside Go's poller (sock.raw).
func (s *nbSender) sendRaw(c *rawUDP, b []byte, to *sockaddr) error {
	s.buf, s.to = b, to
	c.mu.RLock()
	if c.closed {
		s.err = errRawClosed
	} else {
		s.send(uintptr(c.fd))
	}
	c.mu.RUnlock()
	s.buf, s.to = nil, nil
	return s.err
}

// batchReader reads up to batchSlots datagrams per recvmmsg call from one
// socket. It belongs to the socket's single reading goroutine.
//
// Each batch is handed to process inside the poller callback; a batch
// process consumed entirely is not returned. A short batch means the
// socket was drained, so the reader parks at once instead of spending a
// system call on EAGAIN (the poller is edge-triggered and re-arms on every
// arrival after the recvmmsg). idle runs before parking.
type batchReader struct {
	rc      syscall.RawConn
	hdrs    []unix.Mmsghdr
	iovs    []unix.Iovec
	names   []unix.RawSockaddrInet6
	bufs    [][]byte
	n       int // messages in the batch returned by read
	err     error
	fn      func(fd uintptr) bool
	process func(k int) (deliver bool)
	idle    func()
}

func newBatchReader(c *net.UDPConn) (*batchReader, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	r := &batchReader{
		rc:    rc,
		hdrs:  make([]unix.Mmsghdr, batchSlots),
		iovs:  make([]unix.Iovec, batchSlots),
		names: make([]unix.RawSockaddrInet6, batchSlots),
		bufs:  make([][]byte, batchSlots),
	}
	// One backing array: its pages only become resident as large
	// datagrams arrive.
	backing := make([]byte, batchSlots*slotSize)
	for i := range r.hdrs {
		r.bufs[i] = backing[i*slotSize : (i+1)*slotSize : (i+1)*slotSize]
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(slotSize)
		r.hdrs[i].Hdr.Iov = &r.iovs[i]
		r.hdrs[i].Hdr.SetIovlen(1)
		r.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
	}
	r.fn = r.recv
	return r, nil
}

func (r *batchReader) recv(fd uintptr) bool {
	for i := range r.hdrs {
		r.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		r.hdrs[i].Hdr.Flags = 0
		r.hdrs[i].Len = 0
	}
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])),
			uintptr(len(r.hdrs)), 0, 0, 0)
		switch e {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			r.idle()
			return false // park on the poller until readable
		default:
			r.n, r.err = 0, e
			return true
		}
		k := int(n)
		if r.process(k) {
			r.n, r.err = k, nil
			return true
		}
		if k < len(r.hdrs) {
			r.idle()
			return false
		}
		for i := range r.hdrs {
			r.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
			r.hdrs[i].Hdr.Flags = 0
			r.hdrs[i].Len = 0
		}
	}
}

// read blocks until at least one datagram is available and returns how
// many the batch holds.
func (r *batchReader) read() (int, error) {
	if err := r.rc.Read(r.fn); err != nil {
		return 0, err
	}
	return r.n, r.err
}

// msg returns datagram i of the last batch: payload, source, and whether
// the kernel cut it (it never should with slotSize buffers).
func (r *batchReader) msg(i int) ([]byte, netip.AddrPort, bool) {
	h := &r.hdrs[i]
	return r.bufs[i][:h.Len], parseSockaddr(&r.names[i]), h.Hdr.Flags&unix.MSG_TRUNC != 0
}

// smallSlot is the part of a relay socket's datagram read into the
// allocation's own buffer; larger datagrams (rare: media stays under the
// path MTU) spill into a pooled 64 KiB buffer borrowed only for the
// duration of the system call, so an idle allocation holds 2 KiB, not 64.
const smallSlot = 2048

var overflowPool = sync.Pool{New: func() any { b := make([]byte, slotSize); return &b }}

// pktReader reads a relay socket two datagrams per recvmmsg, leaving room
// for a ChannelData header in front of each. Each datagram is handed to
// handle inside the poller callback; those handle returns true for are
// returned by read. A short batch means the socket was drained, so the
// reader parks without an EAGAIN call; idle runs before parking, so
// tallies reach the metrics once per burst rather than per packet.
type pktReader struct {
	sock   *udpSock
	bufs   [pktSlots][]byte // 4 header bytes, smallSlot payload bytes, 3 padding bytes
	names  [pktSlots]unix.RawSockaddrInet6
	hdrs   [pktSlots]unix.Mmsghdr
	iovs   [pktSlots][2]unix.Iovec
	handle func(frame []byte, src netip.AddrPort) (deliver bool)
	idle   func()
	out    [pktSlots]struct {
		frame []byte
		src   netip.AddrPort
	}
	nout, next int
	err        error
	fn         func(fd uintptr) bool
}

const pktSlots = 2

func newPktReader(sock *udpSock, handle func([]byte, netip.AddrPort) bool, idle func()) *pktReader {
	r := &pktReader{sock: sock, handle: handle, idle: idle}
	backing := make([]byte, pktSlots*(4+smallSlot+3))
	for i := range r.hdrs {
		r.bufs[i] = backing[i*(4+smallSlot+3) : (i+1)*(4+smallSlot+3) : (i+1)*(4+smallSlot+3)]
		r.iovs[i][0].Base = &r.bufs[i][4]
		r.iovs[i][0].SetLen(smallSlot)
		r.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		r.hdrs[i].Hdr.Iov = &r.iovs[i][0]
		r.hdrs[i].Hdr.SetIovlen(2)
	}
	r.fn = r.recv
	return r
}

func (r *pktReader) recv(fd uintptr) bool {
	var big [pktSlots]*[]byte
	for i := range big {
		big[i] = overflowPool.Get().(*[]byte)
		r.iovs[i][1].Base = &(*big[i])[0]
		r.iovs[i][1].SetLen(len(*big[i]))
	}
	defer func() {
		for i := range big {
			r.iovs[i][1].Base = nil // the pool may hand it to someone else now
			overflowPool.Put(big[i])
		}
	}()
	for {
		for i := range r.hdrs {
			r.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
			r.hdrs[i].Hdr.Flags = 0
			r.hdrs[i].Len = 0
		}
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), pktSlots,
			unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			r.idle()
			return false
		default:
			r.err = e
			return true
		}
		k := int(n)
		for i := 0; i < k; i++ {
			size := int(r.hdrs[i].Len)
			frame := r.bufs[i][:4+min(size, smallSlot)]
			if size > smallSlot {
				// Spilled: join the parts (allocates; large datagrams only).
				joined := make([]byte, 4+size, 4+size+3)
				copy(joined[4:], r.bufs[i][4:4+smallSlot])
				copy(joined[4+smallSlot:], (*big[i])[:size-smallSlot])
				frame = joined
			}
			src := parseSockaddr(&r.names[i])
			if r.handle(frame, src) {
				r.out[r.nout].frame, r.out[r.nout].src = frame, src
				r.nout++
			}
		}
		if r.nout > 0 {
			return true
		}
		if k < pktSlots {
			r.idle()
			return false
		}
	}
}

// read returns the next datagram handle left for pion: payload at
// frame[4:], stable until the following read.
func (r *pktReader) read() ([]byte, netip.AddrPort, error) {
	for r.next >= r.nout {
		r.next, r.nout = 0, 0
		if err := r.sock.rc.Read(r.fn); err != nil {
			return nil, netip.AddrPort{}, err
		}
		if r.err != nil {
			return nil, netip.AddrPort{}, r.err
		}
	}
	o := &r.out[r.next]
	r.next++
	return o.frame, o.src, nil
}

// rawSock wraps a relay loop's socket for sending.
func rawSock(pc net.PacketConn) *udpSock {
	c, ok := pc.(*rawUDP)
	if !ok {
		return nil
	}
	return &udpSock{raw: c, family: c.family}
}
