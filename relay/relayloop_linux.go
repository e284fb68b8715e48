//go:build linux

package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Relay sockets of the fast path are read by a few event loops instead of
// one goroutine each. With a goroutine per allocation every peer datagram
// costs a Go scheduler wake-up (20% of turnd's CPU at 300 flows, more at
// 10); a loop takes every ready socket of one epoll wait in one wake-up, as
// coturn's relay threads do.
//
// The sockets are made with raw system calls and never registered with Go's
// poller: registered, every datagram would also wake the poller for a
// goroutine that is not waiting. rawUDP gives pion the net.PacketConn it
// needs; pion's per-allocation goroutine only receives, through a queue,
// the datagrams the fast path leaves to it (Data indications).

// rawUDP is a relay socket outside Go's poller.
type rawUDP struct {
	// Every datagram's send or read takes mu and reads fd, closed and
	// (a loop's read) loop: they share the first cache line, and the
	// padding below makes the struct a size class that keeps it one.
	mu     sync.RWMutex // read-held by every user of fd; Close write-holds it
	fd     int
	loop   *relayLoop // the loop that reads it; changes under mu (loopspread_linux.go)
	closed bool

	family  int
	local   *net.UDPAddr
	done    chan struct{}
	q       pionQueue // datagrams for pion
	key     sockKey   // in loop.socks
	slot    uint32    // picks its loop while the loops are spread (loopFor)
	adopted bool      // a listener socket the loops read (adoptListeners)

	_ [56]byte // to 192 bytes, a size class of three cache lines (TestRawUDPLayout)
}

type rawPkt struct {
	b   []byte
	src netip.AddrPort
}

func listenRawUDP(network string, ap netip.AddrPort) (*rawUDP, error) {
	family := unix.AF_INET
	if network == "udp6" {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("relay socket: %w", err)
	}
	if family == unix.AF_INET6 {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
	}
	// Peers burst into one socket each; the 208 KiB default drops a video
	// keyframe's worth of datagrams on a short stall (coturn #1902).
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, udpSocketBuffer)
	sa, ok := makeSockaddr(ap, family)
	if !ok {
		unix.Close(fd)
		return nil, fmt.Errorf("relay socket: %v is not %s", ap, network)
	}
	if _, _, e := unix.Syscall(unix.SYS_BIND, uintptr(fd), uintptr(unsafe.Pointer(&sa.raw)), uintptr(sa.len)); e != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("relay socket bind %v: %w", ap, e)
	}
	c := &rawUDP{fd: fd, family: family, done: make(chan struct{}), q: newPionQueue()}
	if got, err := unix.Getsockname(fd); err == nil {
		switch a := got.(type) {
		case *unix.SockaddrInet4:
			c.local = &net.UDPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
		case *unix.SockaddrInet6:
			c.local = &net.UDPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
		}
	}
	if c.local == nil {
		c.local = net.UDPAddrFromAddrPort(ap)
	}
	return c, nil
}

var errRawClosed = net.ErrClosed

// ReadFrom returns the next datagram the fast path left for pion.
func (c *rawUDP) ReadFrom(p []byte) (int, net.Addr, error) {
	pk, ok := c.q.pop(c.done)
	if !ok {
		return 0, nil, errRawClosed
	}
	return copy(p, pk.b), net.UDPAddrFromAddrPort(pk.src), nil
}

// WriteTo sends without waiting: a full buffer drops (pion's path: Send
// indications and channel data the fast path did not take).
func (c *rawUDP) WriteTo(p []byte, addr net.Addr) (int, error) {
	sa, ok := makeSockaddr(unmapAP(toAddrPort(addr)), c.family)
	if !ok {
		return 0, fmt.Errorf("relay: cannot send to %v from %v", addr, c.local)
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return 0, errRawClosed
	}
	var base unsafe.Pointer
	if len(p) > 0 {
		base = unsafe.Pointer(&p[0])
	}
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(c.fd), uintptr(base), uintptr(len(p)),
		unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&sa.raw)), uintptr(sa.len))
	switch e {
	case 0:
		return len(p), nil
	case unix.EAGAIN:
		return 0, errSendFull
	}
	return 0, e
}

func (c *rawUDP) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	if c.loop != nil {
		c.loop.remove(c)
	}
	err := unix.Close(c.fd)
	c.mu.Unlock()
	close(c.done)
	return err
}

func (c *rawUDP) LocalAddr() net.Addr                { return c.local }
func (c *rawUDP) SetDeadline(t time.Time) error      { return nil }
func (c *rawUDP) SetReadDeadline(t time.Time) error  { return nil }
func (c *rawUDP) SetWriteDeadline(t time.Time) error { return nil }

// loopSlots is how many datagrams one recvmmsg takes from a ready socket.
const loopSlots = 8

// relayLoop reads a set of relay sockets.
//
// Its sockets are registered with an epoll instance of its own, and that
// epoll descriptor is registered with Go's poller (an epoll descriptor is
// readable while it has ready events). The loop's goroutine takes every
// ready socket with non-blocking epoll_wait calls while they keep finding
// some, then parks in Go's poller until the descriptor is readable again.
// So an idle loop holds no P and no thread: a burst of datagrams wakes the
// thread blocked in Go's netpoll, which runs the loop's goroutine itself
// (findRunnable returns the goroutine netpoll readied; no other thread is
// woken for one ready loop). A busy loop never parks and runs like a
// blocking event loop: one wake-up serves every ready socket, as in
// coturn's relay threads. The sockets are edge-triggered and every ready
// one is drained to empty, and Go's poller watches the epoll descriptor
// edge-triggered too: a datagram arriving after the last empty epoll_wait
// makes the descriptor readable again, so parking loses no wake-up. Close
// wakes the loop through an eventfd in its epoll set. Which loop reads
// which socket: loopspread_linux.go.
type relayLoop struct {
	fp   *fastPath
	idx  int // in fp.loops
	epfd int
	gate int      // -1 without raw waits; else the epoll set Go's poller watches, holding epfd while the loop parks (rawwait_linux.go)
	epf  *os.File // gate (or epfd without one), registered with Go's poller
	wait syscall.RawConn
	efd  int // eventfd: written once by close, ends the loop

	rawMS      atomic.Int64 // bound of a raw wait in ms, 0 without raw waits; tests change it
	rawWaits   atomic.Int64 // raw waits begun (tests)
	rawWakes   atomic.Int64 // raw waits that returned events (tests)
	rawSignals atomic.Int64 // raw waits a signal ended (tests)
	rawHanded  atomic.Int64 // raw waits skipped: the loop had readied a goroutine (tests)
	rawBusy    atomic.Int64 // raw waits skipped: the loop's last window was busy (tests)

	mu     sync.Mutex
	socks  sockTable
	closed bool // close was called: no epoll_ctl (epfd closes after the loop ends)

	load loopLoad // how busy it is, and moving sockets between loops

	// Owned by the loop goroutine.
	serveFn func(uintptr) bool // l.serve, made once: no allocation per wake-up
	ended   bool               // serve saw the eventfd or a failed epoll_wait
	gated   bool               // epfd is in gate: Go's poller wakes the loop
	handoff bool               // since the last wait the loop may have readied a goroutine (rawwait_linux.go)
	light   lightStreak        // light load windows in a row (rawwait_linux.go)
	slice   sliceGate          // the busy slice (loopslice_linux.go)
	now     int64              // monoNow at the current batch's epoll_wait
	events  []unix.EpollEvent
	later   []*relayFast            // handle's relay sockets, drained after the client-facing ones; cap len(events)
	hdrs    [loopSlots]unix.Mmsghdr // one recvmmsg, aimed at ring[used:]
	iovs    [loopSlots]unix.Iovec
	names   [loopSlots]unix.RawSockaddrInet6
	ring    [ringSlots][]byte // 4 header bytes, slotSize payload bytes, 3 padding bytes each
	used    int               // ring slots holding frames that wait in out
	out     sendBatch
	c2p     c2pRun // client→peer datagrams of one listener batch
	p2c     counts // the drained relay sockets' tallies, added to Prometheus once per batch
}

func newRelayLoop(fp *fastPath, idx int) (*relayLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("relay loop: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("relay loop: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, wakeKey.event(unix.EPOLLIN)); err != nil {
		unix.Close(efd)
		unix.Close(epfd)
		return nil, fmt.Errorf("relay loop: %w", err)
	}
	gate, polled := -1, epfd
	rawMS := rawWaitMS(fp.s.cfg.RawWait)
	if idx == 0 && rawMS > 0 { // only the first loop waits raw (rawwait_linux.go)
		if gate, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
			unix.Close(efd)
			unix.Close(epfd)
			return nil, fmt.Errorf("relay loop gate: %w", err)
		}
		polled = gate
	}
	epf, wait, err := pollable(polled)
	if err != nil { // polled is closed
		unix.Close(efd)
		if gate >= 0 {
			unix.Close(epfd)
		}
		return nil, fmt.Errorf("relay loop: %w", err)
	}
	l := &relayLoop{fp: fp, idx: idx, epfd: epfd, gate: gate, epf: epf, wait: wait, efd: efd,
		events: make([]unix.EpollEvent, 128), later: make([]*relayFast, 0, 128)}
	l.serveFn = l.serve
	if gate >= 0 {
		l.rawMS.Store(rawMS)
	}
	// One backing array: its pages only become resident as datagrams
	// (mostly under 1,500 bytes) arrive.
	const frameSize = 4 + slotSize + 3
	backing := make([]byte, ringSlots*frameSize)
	for i := range l.ring {
		l.ring[i] = backing[i*frameSize : (i+1)*frameSize : (i+1)*frameSize]
	}
	for i := range l.hdrs {
		l.iovs[i].SetLen(slotSize)
		l.hdrs[i].Hdr.Iov = &l.iovs[i]
		l.hdrs[i].Hdr.SetIovlen(1)
		l.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&l.names[i]))
	}
	l.out.init(fp.s.metrics, fp.gso)
	l.c2p.gso = fp.gso
	return l, nil
}

// loopSock is what a loop reads: an allocation's relay socket, or a UDP
// listener socket the loop took over from Go's poller (adoptListeners).
type loopSock struct {
	rf *relayFast
	lf *listenerFast
	st *loopStream // a TCP client connection (tcploop_linux.go)
}

// add starts reading rf's raw socket.
func (l *relayLoop) add(rf *relayFast) error {
	return l.register(rf.sock.raw, loopSock{rf: rf})
}

// addListener starts reading a listener socket (lf.sock.raw).
func (l *relayLoop) addListener(lf *listenerFast) error {
	return l.register(lf.sock.raw, loopSock{lf: lf})
}

func (l *relayLoop) register(c *rawUDP, ls loopSock) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return errNoLoop
	}
	k := l.socks.add(ls)
	c.loop, c.key = l, k
	err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, c.fd, k.event(unix.EPOLLIN|unix.EPOLLET))
	if err != nil {
		l.socks.remove(k)
		c.loop = nil
	}
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("relay loop: %w", err)
	}
	return nil
}

// remove stops reading c; called by c.Close with c.mu held.
func (l *relayLoop) remove(c *rawUDP) {
	l.mu.Lock()
	if !l.closed {
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	}
	l.socks.remove(c.key)
	l.mu.Unlock()
}

// run serves until close; the caller releases the descriptors after it
// returns (closeFDs).
func (l *relayLoop) run() {
	for !l.ended {
		// serve returns false when the epoll set is empty: Read parks the
		// goroutine in Go's poller until epfd is readable, then calls it again.
		if err := l.wait.Read(l.serveFn); err != nil {
			l.fp.s.log.Error("relay event loop stopped", "err", err)
			return
		}
	}
}

// afterDrain, when set (tests), runs where serve has found the epoll set
// empty and is about to park.
var afterDrain atomic.Pointer[func()]

// drainOrder, when set (tests), sees every socket handle drains, just
// before it drains it.
var drainOrder atomic.Pointer[func(loopSock)]

// serve handles ready sockets until an epoll_wait that does not block
// finds none (false: wait for epfd), or until close (true, l.ended).
//
// Parking after that empty epoll_wait loses no wake-up: every socket
// handle drains is edge-triggered and read until a recvmmsg comes back
// short (the socket was empty at that instant), a stream until EAGAIN or
// re-armed with EPOLL_CTL_MOD (which queues an event of its own); a
// datagram that arrives later adds its socket to the epoll set's ready
// list, which wakes every waiter on epfd itself; Go's poller watches epfd
// edge-triggered, so that is a new event for it, and internal/poll's
// RawRead keeps a readiness that arrives while serve runs (prepareRead
// resets it once, before the first serve), so the wait that follows
// returns at once or the next netpoll readies the loop
// (TestRelayLoopNoLostWakeup).
//
// The empty epoll_wait is a system call per wake-up that parking without it
// would save when a wake-up found few sockets (their drains prove them
// empty, and fewer events than len(events) means none was left
// unreported). Measured on loopback it costs more than it saves: the peer
// that a client→peer sendto wakes often runs on the sending CPU at once
// and answers before the loop gets back, and this epoll_wait then serves
// the answer in the same wake-up, where parking would pay a second one
// (docs/benchmarks.md, fourth pass).
//
// With raw waits on (Config.RawWait, the default), before it parks, the
// first loop may block in its own epoll set through a raw epoll_pwait
// for up to Config.RawWait (waitRaw, rawwait_linux.go, which states the
// contract): only with GOMAXPROCS ≥ 2 and while the loops are gathered,
// so it never holds the last P and never two loops at once, and only
// when it readied no goroutine since its last wait and its load has been
// light (rawWaitNow); a signal (GC, preemption) ends it with EINTR and
// the loop yields to the runtime before it waits again; the wait is not
// busy time; Go's poller sees the loop's set only through the gate,
// opened just before serve returns false (its EPOLL_CTL_ADD reports a set
// that is already ready, so the no-lost-wake-up argument above holds),
// and closed before the next raw wait; close's eventfd ends a raw wait as
// it wakes a parked loop.
func (l *relayLoop) serve(uintptr) bool {
	start := monoNow()
	l.woke(start)
	var rawUntil int64 // when a raw wait gives up (0: none begun)
	for {
		// Raw: it does not block (timeout 0), and entersyscall would wake
		// sysmon from its idle sleep at every burst, which then polls
		// every 20 µs for a millisecond (20% of turnd's CPU at 10 flows).
		// The loop's socket calls are raw for the same reason.
		r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.epfd),
			uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), 0, 0, 0)
		n := int(r)
		switch e {
		case 0:
		case unix.EINTR:
			continue
		default:
			return l.stop(e)
		}
		if n == 0 {
			// Waiting is not busy time: it would spread the loops.
			l.load.busyNS += monoNow() - start
			var again bool
			var err error
			n, again, err = l.waitRaw(&rawUntil) // rawwait_linux.go
			if err != nil {
				return l.stop(err)
			}
			if again {
				start = monoNow()
				continue
			}
			if n == 0 {
				if f := afterDrain.Load(); f != nil {
					(*f)()
				}
				if err := l.openGate(); err != nil {
					return l.stop(err)
				}
				return false
			}
			start, rawUntil = monoNow(), 0
			l.woke(start)
		}
		l.now = monoNow() // one clock read per batch for the deadline checks
		if l.handle(n) {
			l.ended = true
			return true
		}
	}
}

// stop ends the loop on a failed epoll call.
func (l *relayLoop) stop(err error) bool {
	l.fp.s.log.Error("relay event loop stopped", "err", err)
	l.ended = true
	return true
}

// handle serves the first n of l.events; true when close was asked for.
//
// Client-facing sockets (listeners, TCP clients) go first, relay sockets
// after: a listener drain sends its client→peer datagrams at once, while
// what a relay drain reads waits in l.out until the flush at the end
// anyway. In epoll's order a client→peer datagram waited behind every
// relay socket that became ready before its listener (a recvmmsg each),
// and its p99 way out was 1.17x coturn's at 100 flows
// (docs/benchmarks.md, thirteenth pass); this order takes that wait away
// and adds none to peer→client frames, which are sent after every drain
// of the wake-up either way.
func (l *relayLoop) handle(n int) (closing bool) {
	later := l.later[:0]
	for i := 0; i < n; i++ {
		k := keyOf(&l.events[i])
		if k == wakeKey {
			return true
		}
		l.mu.Lock()
		ls := l.socks.get(k) // zero: removed since this epoll_wait
		l.mu.Unlock()
		if ls.rf != nil {
			later = append(later, ls.rf) // within cap: n ≤ len(l.events)
			continue
		}
		if f := drainOrder.Load(); f != nil && ls != (loopSock{}) {
			(*f)(ls)
		}
		switch {
		case ls.lf != nil:
			l.drainListener(ls.lf)
		case ls.st != nil:
			ls.st.drain()
			l.load.dgrams++ // a stream wake-up counts as one datagram
			if ls.st.readied {
				ls.st.readied = false
				l.handoff = true
			}
		}
	}
	for i, rf := range later {
		if f := drainOrder.Load(); f != nil {
			(*f)(loopSock{rf: rf})
		}
		l.drain(rf)
		later[i] = nil // the loop keeps no closed allocation alive
	}
	l.flushSends()
	l.fp.s.metrics.addTallies(&l.p2c, dirPeerToClient)
	return false
}

// pollable registers an epoll descriptor with Go's poller and returns it
// as a file (which owns fd from now on) and its RawConn.
func pollable(fd int) (*os.File, syscall.RawConn, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, nil, err
	}
	f := os.NewFile(uintptr(fd), "relay-loop-epoll")
	// A descriptor Go's poller refused (os.NewFile does not say) has no
	// deadlines.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("epoll descriptor not pollable: %w", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, rc, nil
}

// close asks the loop to end; it returns at once.
func (l *relayLoop) close() {
	l.mu.Lock()
	was := l.closed
	l.closed = true
	l.mu.Unlock()
	if was {
		return
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(l.efd, one[:]) // cannot fail short of a counter overflow
}

// closeFDs releases the loop's descriptors once run has returned.
func (l *relayLoop) closeFDs() {
	l.epf.Close() // closes gate, or epfd without one
	if l.gate >= 0 {
		unix.Close(l.epfd)
	}
	unix.Close(l.efd)
}

// drain reads rf's socket until it is empty (edge-triggered: a short
// batch means empty) and hands every datagram to rf.handle.
func (l *relayLoop) drain(rf *relayFast) {
	for l.drainLocked(rf) {
		// The ring is full: send it before reading on. Not under the
		// relay socket's lock: a send takes its listener socket's, and
		// drainListener holds a listener socket's while it sends from a
		// relay socket, so holding both here would order them the other
		// way round (a deadlock with a Close waiting on each, at shutdown).
		l.flushSends()
	}
}

// drainLocked reads rf's socket until it is empty (false) or the ring has
// no room for another full read (true), under the socket's read lock.
func (l *relayLoop) drainLocked(rf *relayFast) (ringFull bool) {
	c := rf.raw
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed || c.loop != l { // closed, or moved to another loop since the lookup
		return false
	}
	// At high load most drains read one datagram: a Prometheus update
	// each would cost more than the datagram's own bookkeeping.
	defer l.p2c.take(&rf.pending)
	for {
		if l.used+loopSlots > ringSlots {
			return true
		}
		l.aim()
		k := l.recv(c.fd)
		for i := 0; i < k; i++ {
			frame := l.ring[l.used+i][:4+l.hdrs[i].Len]
			src := parseSockaddr(&l.names[i])
			if rf.handleAt(l.now, frame, src) { // may queue frame in l.out (sendChannelData)
				l.toPion(rf, frame, src)
			}
		}
		l.used += k
		l.load.dgrams += int64(k)
		if k > 0 && rf.stream.Load() != nil {
			l.handoff = true // sendStream may start the stream's flusher goroutine
		}
		if k < loopSlots {
			return false
		}
	}
}

// aim points the next recvmmsg at free ring slots, sending what waits
// first when fewer than loopSlots are free.
func (l *relayLoop) aim() {
	if l.used+loopSlots > ringSlots {
		l.flushSends()
	}
	for i := range l.hdrs {
		l.iovs[i].Base = &l.ring[l.used+i][4]
		l.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		l.hdrs[i].Hdr.Flags = 0
		l.hdrs[i].Len = 0
	}
}

// recv takes up to loopSlots datagrams from fd into the aimed slots
// without blocking (a raw system call: see serve); 0 when the socket is empty or the read failed (a
// pending ICMP error on a UDP socket, consumed by this read).
func (l *relayLoop) recv(fd int) int {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&l.hdrs[0])),
			loopSlots, unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			return int(n)
		case unix.EINTR:
			continue
		default:
			return 0
		}
	}
}

// flushSends sends the frames waiting in out and frees the ring.
func (l *relayLoop) flushSends() {
	l.out.send()
	l.used = 0
}

// drainListener reads a listener socket until it is empty: ChannelData of
// known bindings is forwarded at once, everything else is queued, copied,
// for pion's read loop (serverPacketConn.ReadFrom), which runs the front
// door on it.
func (l *relayLoop) drainListener(lf *listenerFast) {
	// Queued peer→client frames may be going out on this very socket:
	// send them first, so that aim below never flushes (this drain leaves
	// l.used as it is) and so never takes c.mu a second time while a
	// Close waits for it (a recursive read lock deadlocks then).
	if l.used+loopSlots > ringSlots {
		l.flushSends()
	}
	c := lf.sock.raw
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed || c.loop != l {
		return
	}
	read := 0
	for {
		l.aim() // the slots stay free: what this reads is sent (or copied) at once
		k := l.recv(c.fd)
		read += k
		for i := 0; i < k; i++ {
			b := l.ring[l.used+i][4 : 4+l.hdrs[i].Len]
			src := parseSockaddr(&l.names[i])
			if l.hdrs[i].Hdr.Flags&unix.MSG_TRUNC != 0 {
				lf.pending.malformed++ // larger than any datagram: never
				continue
			}
			if isChannelData(b) && lf.fp.forwardAt(l.now, lf.local, lf.lid, src, b, lf.snd, &lf.pending, &l.c2p) {
				continue
			}
			if !c.q.push(rawPkt{b: append([]byte(nil), b...), src: src}) {
				lf.pending.sendFull++ // pion's read loop is that far behind
			} else {
				l.handoff = true // pion's read loop may be ready to run now
			}
		}
		l.c2p.flush() // before aim reuses the slots
		if k < loopSlots {
			break
		}
	}
	lf.flush()
	if l.c2p.segmented > 0 {
		lf.fp.s.metrics.segC2P.Add(float64(l.c2p.segmented))
		l.c2p.segmented = 0
	}
	l.load.dgrams += int64(read)
	l.noteListenerDrain(c.fd, read) // loopspread_linux.go
}

// toPion queues a datagram for pion's goroutine (a copy: the loop's
// buffers are reused at once).
func (l *relayLoop) toPion(rf *relayFast, frame []byte, src netip.AddrPort) {
	if !rf.sock.raw.q.push(rawPkt{b: append([]byte(nil), frame[4:]...), src: src}) {
		rf.pending.sendFull++
		return
	}
	l.handoff = true // pion's goroutine for this allocation may be ready to run now
}

// errNoLoop: the fast path could not start its relay loops.
var errNoLoop = errors.New("relay: no relay event loop")

// startLoops starts n relay loops (one per UDP listener socket, so every
// core can read relay sockets when the loops spread: loopspread_linux.go);
// on failure the fast path reads relay sockets with a goroutine each.
func (fp *fastPath) startLoops(n int) {
	fp.gso = fp.gso && gsoSupported()
	for i := 0; i < n; i++ {
		l, err := newRelayLoop(fp, i)
		if err != nil {
			fp.s.log.Warn("relay event loop unavailable: relay sockets get a reader each", "err", err)
			fp.stopLoops()
			fp.loops = nil // before the server serves: nobody reads it yet
			return
		}
		fp.loops = append(fp.loops, l)
	}
	for _, l := range fp.loops { // fp.loops is fixed from here until stopLoops
		fp.loopsWG.Add(1)
		go func() {
			defer fp.loopsWG.Done()
			l.run()
		}()
	}
}

// stopLoops ends the loops and waits for them.
func (fp *fastPath) stopLoops() {
	for _, l := range fp.loops {
		l.close()
	}
	fp.loopsWG.Wait()
	for _, l := range fp.loops {
		l.endStreams() // nobody reads them now: their readers must not wait forever
		l.closeFDs()
	}
	fp.endSlice()
	// fp.loops stays as it is: pion's read loops may still be serving a
	// request after its Close returns, and read it (listenRelay,
	// attachLoop); a closed loop refuses new sockets (register).
}

// adoptListeners moves UDP listener sockets off Go's poller: each is
// re-opened as a raw socket (a dup of its descriptor; the net.UDPConn is
// closed, which takes it out of the poller) and given a slot, which picks
// the loop that reads it, once its listenerFast exists (newListener), and
// its clients' relay sockets. Registered with the
// poller, every datagram would wake it as well as the loop. Sockets that
// cannot be adopted are returned unchanged. Socket options (buffers,
// reuseport steering) were set on the socket and stay.
func (fp *fastPath) adoptListeners(pcs []net.PacketConn) []net.PacketConn {
	if len(fp.loops) == 0 {
		return pcs
	}
	out := make([]net.PacketConn, len(pcs))
	for i, pc := range pcs {
		out[i] = pc
		uc, ok := pc.(*net.UDPConn)
		if !ok {
			continue
		}
		c, err := rawFromUDPConn(uc)
		if err != nil {
			fp.s.log.Warn("listener socket stays on Go's poller", "addr", uc.LocalAddr(), "err", err)
			continue
		}
		c.adopted, c.slot = true, uint32(i)
		uc.Close()
		out[i] = c
	}
	return out
}

// rawFromUDPConn returns a raw socket on a duplicate of uc's descriptor.
func rawFromUDPConn(uc *net.UDPConn) (*rawUDP, error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd, family := -1, 0
	var serr error
	if err := rc.Control(func(old uintptr) {
		if fd, serr = unix.FcntlInt(old, unix.F_DUPFD_CLOEXEC, 0); serr != nil {
			return
		}
		family, serr = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, serr
	}
	local, _ := uc.LocalAddr().(*net.UDPAddr)
	return &rawUDP{fd: fd, family: family, local: local, done: make(chan struct{}), q: newPionQueue()}, nil
}

// listenRelay makes a relay socket: a raw one read by a loop when the
// loops run, else a plain one.
func (fp *fastPath) listenRelay(network string, ap netip.AddrPort) (net.PacketConn, error) {
	if len(fp.loops) == 0 {
		return new(net.ListenConfig).ListenPacket(context.Background(), network, ap.String())
	}
	return listenRawUDP(network, ap)
}

// attachLoop hands rf's raw socket to a loop.
func (fp *fastPath) attachLoop(rf *relayFast) error {
	if len(fp.loops) == 0 {
		return errNoLoop
	}
	c := rf.sock.raw
	c.slot = fp.loopNext.Add(1)
	if rf.listener != nil && rf.listener.fast != nil && rf.listener.fast.sock.raw != nil {
		// Both directions of a client on one loop: one wake-up serves a
		// client's datagram and its peer's answer when they queue together.
		if lc := rf.listener.fast.sock.raw; lc.adopted {
			c.slot = lc.slot
		}
	}
	l := fp.loopFor(c.slot)
	rf.out = &l.out
	return l.add(rf)
}

// SyscallConn gives raw access to the socket for senders that take a
// syscall.RawConn. It never waits for readiness: a callback that asks to
// wait (returns false) ends the call with errSendFull.
func (c *rawUDP) SyscallConn() (syscall.RawConn, error) { return rawConnOf{c}, nil }

type rawConnOf struct{ c *rawUDP }

func (r rawConnOf) Control(f func(fd uintptr)) error {
	r.c.mu.RLock()
	defer r.c.mu.RUnlock()
	if r.c.closed {
		return errRawClosed
	}
	f(uintptr(r.c.fd))
	return nil
}

func (r rawConnOf) Read(f func(fd uintptr) bool) error { return r.once(f) }

func (r rawConnOf) Write(f func(fd uintptr) bool) error { return r.once(f) }

func (r rawConnOf) once(f func(fd uintptr) bool) error {
	r.c.mu.RLock()
	defer r.c.mu.RUnlock()
	if r.c.closed {
		return errRawClosed
	}
	if !f(uintptr(r.c.fd)) {
		return errSendFull
	}
	return nil
}

// loopListenerSock returns the sending side of an adopted listener socket,
// or nil for one Go's poller still reads.
func loopListenerSock(pc net.PacketConn) *udpSock {
	c, ok := pc.(*rawUDP)
	if !ok || !c.adopted {
		return nil
	}
	return &udpSock{raw: c, family: c.family}
}

// startLoop hands an adopted listener socket to its loop.
func (l *listenerFast) startLoop() error {
	if !l.fed {
		return nil
	}
	c := l.sock.raw
	return l.fp.loopFor(c.slot).addListener(l)
}

// popForPion returns the next datagram the loop queued for pion, waiting
// until there is one or the socket closes.
func (l *listenerFast) popForPion() ([]byte, netip.AddrPort, error) {
	c := l.sock.raw
	pk, ok := c.q.pop(c.done)
	if !ok {
		return nil, netip.AddrPort{}, errRawClosed
	}
	return pk.b, pk.src, nil
}
