package signaling

import (
	"errors"
	"os"
	"sync"
	"syscall"

	"github.com/gorilla/websocket"
)

// The inline write: a frame for a connection with no writer running and
// nothing queued is written by the goroutine that delivers it, in one
// non-blocking write(2) on the socket, instead of waking a writer goroutine
// for it (at 5,000 msgs/s that wake-up, the goroutine's creation and its
// exit were about a tenth of the hub's CPU). A socket that cannot take the
// whole frame at once never blocks the sender: what is left goes to the
// on-demand writer, which finishes it before anything else (close frames
// included) and from then on the usual rules hold (send-queue bytes,
// blocked-write timeout). Only plain TCP sockets (sockConn) take this path; others (TLS
// terminated in process, test pipes) always go through the writer.
//
// The frame bypasses gorilla's writer, which is safe because every write to
// the socket happens while the connection's writing token is held (c.writing
// under c.mu), except gorilla's reply to a protocol error on the read side,
// sent as the connection fails; the client's close frame is answered through
// the writer (closeHandler).

// framePool holds buffers for header + payload of inline writes.
var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// maxPooledFrame keeps buffers of unusually large frames out of the pool.
const maxPooledFrame = 16 << 10

// appendTextFrameHeader appends the header of a final, unmasked text frame
// of n payload bytes (RFC 6455, section 5.2): servers never mask.
func appendTextFrameHeader(b []byte, n int) []byte {
	const finText = 0x80 | 0x1
	switch {
	case n < 126:
		return append(b, finText, byte(n))
	case n <= 0xffff:
		return append(b, finText, 126, byte(n>>8), byte(n))
	default:
		u := uint64(n)
		return append(b, finText, 127, byte(u>>56), byte(u>>48), byte(u>>40), byte(u>>32),
			byte(u>>24), byte(u>>16), byte(u>>8), byte(u))
	}
}

// writeResult is what one non-blocking write attempt did.
type writeResult int

const (
	wroteAll     writeResult = iota
	wroteNothing             // the socket is full, or no fast path: queue the frame
	wrotePart                // the rest must follow before any other frame
	writeFailed
)

// tryWrite writes payload as one text frame with a single non-blocking
// write(2). On wrotePart, rest holds the unwritten tail of the framed bytes.
func (c *conn) tryWrite(payload []byte) (res writeResult, rest []byte, err error) {
	if c.sock == nil {
		return wroteNothing, nil, nil
	}
	rc := c.sock.rc
	bp := framePool.Get().(*[]byte)
	buf := appendTextFrameHeader((*bp)[:0], len(payload))
	buf = append(buf, payload...)
	op := writeOpPool.Get().(*writeOp)
	op.b = buf
	cerr := rc.Write(op.fn)
	n, werr := op.n, op.err
	*op = writeOp{fn: op.fn}
	writeOpPool.Put(op)
	switch {
	case errors.Is(cerr, os.ErrDeadlineExceeded):
		// An earlier write's deadline has passed; the writer sets a new one.
		res = wroteNothing
	case cerr != nil:
		res, err = writeFailed, cerr
	case errors.Is(werr, syscall.EAGAIN):
		res = wroteNothing
	case werr != nil:
		res, err = writeFailed, werr
	case n >= len(buf):
		res = wroteAll
	case n <= 0:
		res = wroteNothing
	default:
		res, rest = wrotePart, append([]byte(nil), buf[n:]...)
	}
	if cap(buf) <= maxPooledFrame {
		*bp = buf[:0]
		framePool.Put(bp)
	}
	return res, rest, err
}

// writeOp is one inline write's state for the callback RawConn.Write calls,
// reused with its callback bound once (a closure would escape and cost an
// allocation per write; see readOp).
type writeOp struct {
	b   []byte
	n   int
	err error
	fn  func(fd uintptr) bool // op.write
}

var writeOpPool = sync.Pool{New: func() any {
	op := new(writeOp)
	op.fn = op.write
	return op
}}

// writeNow writes f, a text frame, on the calling goroutine; the caller has
// taken the writing token for it (c.writing) and counted it in c.qbytes.
func (c *conn) writeNow(f outFrame) {
	res, rest, err := c.tryWrite(f.b)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch res {
	case wroteAll:
		c.qbytes = max(c.qbytes-len(f.b), 0)
		c.writing = false
		if len(c.queue) > 0 || c.closing {
			c.kickLocked()
		}
		return
	case wroteNothing:
		// Still first: frames queued meanwhile came after it.
		c.queue = append([]outFrame{f}, c.queue...)
	case wrotePart:
		c.qbytes = max(c.qbytes-len(f.b), 0) + len(rest)
		c.rest = rest
	case writeFailed:
		c.qbytes = max(c.qbytes-len(f.b), 0)
		c.writing = false
		c.failLocked(0, "", writeReason(err))
		// failLocked starts no writer when the connection was closing
		// already (a drain, a cut), and without one nobody closes the
		// socket: its reader would wait for that forever.
		c.kickLocked()
		return
	}
	// The token is still held: hand it to a writer.
	c.h.wg.Add(1)
	go c.writer()
}

// closeHandler answers the client's close frame through the writer (after
// the rest of a partly written frame), not from the reader as gorilla's
// default handler would, so it never lands inside another frame.
func (c *conn) closeHandler(code int, _ string) error {
	reason := reasonNetwork
	switch code {
	case websocket.CloseNormalClosure, websocket.CloseGoingAway:
		reason = reasonClientClose
	}
	c.fail(code, "", reason)
	return nil
}
