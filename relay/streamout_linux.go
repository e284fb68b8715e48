//go:build linux

package relay

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// streamBacklog bounds the peer data a TCP or TLS client's connection may
// hold in user space once the kernel's send buffer is full: past it the
// data plane drops peer datagrams for that client and counts them
// (send_buffer_full), as a full UDP send buffer does. pion's own writes
// (answers, Data indications) are never dropped: they wait instead.
const streamBacklog = 128 << 10

// streamOut is the one output path of a TCP or TLS client connection,
// shared by pion's writes (framedConn.Write) and the data plane's
// peer→client frames (sendFrame, called from a relay loop or a relay
// socket's reader). Writes never interleave inside a frame: every write to
// the socket happens under mu, and bytes queue behind the backlog.
//
// A write first tries the socket directly (non-blocking); what the kernel
// does not take is kept in the backlog, and a flushing goroutine, which
// exists only while there is a backlog, sends it as the socket drains.
// The data plane never waits: over streamBacklog it drops. pion's writes
// wait until their bytes have left (drain), so a client that stops reading
// holds up pion's goroutine for that client only, as a blocking write did.
//
// TLS: records are sealed by crypto/tls.Conn, which cannot leave half a
// record for later, so the tls.Conn writes into streamOut (outConn) and
// streamOut never blocks it. sendFrame seals the frame on the caller's
// goroutine (no hand-off, no pion encode); the tls.Conn's own lock is held
// by other writers only while they seal, never while the socket is full.
type streamOut struct {
	rc  syscall.RawConn
	fd  int       // ≥ 0 once a relay loop reads the socket (tcploop_linux.go): writes use it, not rc
	tls *tls.Conn // set for TLS clients: frames are written through it

	mu       sync.Mutex
	drained  sync.Cond // signalled as the backlog shrinks or the stream fails
	backlog  []byte    // unsent bytes: backlog[head:]
	head     int
	queued   uint64 // bytes ever put in the backlog
	sent     uint64 // of which written
	flushing bool   // the flushing goroutine runs
	err      error  // sticky: the stream failed or closed

	// One direct write, under mu (see direct).
	cur   []byte
	n     int
	werr  error
	once  func(fd uintptr) bool
	flush func(fd uintptr) bool
}

// newStreamOut returns c's output path, or nil when c gives no raw access
// to its socket (tests' pipes): then writes go to c as before.
func newStreamOut(c net.Conn) *streamOut {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	o := &streamOut{rc: rc, fd: -1}
	o.drained.L = &o.mu
	o.once = o.writeOnce
	o.flush = o.flushSome
	return o
}

// errStreamClosed: the connection closed with bytes still queued.
var errStreamClosed = errors.New("relay: stream closed")

// pending returns the backlog's size. Caller holds mu.
func (o *streamOut) pending() int { return len(o.backlog) - o.head }

// write sends b, or queues what the socket does not take now. With limit
// above 0 it drops b (false) when the backlog would pass limit; a frame
// the socket took in part is always completed. It never waits.
func (o *streamOut) write(b []byte, limit int) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return false, o.err
	}
	if o.pending() == 0 && !o.flushing {
		n, err := o.direct(b)
		if err != nil {
			o.fail(err)
			return false, err
		}
		b = b[n:]
		if len(b) == 0 {
			return true, nil
		}
	} else if limit > 0 && o.pending()+len(b) > limit {
		return false, nil
	}
	if o.head > 0 && o.head >= len(o.backlog)/2 {
		o.backlog = o.backlog[:copy(o.backlog, o.backlog[o.head:])]
		o.head = 0
	}
	o.backlog = append(o.backlog, b...)
	o.queued += uint64(len(b))
	if !o.flushing {
		o.flushing = true
		go o.flusher()
	}
	return true, nil
}

// drain waits until every byte queued so far has been written, or the
// stream failed.
func (o *streamOut) drain() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	mark := o.queued
	for o.sent < mark && o.err == nil {
		o.drained.Wait()
	}
	if o.sent < mark {
		return o.err
	}
	return nil
}

// close fails the stream: queued bytes are dropped and waiters return. The
// caller closes the socket after it, so no write can reach a reused
// descriptor (writes check err under mu).
func (o *streamOut) close() {
	o.mu.Lock()
	o.fail(errStreamClosed)
	o.mu.Unlock()
}

// fail records err, drops the backlog and wakes waiters. Caller holds mu.
func (o *streamOut) fail(err error) {
	if o.err == nil {
		o.err = err
	}
	o.backlog, o.head = o.backlog[:0], 0
	o.drained.Broadcast()
}

// direct makes one non-blocking write of b; EAGAIN is not an error.
// Caller holds mu, and no flusher runs (it would hold the descriptor's
// write lock while it waits).
func (o *streamOut) direct(b []byte) (int, error) {
	if o.fd >= 0 {
		return writeNB(uintptr(o.fd), b)
	}
	o.cur, o.n, o.werr = b, 0, nil
	if err := o.rc.Write(o.once); err != nil {
		return 0, err
	}
	o.cur = nil
	return o.n, o.werr
}

func (o *streamOut) writeOnce(fd uintptr) bool {
	o.n, o.werr = writeNB(fd, o.cur)
	return true
}

// writeNB writes b without waiting: the number of bytes taken, and an
// error other than a full buffer.
func writeNB(fd uintptr, b []byte) (int, error) {
	for {
		n, err := rawWrite(int(fd), b) // tcploop_linux.go
		switch err {
		case nil:
			return n, nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, nil
		default:
			return 0, err
		}
	}
}

// flusher sends the backlog as the socket drains, then ends.
func (o *streamOut) flusher() {
	if o.fd >= 0 { // fixed once set; set only while no flusher runs
		o.rawFlusher()
		return
	}
	for {
		err := o.rc.Write(o.flush) // waits for the socket between calls
		o.mu.Lock()
		if err != nil {
			o.fail(err)
		}
		if o.err != nil || o.pending() == 0 {
			o.flushing = false
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()
	}
}

// rawFlusher is flusher for a socket off Go's poller: it waits for room in
// poll(2), a blocking system call of its own thread (only while a backlog
// exists), in slices so that it notices close.
func (o *streamOut) rawFlusher() {
	pfd := []unix.PollFd{{Fd: int32(o.fd), Events: unix.POLLOUT}}
	for {
		o.mu.Lock()
		full := !o.flushSome(uintptr(o.fd))
		if !full || o.err != nil || o.pending() == 0 {
			o.flushing = false
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()
		_, _ = unix.Poll(pfd, 100)
	}
}

// flushSome writes what the socket takes; false asks rc.Write to wait
// until the socket is writable and call again.
func (o *streamOut) flushSome(fd uintptr) bool {
	if o.fd < 0 {
		o.mu.Lock()
		defer o.mu.Unlock()
	}
	for o.err == nil && o.pending() > 0 {
		n, err := writeNB(fd, o.backlog[o.head:])
		if err != nil {
			o.fail(err)
			return true
		}
		if n == 0 {
			return false
		}
		o.head += n
		o.sent += uint64(n)
		o.drained.Broadcast()
	}
	o.backlog, o.head = o.backlog[:0], 0
	return true
}

// sendFrame writes one ChannelData frame or STUN message from the data
// plane (its length a multiple of 4, padding included) and reports whether
// it went out or was queued; false: dropped (backlog full, stream failed).
func (o *streamOut) sendFrame(frame []byte) bool {
	if o.tls == nil {
		ok, _ := o.write(frame, streamBacklog)
		return ok
	}
	o.mu.Lock()
	full := o.err != nil || o.pending()+len(frame) > streamBacklog
	o.mu.Unlock()
	if full {
		return false // checked before sealing: a sealed record cannot be dropped
	}
	_, err := o.tls.Write(frame)
	return err == nil
}

// outConn is the connection a tls.Conn writes through: its writes go to
// streamOut and never wait.
type outConn struct {
	net.Conn
	out *streamOut
}

func (c *outConn) Write(b []byte) (int, error) {
	if _, err := c.out.write(b, 0); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (c *outConn) Close() error {
	c.out.close()
	return c.Conn.Close()
}
