package relay

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"
)

// firstFrameTimeout bounds how long a new TCP or TLS connection may take to
// finish its handshake and send one valid frame.
const firstFrameTimeout = 10 * time.Second

// inboundMTU is the read buffer pion's server loop uses (its InboundMTU):
// pion drops anything that fills it as truncated, so the largest message
// it can handle is one byte less. The stream framer's limit follows it.
const inboundMTU = 1600

// maxStreamFrame is the largest frame a TCP or TLS stream may carry: the
// largest message pion handles. A longer frame closes the connection
// before pion's own 16-bit stream framing ever sees it (its length
// arithmetic overflows on frames near 64 KiB and then spins).
const maxStreamFrame = inboundMTU - 1

// frameBufSize is the per-connection buffer: large enough for two maximal
// frames so that compaction copies at most one partial frame.
const frameBufSize = 4096

var (
	errBadFrame      = errors.New("relay: stream carries neither STUN nor ChannelData")
	errFrameTooLarge = errors.New("relay: stream frame larger than the largest valid message")
)

// serverListener accepts TCP (optionally TLS) control connections and wraps
// each so that pion only reads frames the front door passed. Accept never
// returns an error while the listener is open: pion's accept loop would
// stop for good on the first one (see acceptRetry).
type serverListener struct {
	net.Listener
	s         *Server
	transport string
	tls       *tls.Config
	conns     *connLimiter
	health    *acceptHealth
	sleepFn   func(time.Duration) bool // tests replace the back-off wait
	closed    chan struct{}
	closeOnce sync.Once
}

func (l *serverListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

func (l *serverListener) Accept() (net.Conn, error) {
	for {
		c, err := l.acceptRetry()
		if err != nil {
			return nil, err
		}
		key := l.s.sourceKey(addrIP(c.RemoteAddr()))
		if !l.conns.acquire(key) {
			l.s.metrics.dropped.WithLabelValues(dropConnLimit).Inc()
			_ = c.Close()
			continue
		}
		return l.wrap(c, key), nil
	}
}

func (l *serverListener) wrap(c net.Conn, key netip.Addr) net.Conn {
	_ = c.SetReadDeadline(time.Now().Add(min(firstFrameTimeout, l.s.cfg.StreamIdleTimeout)))
	raw := c
	out := newStreamOut(raw)
	if l.tls != nil {
		// The handshake happens on the connection's own goroutine at its
		// first read, so a slow client never holds up Accept.
		under := c
		if out != nil {
			under = &outConn{Conn: raw, out: out} // records go through out
		}
		tc := tls.Server(under, l.tls)
		if out != nil {
			out.tls = tc
		}
		c = tc
	}
	return newFramedConn(l.s, l.transport, c, raw, out, func() { l.conns.release(key) })
}

// newFramedConn frames stream c (raw is the TCP connection under it, for
// deadlines; out its shared output path, nil to write c directly);
// release runs once at Close.
func newFramedConn(s *Server, transport string, c, raw net.Conn, out *streamOut, release func()) *framedConn {
	fc := &framedConn{
		Conn: c, raw: raw, output: out, remote: c.RemoteAddr(),
		tuple:        tupleOf(c.RemoteAddr(), c.LocalAddr()),
		buf:          make([]byte, frameBufSize),
		noAllocSince: time.Now(),
		release:      release,
	}
	fc.front = &front{s: s, transport: transport, local: c.LocalAddr(), stream: true}
	fc.front.reply = func(b []byte, _ net.Addr) error {
		_, err := fc.write(b)
		return err
	}
	fc.fast = s.fast.newStream(c, out) // ChannelData shortcut (fastpath_stream.go)
	return fc
}

// framedConn splits a client's stream into STUN and ChannelData frames
// (RFC 6062, RFC 8656 section 12.5), drops the ones the front door refuses,
// and hands pion exactly one whole frame per Read. Frames are parsed in
// place in one buffer the connection reuses: no copy or allocation per
// frame beyond the copy into the reader's buffer, and bytes arriving one
// at a time cost linear, not quadratic, work. After a successful
// ConnectionBind the connection carries raw peer data and becomes a plain
// pass-through.
//
// A connection without an allocation is closed StreamIdleTimeout after it
// opened or lost its allocation, whatever it sends meanwhile.
//
// Once a plain-TCP connection holds an allocation its socket is handed to
// a relay loop between frames (adopt, tcploop_linux.go): the loop frames
// the stream and forwards ChannelData, and Read returns the frames it
// leaves to pion. Every write, pion's and the data plane's, goes through
// output (streamout_linux.go).
type framedConn struct {
	net.Conn
	raw    net.Conn   // the TCP connection under TLS, for deadlines
	output *streamOut // the one output path, shared with the data plane; nil: write Conn
	remote net.Addr
	tuple  tupleKey
	front  *front
	fast   *streamFast // nil with the fast path off

	buf  []byte // reusable; unframed bytes are buf[r:w]
	r, w int
	out  []byte // the rest of a passed frame the reader's buffer could not take

	passThru     bool
	started      bool
	noAllocSince time.Time // zero while the connection has an allocation

	// loop is set once a relay loop reads the socket (tcploop_linux.go);
	// noAdopt once no loop ever can (TLS, no loops, no UDP allocation).
	loop    atomic.Pointer[loopStream]
	noAdopt bool

	release   func()
	closeOnce sync.Once
}

func (c *framedConn) Close() error {
	c.closeOnce.Do(func() {
		if c.output != nil && c.output.tls == nil {
			// Before the socket closes: no write reaches a reused
			// descriptor. It also bars adoption by a loop from here on.
			// (Under TLS, outConn.Close does it after the close_notify.)
			c.output.close()
		}
		if st := c.loop.Load(); st != nil {
			st.close() // before fast.close: the loop owns the tallies until then
		}
		if c.release != nil {
			c.release()
		}
		if c.fast != nil {
			c.fast.close()
		}
	})
	if c.loop.Load() != nil {
		return nil // the net.Conn was closed when the loop took the socket
	}
	return c.Conn.Close()
}

// Write sends pion's answers (and, after ConnectionBind, peer data). The
// stream turns into a pass-through only once pion answers a ConnectionBind
// with success: a request alone must not switch framing off. pion writes
// that answer from the reading goroutine before it starts the goroutines
// that copy peer data, so the switch needs no lock.
func (c *framedConn) Write(b []byte) (int, error) {
	if n := len(b); !c.passThru && n >= 20 && binary.BigEndian.Uint16(b) == connectionBindSuccess {
		c.front.observe(b, c.remote)
		c.passThru = true
		// Data connections live as long as their peer connection.
		_ = c.raw.SetReadDeadline(time.Time{})
		if _, err := c.write(c.signConnectionBind(b)); err != nil {
			return 0, err
		}
		return n, nil
	}
	if !c.passThru {
		c.front.observe(b, c.remote)
		if c.fast != nil {
			c.fast.snoopWrite(b, c.remote) // refreshed lifetimes for the data plane
		}
	}
	return c.write(b)
}

// write sends b whole through the connection's output path and waits
// until it has left, as a blocking write would: pion's writes are never
// dropped, and a client that stops reading holds up only its own writers.
func (c *framedConn) write(b []byte) (int, error) {
	switch {
	case c.output == nil:
		return c.Conn.Write(b)
	case c.output.tls != nil:
		if _, err := c.Conn.Write(b); err != nil { // seals into out, never waits
			return 0, err
		}
	default:
		if _, err := c.output.write(b, 0); err != nil {
			return 0, err
		}
	}
	if err := c.output.drain(); err != nil {
		return 0, err
	}
	return len(b), nil
}

// signConnectionBind adds MESSAGE-INTEGRITY and FINGERPRINT to pion's
// ConnectionBind success, which pion sends unsigned: RFC 6062 clients such
// as coturn's turnutils_uclient (-T) reject it as "wrong integrity".
func (c *framedConn) signConnectionBind(b []byte) []byte {
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if c.front.lastKey == nil || m.Decode() != nil || m.Contains(stun.AttrMessageIntegrity) {
		return b
	}
	if stun.MessageIntegrity(c.front.lastKey).AddTo(m) != nil || stun.Fingerprint.AddTo(m) != nil {
		return b
	}
	return m.Raw
}

var connectionBindSuccess = stun.NewType(stun.MethodConnectionBind, stun.ClassSuccessResponse).Value()

func (c *framedConn) Read(p []byte) (int, error) {
	if len(c.out) > 0 {
		n := copy(p, c.out)
		c.out = c.out[n:]
		return n, nil
	}
	if c.passThru {
		if c.r < c.w {
			n := copy(p, c.buf[c.r:c.w])
			c.r += n
			return n, nil
		}
		return c.Conn.Read(p)
	}
	if c.loop.Load() != nil {
		return c.readLooped(p)
	}
	c.checkIdle()
	if c.r == c.w && c.noAllocSince.IsZero() && c.adopt() {
		return c.readLooped(p)
	}
	for {
		size, err := frameSize(c.buf[c.r:c.w])
		switch {
		case err != nil:
			c.front.s.metrics.dropped.WithLabelValues(dropMalformed).Inc()
			return 0, err
		case size > maxStreamFrame:
			c.front.s.metrics.dropped.WithLabelValues(dropOversize).Inc()
			return 0, errFrameTooLarge
		case size == 0 || c.w-c.r < size:
			if c.fast != nil {
				c.fast.flush() // tallies once per burst, before waiting
			}
			if c.r == c.w && c.noAllocSince.IsZero() && c.adopt() {
				return c.readLooped(p) // ChannelData kept coming after the allocation
			}
			if err := c.fill(size); err != nil {
				return 0, err
			}
			continue
		}
		frame := c.buf[c.r : c.r+size : c.r+size] // nothing may write past it
		c.r += size
		if c.r == c.w {
			c.r, c.w = 0, 0
		}
		if ambiguousChannelData(frame) {
			c.front.s.metrics.dropped.WithLabelValues(dropMalformed).Inc()
			continue
		}
		if c.fast != nil && isChannelData(frame) && c.fast.forward(frame) {
			continue
		}
		n, ok := c.front.pass(frame, c.remote)
		if !ok {
			continue
		}
		frame = frame[:n]
		if c.fast != nil {
			c.fast.snoopRequest(frame, c.fast.remote)
		}
		if !c.started {
			// The first-frame deadline gives way to the idle timeout.
			c.started = true
			if !c.noAllocSince.IsZero() {
				_ = c.raw.SetReadDeadline(c.noAllocSince.Add(c.front.s.cfg.StreamIdleTimeout))
			}
		}
		n = copy(p, frame)
		c.out = frame[n:]
		return n, nil
	}
}

// checkIdle keeps the read deadline in step with whether the connection
// has an allocation: without one it must get one within StreamIdleTimeout
// of opening or of losing the last.
func (c *framedConn) checkIdle() {
	has := c.front.s.allocs.has(c.tuple)
	switch {
	case has && !c.noAllocSince.IsZero():
		c.noAllocSince = time.Time{}
		_ = c.raw.SetReadDeadline(time.Time{})
	case !has && c.noAllocSince.IsZero():
		c.noAllocSince = time.Now()
		_ = c.raw.SetReadDeadline(c.noAllocSince.Add(c.front.s.cfg.StreamIdleTimeout))
	}
}

// fill reads more of the stream into the buffer, making room for a frame
// of need bytes (0: unknown yet) first. It copies at most the one partial
// frame at the buffer's end, and only when the frame would not fit.
func (c *framedConn) fill(need int) error {
	if need < 20 {
		need = 20
	}
	if c.r > 0 && len(c.buf)-c.r < need {
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
	if len(c.buf) < need {
		nb := make([]byte, max(need, 2*len(c.buf)))
		c.w = copy(nb, c.buf[c.r:c.w])
		c.r = 0
		c.buf = nb
	}
	n, err := c.Conn.Read(c.buf[c.w:])
	c.w += n
	if err != nil && n == 0 {
		return err
	}
	return nil
}

// frameSize returns the length of the frame at the start of b (padding
// included), 0 if more bytes are needed to tell, or errBadFrame.
func frameSize(b []byte) (int, error) {
	if len(b) < 4 {
		return 0, nil
	}
	switch b[0] >> 6 {
	case 0: // STUN
		if len(b) < 20 {
			return 0, nil
		}
		if !stun.IsMessage(b) {
			return 0, errBadFrame
		}
		return int(binary.BigEndian.Uint16(b[2:4])) + 20, nil
	case 1: // ChannelData, padded to 4 bytes over streams
		n := int(binary.BigEndian.Uint16(b[2:4]))
		return 4 + (n+3)&^3, nil
	default:
		return 0, errBadFrame
	}
}

// ambiguousChannelData reports a ChannelData frame whose payload starts
// with the STUN magic cookie: pion's stream parser tests for STUN first,
// would read it as a STUN message of another length and lose frame sync.
func ambiguousChannelData(frame []byte) bool {
	return frame[0]>>6 == 1 && stun.IsMessage(frame)
}
