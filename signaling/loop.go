package signaling

import (
	"bufio"
	"errors"
)

// The read loop: a connection that is relaying signals is read by one
// goroutine for the whole hub instead of its own reader. The loop waits on
// an epoll set holding those connections' sockets (loop_linux.go), and for
// each one that became readable it reads what the socket holds, without
// waiting, into the connection's read buffer and hands each whole frame in
// the buffer to gorilla, which then parses it from the buffer alone. A
// burst of messages on many connections costs one goroutine wake-up, and
// no read fails with EAGAIN: edge-triggered readiness says when data came,
// and a read shorter than asked says the socket is empty.
//
// Ownership of a connection's reading moves between its reader goroutine
// and the loop, never both (conn.loopState):
//
//   - A reader goroutine that has just relayed a signal, with the read
//     buffer empty and the socket drained by its last read, hands the
//     connection to the loop (enterLoop) and exits, instead of waiting warm
//     (awaitWarm). The socket is added to the epoll set the first time.
//   - The loop gives it back to a fresh reader goroutine (leaveLoop) for
//     anything but a whole, final, masked data frame that fits the read
//     buffer (wholeFrame): control frames, fragments, protocol errors, big
//     messages, the end of the stream. It does the same after any message
//     that is not a signal (joins, errors: usually followed by silence, and
//     their handling may take longer), when the connection is closing, and
//     when the sweeper finds it idle for a sweep (coolLocked: the reader
//     goroutine keeps the read deadline, which nothing in the loop waits
//     on).
//
// Readiness seen while a reader goroutine owns the connection is recorded
// (loopPending), so a hand-over cannot sleep through data that came after
// the reader's last read: it is refused and the reader reads on.
//
// The loop runs only with the hub's own store: in cluster mode store calls
// may wait on Redis, which must not hold up every other connection.

// Loop states (conn.loopState).
const (
	loopOff     uint32 = iota // a reader goroutine owns the reading
	loopPending               // ditto, and the socket became readable meanwhile
	loopIdle                  // the loop owns it and waits for the socket
	loopBusy                  // the loop is reading or handling it
)

// enterLoop hands the connection to the read loop after its reader relayed
// a signal; true means the loop owns it now and the reader must exit. Reader
// goroutines only.
func (c *conn) enterLoop() bool {
	if c.sock == nil || !c.sock.drained || c.br.Buffered() != 0 {
		return false
	}
	l := c.h.readLoop()
	if l == nil {
		return false
	}
	if !c.loopAdded {
		if !l.add(c) {
			return false
		}
		c.loopAdded = true
	}
	for checked := false; ; checked = true {
		c.mu.Lock()
		if c.closing {
			c.mu.Unlock()
			return false
		}
		if c.loopState.CompareAndSwap(loopOff, loopIdle) {
			c.readRecent = true
			c.mu.Unlock()
			return true
		}
		// The socket became readable while this reader owned it, maybe
		// after its last read. Clear the mark, then look without waiting:
		// data goes to the caller's read, an empty socket lets the hand-over
		// try again. (The mark is usually the data just handled: the loop
		// sees all readiness on its sockets.)
		c.loopState.Store(loopOff)
		c.mu.Unlock()
		if checked {
			return false
		}
		c.sock.nowait = true
		_, err := c.br.Peek(1)
		c.sock.nowait = false
		if !errors.Is(err, errWouldBlock) {
			return false // data, or an error the reader meets again
		}
	}
}

// loopEvent is the loop's answer to the socket becoming readable.
func (c *conn) loopEvent() {
	for {
		switch c.loopState.Load() {
		case loopIdle:
			if c.loopState.CompareAndSwap(loopIdle, loopBusy) {
				c.serveLoop()
				return
			}
		case loopOff:
			if c.loopState.CompareAndSwap(loopOff, loopPending) {
				return
			}
		default:
			return
		}
	}
}

// serveLoop reads the socket until it is empty and handles every whole
// frame buffered, on the loop's goroutine; it ends with the connection idle
// in the loop or handed to a reader goroutine.
func (c *conn) serveLoop() {
	limit := c.h.cfg.MaxMessageBytes
	handled := false
	c.sock.drained = false // readiness means bytes came after the last read
	for {
		b, _ := c.br.Peek(c.br.Buffered())
		size, st := wholeFrame(b, limit)
		switch {
		case st == frameOther || size > c.br.Size():
			c.leaveLoop()
			return
		case st == frameWhole:
			if !c.loopMessage() {
				return
			}
			handled = true
			continue
		case c.sock.drained:
			// Part of a frame, and nothing more until the next readiness.
			c.parkLoop(handled)
			return
		}
		c.sock.nowait = true
		_, err := c.br.Peek(size) // reads until size bytes are in, or the socket is empty
		c.sock.nowait = false
		if err != nil && !errors.Is(err, errWouldBlock) && !errors.Is(err, bufio.ErrBufferFull) {
			// The end of the stream or a broken socket: the reader sees it
			// again and ends the connection. The buffered reader keeps no
			// error, and gorilla never saw this one.
			c.leaveLoop()
			return
		}
	}
}

// loopMessage has gorilla read the whole message at the head of the read
// buffer and handles it. It reports whether the loop keeps the connection.
func (c *conn) loopMessage() bool {
	typ, r, err := c.ws.NextReader()
	var m message
	if err == nil {
		m, err = c.readMessage(typ, r)
	}
	if err != nil {
		c.loopState.Store(loopOff)
		go c.end(err)
		return false
	}
	relayed := c.dispatch(m)
	putReadBuf(m.buf)
	if !relayed {
		c.leaveLoop()
		return false
	}
	return true
}

// leaveLoop gives the connection to a fresh reader goroutine. The loop
// only, while it owns the connection.
func (c *conn) leaveLoop() {
	c.loopState.Store(loopOff)
	go c.read()
}

// parkLoop leaves the connection idle in the loop until its socket is
// readable again, unless it is closing: then a reader goroutine drains it
// until the writer closes the socket, and ends it.
func (c *conn) parkLoop(handled bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if handled {
		c.readRecent = true
	}
	if c.closing {
		c.leaveLoop()
		return
	}
	if c.h.onLoopPark != nil {
		c.h.onLoopPark(c.br.Buffered())
	}
	c.loopState.Store(loopIdle)
}

// takeFromLoopLocked gives a connection idle in the loop to a fresh reader
// goroutine: for a close (the reader ends the connection) or when it has
// been idle for a sweep. c.mu is held.
func (c *conn) takeFromLoopLocked() {
	if c.loopState.CompareAndSwap(loopIdle, loopOff) {
		go c.read()
	}
}
