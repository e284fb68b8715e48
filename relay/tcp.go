package relay

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"time"

	"github.com/pion/stun/v4"
)

// firstFrameTimeout bounds how long a new TCP or TLS connection may take to
// finish its handshake and send one valid frame, so idle connections cannot
// pile up.
const firstFrameTimeout = 10 * time.Second

// maxFrame is the largest STUN message (16-bit length plus header) or
// padded ChannelData frame a stream can carry.
const maxFrame = 0xFFFF + 20 + 4

var errBadFrame = errors.New("relay: stream carries neither STUN nor ChannelData")

// serverListener accepts TCP (optionally TLS) control connections and wraps
// each so that pion only reads frames the front door passed.
type serverListener struct {
	net.Listener
	s         *Server
	transport string
	tls       *tls.Config
}

func (l *serverListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(firstFrameTimeout))
	raw := c
	if l.tls != nil {
		// The handshake happens on the connection's own goroutine at its
		// first read, so a slow client never holds up Accept.
		c = tls.Server(c, l.tls)
	}
	fc := &framedConn{Conn: c, raw: raw}
	fc.front = &front{s: l.s, transport: l.transport, local: c.LocalAddr()}
	fc.front.reply = func(b []byte, _ net.Addr) error {
		_, err := c.Write(b)
		return err
	}
	return fc, nil
}

// framedConn splits a client's stream into STUN and ChannelData frames
// (RFC 6062, RFC 8656 section 12.5), drops the ones the front door refuses,
// and hands pion whole frames. After a successful ConnectionBind the
// connection carries raw peer data, so it becomes a plain pass-through.
type framedConn struct {
	net.Conn
	raw   net.Conn // the TCP connection under TLS, for deadlines
	front *front

	buf      []byte // read from the stream, not yet framed
	out      []byte // an accepted frame not yet returned
	passThru bool
	started  bool
}

func (c *framedConn) Read(p []byte) (int, error) {
	for {
		if len(c.out) > 0 {
			n := copy(p, c.out)
			c.out = c.out[n:]
			return n, nil
		}
		if c.passThru {
			if len(c.buf) > 0 {
				n := copy(p, c.buf)
				c.buf = c.buf[n:]
				return n, nil
			}
			return c.Conn.Read(p)
		}
		size, err := frameSize(c.buf)
		if err != nil {
			c.front.s.metrics.dropped.WithLabelValues(dropMalformed).Inc()
			return 0, err
		}
		if size == 0 || len(c.buf) < size {
			if err := c.fill(); err != nil {
				return 0, err
			}
			continue
		}
		frame := c.buf[:size:size]
		c.buf = c.buf[size:]
		if !c.front.pass(frame, c.RemoteAddr()) {
			continue
		}
		if !c.started {
			c.started = true
			_ = c.raw.SetReadDeadline(time.Time{})
		}
		if isConnectionBind(frame) {
			c.passThru = true
		}
		c.out = frame
	}
}

func (c *framedConn) fill() error {
	if len(c.buf) > maxFrame {
		return errBadFrame
	}
	var tmp [4096]byte
	n, err := c.Conn.Read(tmp[:])
	if n > 0 {
		// Copy so frames handed out earlier are never overwritten.
		nb := make([]byte, 0, len(c.buf)+n)
		c.buf = append(append(nb, c.buf...), tmp[:n]...)
	}
	if err != nil && n == 0 {
		return err
	}
	return nil
}

// frameSize returns the length of the frame at the start of b, 0 if more
// bytes are needed to tell, or errBadFrame.
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

func isConnectionBind(frame []byte) bool {
	return len(frame) >= 20 && frame[0]>>6 == 0 &&
		stun.MessageType{Method: stun.MethodConnectionBind, Class: stun.ClassRequest}.Value() == binary.BigEndian.Uint16(frame[0:2])
}
