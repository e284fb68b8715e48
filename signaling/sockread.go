package signaling

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
)

// The read side of a connection, built so that a relayed message costs what
// an event loop pays for it: a read(2) as the socket becomes readable, no
// thread woken for the system call, and no new goroutine.
//
//   - sockConn is the hijacked TCP connection as gorilla sees it. Its Read
//     issues read(2) as a raw system call: the socket is non-blocking, so
//     the call cannot block, and the runtime's entersyscall bookkeeping
//     (which wakes the sleeping sysmon thread on every call while the
//     process is otherwise idle) is skipped.
//   - gorilla reads through a bufio.Reader the hub supplies (hijack), so
//     the reader can wait for the next frame itself and look at it first.
//   - A connection that relays signals is read by the hub's read loop
//     (loop.go) on Linux: one goroutine for all of them, woken once per
//     burst, reading each socket without waiting (nowait) into that
//     buffer. Elsewhere, and when the loop cannot take the connection, the
//     reader goroutine stays warm while its connection is active: after a
//     signal it reads the next frame into that buffer (awaitWarm) and
//     handles the next message on the same, already grown, stack. Once a
//     connection has been idle for a sweep, the sweeper cools it: the loop
//     or the warm reader lets go and a fresh reader parks in NextReader
//     with a small stack, the lean idle state (read.go).

// readBufSize is the connection's read buffer. gorilla reuses a hijacked
// reader only when it is larger than 256 bytes (server.go, Upgrade); 288 is
// the allocator's size class just above.
const readBufSize = 288

// sockConn is a hijacked TCP connection read with raw system calls.
type sockConn struct {
	*net.TCPConn
	rc syscall.RawConn
	// nowait makes Read return errWouldBlock instead of waiting while the
	// socket is empty: the read loop (loop_linux.go) sets it around its own
	// reads. drained says the last read took less than it asked for, so the
	// socket was empty right after it. Both belong to whoever owns the
	// connection's reading (conn.loopState).
	nowait, drained bool
}

// errWouldBlock is what Read returns in nowait mode on an empty socket.
// Only the read loop sees it: it never drives gorilla into a read that
// could meet it.
var errWouldBlock = errors.New("signaling: socket empty")

// init makes s read tc; false when tc offers no raw access.
func (s *sockConn) init(tc *net.TCPConn) bool {
	if !rawSockIO {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	s.TCPConn, s.rc = tc, rc
	return true
}

// Read reads from the socket, waiting in the netpoller while it is empty.
// Every wait follows a read that found the socket empty: the runtime
// clears the socket's readiness when a wait begins (pollReset), so waiting
// without trying first could sleep through data already there.
func (s *sockConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	op := readOpPool.Get().(*readOp)
	op.p, op.nowait = p, s.nowait
	err := s.rc.Read(op.fn)
	n, errno := int(op.n), op.errno
	*op = readOp{fn: op.fn}
	readOpPool.Put(op)
	switch {
	case err != nil:
		return 0, s.opError(err)
	case errno == syscall.EAGAIN:
		s.drained = true
		return 0, errWouldBlock
	case errno != 0:
		return 0, s.opError(os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	s.drained = n < len(p)
	return n, nil
}

// readOp is one Read's state for the callback RawConn.Read calls. A
// closure over Read's variables would escape (RawConn is an interface) and
// cost an allocation per read, two per relayed message; readOps, with
// their callback bound once, are reused instead.
type readOp struct {
	p      []byte
	n      int32 // int32 and next to nowait: 48 bytes, the size class a parked reader held before nowait
	nowait bool  // report EAGAIN instead of waiting
	errno  syscall.Errno
	fn     func(fd uintptr) bool // op.read
}

var readOpPool = sync.Pool{New: func() any {
	op := new(readOp)
	op.fn = op.read
	return op
}}

func (s *sockConn) opError(err error) error {
	return &net.OpError{Op: "read", Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: err}
}

// hijackWriter hands gorilla's Upgrade a TCP connection wrapped in a
// sockConn and a read buffer of the hub's own, which gorilla then uses as
// the connection's reader. Other connections (TLS terminated in process,
// test pipes) get the read buffer only.
type hijackWriter struct {
	http.ResponseWriter
	sock    *sockConn // set up by Hijack when the connection is TCP
	useSock bool
	noSock  bool // never set sock up (Hub.noSock)
	br      *bufio.Reader
}

func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil || brw.Reader.Buffered() > 0 {
		// gorilla refuses data sent before the handshake completes.
		return nc, brw, err
	}
	if tc, ok := nc.(*net.TCPConn); ok && !w.noSock && w.sock.init(tc) {
		w.useSock = true
		nc = w.sock
	}
	w.br = bufio.NewReaderSize(nc, readBufSize)
	return nc, bufio.NewReadWriter(w.br, brw.Writer), nil
}
