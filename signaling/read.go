package signaling

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// start begins reading in a goroutine of the connection's own.
func (c *conn) start() {
	c.ws.SetReadLimit(4 * int64(c.h.cfg.MaxMessageBytes))
	_ = c.ws.SetReadDeadline(c.readDeadline()) // errors surface on read
	c.ws.SetPongHandler(func(s string) error { return c.control(false, s) })
	c.ws.SetPingHandler(func(s string) error { return c.control(true, s) })
	c.ws.SetCloseHandler(c.closeHandler)
	go c.read()
}

// read reads one message, handles it, and starts a fresh reader for the
// next. While the connection is idle its reader is parked in NextReader
// with a stack under the 2 KiB a goroutine starts with; handling a message
// may grow the stack, and the fresh reader leaves that stack behind. The
// message is handled here rather than passed to another goroutine: at
// 5,000 msgs/s the hand-off and its wake-ups cost more than the growth
// (about 15% of hub CPU in paired runs once decoding and encoding got
// lighter).
func (c *conn) read() {
	// While the connection is idle this frame and NextReader's are all
	// the stack holds: together under the 2 KiB a goroutine starts with.
	typ, r, err := c.ws.NextReader()
	c.received(typ, r, err)
}

// received handles the message NextReader returned, or ends the
// connection.
//
//go:noinline
func (c *conn) received(typ int, r io.Reader, err error) {
	if err == nil {
		var m message
		if m, err = c.readMessage(typ, r); err == nil {
			m.process()
			return
		}
	}
	c.end(err)
}

// message is one client message.
type message struct {
	c        *conn
	typ      int
	data     []byte
	buf      *bytes.Buffer // holds data; back to readPool once handled
	tooLarge bool
}

// process handles m, then reads the connection's next message.
func (m message) process() {
	m.c.dispatch(m)
	putReadBuf(m.buf)
	go m.c.read()
}

// classify names why a read failed, when the hub did not close the
// connection itself. Only a close frame saying the client meant to go
// (1000, 1001) is a clean leave: a browser that fails the connection
// (1002 protocol error, 1007 invalid data, ...) did not choose to leave,
// so its peer may resume.
func classify(err error) string {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		switch ce.Code {
		case websocket.CloseNormalClosure, websocket.CloseGoingAway:
			return reasonClientClose
		}
		return reasonNetwork
	}
	if errors.Is(err, websocket.ErrReadLimit) {
		return reasonTooLarge
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return reasonTimeout
	}
	return reasonNetwork
}

func (c *conn) readDeadline() time.Time {
	return time.Now().Add(c.h.cfg.PingInterval + c.h.cfg.PongTimeout)
}

// control handles a ping or pong frame from the client. Control frames
// take tokens from the same bucket as messages: a ping flood gets no pongs
// beyond the budget, costs the error budget, and ends in 1008.
func (c *conn) control(ping bool, data string) error {
	if !c.allow(&c.limiter) {
		c.h.m.errors.WithLabelValues(CodeRateLimited).Inc()
		c.chargeError(CodeRateLimited)
		return nil
	}
	if err := c.ws.SetReadDeadline(c.readDeadline()); err != nil {
		return err
	}
	if ping {
		c.enqueue(outFrame{b: []byte(data), kind: framePong})
	}
	return nil
}

// readMessage reads the message r.
//
//go:noinline
func (c *conn) readMessage(typ int, r io.Reader) (message, error) {
	maxBytes := int64(c.h.cfg.MaxMessageBytes)
	_ = c.ws.SetReadDeadline(c.readDeadline())
	buf := readPool.Get().(*bytes.Buffer)
	buf.Reset()
	_, err := buf.ReadFrom(&io.LimitedReader{R: r, N: maxBytes + 1})
	if err != nil {
		putReadBuf(buf)
		return message{}, err
	}
	tooLarge := int64(buf.Len()) > maxBytes
	if tooLarge {
		putReadBuf(buf)
		// Discard the rest; beyond the hard limit this fails and gorilla
		// closes with 1009.
		if _, err := io.Copy(io.Discard, r); err != nil {
			return message{}, err
		}
		return message{c: c, typ: typ, tooLarge: true}, nil
	}
	return message{c: c, typ: typ, data: buf.Bytes(), buf: buf}, nil
}

// readPool holds the buffers messages are read into. Nothing keeps a
// reference to a message's bytes once it is handled (decoding copies what
// it keeps), so the buffer goes back after dispatch.
var readPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func putReadBuf(b *bytes.Buffer) {
	if b != nil && b.Cap() <= maxPooledFrame {
		readPool.Put(b)
	}
}

// dispatch checks the limits on m and handles it.
func (c *conn) dispatch(m message) {
	if c.isClosing() {
		return // drain until the writer closes the socket
	}
	if !c.allow(&c.limiter) {
		c.h.m.receivedType("")
		c.sendError(CodeRateLimited, "too many messages; this one was dropped", "")
		return
	}
	switch {
	case m.tooLarge:
		c.h.m.receivedType("")
		c.sendError(CodeTooLarge, "message larger than the limit; dropped", "")
	case m.typ != websocket.TextMessage:
		c.h.m.receivedType("")
		c.sendError(CodeBadMessage, "only text frames carry messages", "")
	default:
		if msg, ok := decodeSignalMessage(m.data); ok {
			c.h.m.receivedType(TypeSignal)
			c.h.relay(c, msg)
			return
		}
		c.h.handle(c, m.data)
	}
}
