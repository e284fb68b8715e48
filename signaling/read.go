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
	_ = c.moveReadDeadline(time.Now()) // errors surface on read
	c.ws.SetPongHandler(func(s string) error { return c.control(false, s) })
	c.ws.SetPingHandler(func(s string) error { return c.control(true, s) })
	c.ws.SetCloseHandler(c.closeHandler)
	go c.read()
}

// read is a fresh reader: it parks in NextReader until the connection's
// next message and then handles it and the ones after it (received). While
// the connection is idle this frame and NextReader's are all its stack
// holds: together under the 2 KiB a goroutine starts with, so an idle
// connection costs a small stack. Handling a message grows the stack; the
// reader then stays warm, on that grown stack, while messages keep coming
// (no new goroutine, no stack growth per message: together about a tenth
// of hub CPU at 5,000 msgs/s when every message had a fresh reader), and
// leaves it behind for a fresh reader once the sweeper finds the
// connection idle (awaitWarm).
func (c *conn) read() {
	typ, r, err := c.ws.NextReader()
	c.received(typ, r, err)
}

// Reader states (conn.readState).
const (
	readBusy    uint8 = iota // reading or handling
	readWarm                 // in awaitWarm, waiting for the socket
	readCooling              // told by the sweeper to leave; its read deadline is in the past
)

// received handles the message NextReader returned and the connection's
// next ones while it stays warm, or ends the connection.
//
//go:noinline
func (c *conn) received(typ int, r io.Reader, err error) {
	for {
		if err != nil {
			c.end(err)
			return
		}
		var m message
		if m, err = c.readMessage(typ, r); err != nil {
			c.end(err)
			return
		}
		relayed := c.dispatch(m)
		putReadBuf(m.buf)
		// Only signals keep a reader warm: they come in bursts (an offer,
		// its answer, a run of candidates), while a join or a ping is
		// usually followed by silence, and a reader that waited warm after
		// every join would hold its grown stack for a sweep on every newly
		// joined connection.
		if relayed && c.enterLoop() {
			return // the read loop owns the connection now
		}
		if !relayed || !c.awaitWarm() {
			go c.read()
			return
		}
		typ, r, err = c.ws.NextReader()
	}
}

// awaitWarm waits for the connection's next frame on the calling, warm,
// reader, reading it into the read buffer (the read gorilla would make).
// It reports false when the reader should leave for a fresh one instead:
// the connection went idle (the sweeper cooled it); the next frame is a
// control frame (a pong after a burst, say: gorilla handles it inside
// NextReader and then waits there for the next message, which would keep
// the grown stack on an idle connection); or the connection is not a plain
// socket (no sockConn: every message gets a fresh reader). Errors are left
// for NextReader to report: the buffered reader hands an error out once and
// keeps no state from it, and gorilla, which would, never sees this one.
func (c *conn) awaitWarm() bool {
	if c.sock == nil {
		return false
	}
	if c.br.Buffered() == 0 {
		c.mu.Lock()
		c.readState, c.readRecent = readWarm, true
		c.mu.Unlock()
	}
	next, err := c.br.Peek(1) // waits in the netpoller while the socket is empty
	c.mu.Lock()
	cooled := c.readState == readCooling
	c.readState = readBusy
	if cooled {
		// Under c.mu, so after the sweeper's deadline in the past.
		_ = c.ws.SetReadDeadline(time.Unix(0, c.deadline)) // errors surface on read
	}
	c.mu.Unlock()
	switch {
	case cooled:
		return false
	case err != nil:
		return true
	}
	const controlOpcode = 0x08 // RFC 6455, 5.2: opcodes 0x8-0xF
	return next[0]&controlOpcode == 0
}

// coolLocked makes a warm reader that has seen no message since the last sweep
// leave for a fresh one, so an idle connection holds a small stack again.
// The read deadline in the past ends its wait; the reader restores it. A
// connection idle in the read loop goes to a fresh reader likewise, which
// waits with the read deadline (the loop does not watch it). c.mu is held.
func (c *conn) coolLocked() {
	if !c.readRecent {
		c.takeFromLoopLocked()
	}
	if c.readState == readWarm && !c.readRecent {
		c.readState = readCooling
		_ = c.ws.SetReadDeadline(time.Unix(1, 0)) // errors surface on read
	}
	c.readRecent = false
}

// message is one client message.
type message struct {
	c        *conn
	typ      int
	data     []byte
	buf      *readBuf // holds data; back to readPool once handled
	tooLarge bool
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

// moveReadDeadline gives the client PingInterval + PongTimeout from now to
// send its next message or pong. Reader goroutines only.
func (c *conn) moveReadDeadline(now time.Time) error {
	d := now.Add(c.h.cfg.PingInterval + c.h.cfg.PongTimeout)
	c.deadlineSet, c.deadline = now.UnixNano(), d.UnixNano()
	return c.ws.SetReadDeadline(d)
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
	if err := c.moveReadDeadline(time.Now()); err != nil {
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
	// The read deadline moves at most once a second: moving it is a timer
	// update, and per message that showed in profiles. A client that stops
	// answering pings is cut at most a second early.
	if now := time.Now(); now.UnixNano()-c.deadlineSet >= int64(time.Second) {
		_ = c.moveReadDeadline(now)
	}
	buf := readPool.Get().(*readBuf)
	buf.Reset()
	buf.lr = io.LimitedReader{R: r, N: maxBytes + 1}
	_, err := buf.ReadFrom(&buf.lr)
	buf.lr.R = nil
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
var readPool = sync.Pool{New: func() any { return new(readBuf) }}

// readBuf is a message's buffer with the limit its read goes through, kept
// together so that the limit (which ReadFrom takes as an interface) is not
// an allocation per message.
type readBuf struct {
	bytes.Buffer
	lr io.LimitedReader
}

func putReadBuf(b *readBuf) {
	if b != nil && b.Cap() <= maxPooledFrame {
		readPool.Put(b)
	}
}

// dispatch checks the limits on m and handles it. It reports whether m
// was a signal the hub relayed.
func (c *conn) dispatch(m message) (relayed bool) {
	if c.isClosing() {
		return false // drain until the writer closes the socket
	}
	if !c.allow(&c.limiter) {
		c.h.m.receivedType("")
		c.sendError(CodeRateLimited, "too many messages; this one was dropped", "")
		return false
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
			return true
		}
		c.h.handle(c, m.data)
	}
	return false
}
