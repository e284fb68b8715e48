//go:build linux

package relay

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A plain-TCP client connection that holds an allocation is read by the
// relay loop of its allocation's relay socket instead of by its own
// goroutine. With a goroutine per connection, every segment from the
// client woke Go's poller and then that goroutine (a scheduler round trip
// per relayed packet, 17% of turnd's CPU at 100 TCP flows); the loop takes
// every ready socket of one epoll_wait in one wake-up, as for UDP.
//
// Like the UDP listener sockets (adoptListeners), the socket leaves Go's
// poller: the loop reads a duplicate of its descriptor and the net.TCPConn
// is closed. The loop frames the stream in the framer's buffer, forwards
// ChannelData of known bindings itself, and queues every other frame
// (copied) for pion's goroutine, which waits in framedConn.Read and runs
// the front door on it as before. Writes go through the connection's
// streamOut, which from then on writes the descriptor directly.
//
// Frames keep their order on each path. A frame the loop forwards may
// leave before pion has handled a request queued ahead of it; that can
// only concern bindings the table already knew (ChannelData of an unknown
// one is queued in order), so a request can only widen what is forwarded,
// never narrow it ahead of time.
//
// TLS connections stay on their goroutine (records must be decrypted in
// order by crypto/tls), as do connections before their allocation (the
// first-frame and idle deadlines) and RFC 6062 data connections.

// streamQueueMax bounds the frames queued for pion per connection; past it
// the loop stops reading the socket (TCP pushes back on the client) until
// pion has taken half.
const streamQueueMax = 64

// loopStream is one client connection a relay loop reads.
type loopStream struct {
	fc   *framedConn
	fd   int
	loop *relayLoop
	key  sockKey // in loop.socks

	readied bool // the loop signalled pion's reader since it last looked; owned by the loop

	mu     sync.RWMutex // read-held by the loop while it uses fd; close write-holds it
	closed bool
	done   chan struct{}

	qmu    sync.Mutex
	q      [][]byte // frames for pion, oldest first: q[head:]
	head   int
	qerr   error // the stream ended (after q): io.EOF, a read error, a bad frame
	paused bool  // the loop stopped reading: q is full
	ready  chan struct{}

	stopped bool // the loop reads no more (qerr is set); loop-owned
}

// adopt hands c's socket to a relay loop; false leaves c as it was. It
// runs on c's reading goroutine between frames, with the framer's buffer
// empty: the buffer becomes the loop's.
func (c *framedConn) adopt() bool {
	sf := c.fast
	if c.noAdopt || c.passThru || c.r != c.w || len(c.out) > 0 {
		return false
	}
	if sf == nil || c.output == nil || c.output.tls != nil {
		c.noAdopt = true
		return false
	}
	rf := sf.fp.byClientKey(sf.local, sf.remote)
	if rf == nil {
		return false // a TCP allocation, or one going away
	}
	if rf.sock == nil || rf.sock.raw == nil {
		c.noAdopt = true // the relay loops are not running
		return false
	}
	rf.sock.raw.mu.RLock() // a relay socket may move between loops (loopspread_linux.go)
	loop := rf.sock.raw.loop
	rf.sock.raw.mu.RUnlock()
	if loop == nil {
		c.noAdopt = true
		return false
	}
	o := c.output
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil || o.flushing || o.pending() > 0 {
		return false // try again between later frames
	}
	var fd int
	var derr error
	if err := o.rc.Control(func(old uintptr) { fd, derr = unix.FcntlInt(old, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || derr != nil {
		return false
	}
	st := &loopStream{fc: c, fd: fd, done: make(chan struct{}), ready: make(chan struct{}, 1)}
	c.loop.Store(st) // the framer's buffer is the loop's from here
	if err := loop.addStream(st); err != nil {
		c.loop.Store(nil)
		unix.Close(fd)
		return false
	}
	// No writer is inside rc (o.mu is held, no flusher runs): switch
	// writes to the duplicate and take the socket off Go's poller.
	o.fd = fd
	_ = c.Conn.Close()
	return true
}

// addStream starts reading st's socket.
func (l *relayLoop) addStream(st *loopStream) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errNoLoop
	}
	st.loop, st.key = l, l.socks.add(loopSock{st: st})
	// Registering reports data that is already waiting.
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, st.fd, st.event(0)); err != nil {
		l.socks.remove(st.key)
		return fmt.Errorf("relay loop: %w", err)
	}
	return nil
}

func (st *loopStream) event(extra uint32) *unix.EpollEvent {
	return st.key.event(unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET | extra)
}

// drain reads the socket until it is empty (edge-triggered), forwarding
// ChannelData and queueing the rest for pion. It runs on the loop.
func (st *loopStream) drain() {
	st.mu.RLock()
	defer st.mu.RUnlock()
	if st.closed || st.stopped {
		return
	}
	c := st.fc
	defer c.fast.flush() // tallies once per wake-up
	for reads := 0; ; reads++ {
		if !st.frames() {
			return
		}
		if reads == streamReadsPerDrain {
			// A client that keeps its socket full must not keep the loop
			// from the others: queue this socket behind them (re-registering
			// reports it readable again).
			st.rearmLocked(0)
			return
		}
		if c.r > 0 { // keep the partial frame at the front
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		}
		if c.w == len(c.buf) { // cannot happen: a frame is at most maxStreamFrame
			st.end(errFrameTooLarge)
			return
		}
		n, err := rawRead(st.fd, c.buf[c.w:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return
		case err != nil:
			st.end(err)
			return
		case n == 0:
			st.end(io.EOF)
			return
		}
		c.w += n
	}
}

// streamReadsPerDrain bounds the reads one drain makes from a client's
// socket (up to frameBufSize bytes each).
const streamReadsPerDrain = 16

// frames handles the whole frames in the buffer; false: stop reading (the
// queue is full, or the stream ended).
func (st *loopStream) frames() bool {
	c := st.fc
	m := c.front.s.metrics
	for c.r < c.w {
		size, err := frameSize(c.buf[c.r:c.w])
		switch {
		case err != nil:
			m.dropped.WithLabelValues(dropMalformed).Inc()
			st.end(err)
			return false
		case size > maxStreamFrame:
			m.dropped.WithLabelValues(dropOversize).Inc()
			st.end(errFrameTooLarge)
			return false
		case size == 0 || c.w-c.r < size:
			return true
		}
		frame := c.buf[c.r : c.r+size : c.r+size]
		switch {
		case ambiguousChannelData(frame):
			m.dropped.WithLabelValues(dropMalformed).Inc()
		case isChannelData(frame) && c.fast != nil && c.fast.forward(frame):
		case !st.push(frame):
			return false // the frame stays for when pion catches up
		}
		c.r += size
	}
	c.r, c.w = 0, 0
	return true
}

// push queues a copy of frame for pion; false when the queue is full (the
// loop pauses until pop resumes it).
func (st *loopStream) push(frame []byte) bool {
	st.qmu.Lock()
	if len(st.q)-st.head >= streamQueueMax {
		st.paused = true
		st.qmu.Unlock()
		return false
	}
	st.q = append(st.q, append([]byte(nil), frame...))
	st.qmu.Unlock()
	st.signal()
	st.readied = true // pion's reader may be ready to run: no raw wait now (rawwait_linux.go)
	return true
}

// end queues the stream's end for pion; the loop reads no more.
func (st *loopStream) end(err error) {
	st.stopped = true
	st.qmu.Lock()
	st.qerr = err
	st.qmu.Unlock()
	st.signal()
	st.readied = true
}

func (st *loopStream) signal() {
	select {
	case st.ready <- struct{}{}:
	default:
	}
}

// pop returns the next frame for pion, waiting until there is one, the
// stream ends, it closes, or deadline (zero: none) passes.
func (st *loopStream) pop(deadline time.Time) ([]byte, error) {
	var expired <-chan time.Time
	for {
		st.qmu.Lock()
		if st.head < len(st.q) {
			f := st.q[st.head]
			st.q[st.head] = nil
			st.head++
			if st.head == len(st.q) {
				st.q, st.head = st.q[:0], 0
			}
			resume := st.paused && len(st.q)-st.head <= streamQueueMax/2
			if resume {
				st.paused = false
			}
			st.qmu.Unlock()
			if resume {
				st.rearm()
			}
			return f, nil
		}
		err := st.qerr
		st.qmu.Unlock()
		if err != nil {
			return nil, err
		}
		if !deadline.IsZero() && expired == nil {
			d := time.Until(deadline)
			if d <= 0 {
				return nil, os.ErrDeadlineExceeded
			}
			t := time.NewTimer(d)
			defer t.Stop()
			expired = t.C
		}
		select {
		case <-st.ready:
		case <-st.done:
			return nil, net.ErrClosed
		case <-expired:
			return nil, os.ErrDeadlineExceeded
		}
	}
}

// endStreams ends every client stream l read, once l has stopped: pion's
// goroutines waiting for their frames get net.ErrClosed and close them.
func (l *relayLoop) endStreams() {
	l.mu.Lock()
	var sts []*loopStream
	for ls := range l.socks.all() {
		if ls.st != nil {
			sts = append(sts, ls.st)
		}
	}
	l.mu.Unlock()
	for _, st := range sts {
		st.mu.Lock() // no drain runs (the loop has ended); this orders stopped
		st.stopped = true
		st.mu.Unlock()
		st.qmu.Lock()
		if st.qerr == nil {
			st.qerr = net.ErrClosed
		}
		st.qmu.Unlock()
		st.signal()
	}
}

// rearm has the loop take up the stream again after a pause. The frames
// may all be in the loop's buffer already, with nothing left in the
// socket to report, so the descriptor is re-registered for writability
// too, which a connection nearly always has (and when it has not, pion's
// answers wait for the client to read, and that reports it).
func (st *loopStream) rearm() {
	st.mu.RLock()
	defer st.mu.RUnlock()
	st.rearmLocked(unix.EPOLLOUT)
}

// rearmLocked re-registers the descriptor with extra events; the caller
// read-holds st.mu.
func (st *loopStream) rearmLocked(extra uint32) {
	l := st.loop
	l.mu.Lock()
	defer l.mu.Unlock()
	if !st.closed && !l.closed {
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, st.fd, st.event(extra))
	}
}

// close stops reading (waiting for a drain under way), fails the output
// path and releases the descriptor.
func (st *loopStream) close() {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return
	}
	st.closed = true
	l := st.loop
	l.mu.Lock()
	if !l.closed {
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, st.fd, nil)
	}
	l.socks.remove(st.key)
	l.mu.Unlock()
	st.fc.output.close() // no write reaches the descriptor after this
	unix.Close(st.fd)
	st.mu.Unlock()
	close(st.done)
}

// readLooped is framedConn.Read once a loop reads the socket: the frames
// the loop left to pion, through the front door.
func (c *framedConn) readLooped(p []byte) (int, error) {
	for {
		c.checkIdle()
		var deadline time.Time
		if !c.noAllocSince.IsZero() {
			deadline = c.noAllocSince.Add(c.front.s.cfg.StreamIdleTimeout)
		}
		frame, err := c.loop.Load().pop(deadline)
		if err != nil {
			return 0, err
		}
		n, ok := c.front.pass(frame, c.remote)
		if !ok {
			continue
		}
		frame = frame[:n]
		c.fast.snoopRequest(frame, c.fast.remote)
		n = copy(p, frame)
		c.out = frame[n:]
		return n, nil
	}
}

// rawRead and rawWrite are read(2) and write(2) on a non-blocking socket
// without entersyscall: neither call blocks, and entersyscall wakes an
// idle sysmon, which then polls every 20 µs for a while (see
// relayLoop.serve). At 10 TCP flows that was about 670 sysmon wake-ups a
// second, each a futex and a nanosleep call (docs/benchmarks.md, tenth
// pass).
func rawRead(fd int, b []byte) (int, error)  { return rawIO(unix.SYS_READ, fd, b) }
func rawWrite(fd int, b []byte) (int, error) { return rawIO(unix.SYS_WRITE, fd, b) }

func rawIO(sysno uintptr, fd int, b []byte) (int, error) {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	n, _, e := unix.RawSyscall(sysno, uintptr(fd), uintptr(p), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
