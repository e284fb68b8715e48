package signaling

import (
	"errors"
	"net"
	"time"

	"github.com/gorilla/websocket"
)

// writer writes queued frames until the queue is empty, then ends. When
// the connection is closing it sends the close frame (after the write in
// progress) and closes the socket.
func (c *conn) writer() {
	defer c.h.wg.Done()
	for {
		c.mu.Lock()
		if rest := c.rest; rest != nil {
			// The tail of a partly written frame: before anything else, a
			// close frame included, or the stream would be corrupt.
			c.rest = nil
			c.writeRest(rest)
			continue
		}
		// An abusive client still gets the errors that explain its close.
		if c.closing && (c.reason != reasonAbuse || len(c.queue) == 0) {
			c.mu.Unlock()
			c.closeSocket()
			return
		}
		if len(c.queue) == 0 {
			c.writing = false
			c.mu.Unlock()
			return
		}
		f := c.queue[0]
		c.queue[0] = outFrame{}
		c.queue = c.queue[1:]
		if len(c.queue) == 0 {
			c.queue = nil // idle connections hold no queue memory
		}
		c.writeSince = c.h.cfg.now()
		abuse := c.closing
		c.mu.Unlock()

		// The sweeper bounds a blocked write on the hub's clock; the socket
		// deadline is a backstop in real time.
		deadline := time.Now().Add(2 * c.h.cfg.WriteTimeout)
		if abuse {
			deadline = time.Now().Add(min(c.h.cfg.WriteTimeout, time.Second))
		}
		var err error
		switch f.kind {
		case framePing:
			err = c.ws.WriteControl(websocket.PingMessage, nil, deadline)
		case framePong:
			err = c.ws.WriteControl(websocket.PongMessage, f.b, deadline)
		default:
			_ = c.ws.SetWriteDeadline(deadline) // errors surface on write
			err = c.ws.WriteMessage(websocket.TextMessage, f.b)
		}

		c.mu.Lock()
		c.writeSince = time.Time{}
		if c.qbytes -= len(f.b); c.qbytes < 0 {
			c.qbytes = 0 // the queue was dropped while we wrote
		}
		if err != nil {
			if abuse {
				c.queue, c.qbytes = nil, 0
			}
			c.failLocked(0, "", writeReason(err))
		}
		c.mu.Unlock()
	}
}

// writeRest writes the tail of a partly written inline frame, with
// c.mu held on entry and released on return.
func (c *conn) writeRest(rest []byte) {
	c.writeSince = c.h.cfg.now()
	c.mu.Unlock()
	nc := c.ws.NetConn()
	_ = nc.SetWriteDeadline(time.Now().Add(2 * c.h.cfg.WriteTimeout)) // errors surface on write
	_, err := nc.Write(rest)
	c.mu.Lock()
	c.writeSince = time.Time{}
	c.qbytes = max(c.qbytes-len(rest), 0)
	if err != nil {
		c.failLocked(0, "", writeReason(err))
	}
	c.mu.Unlock()
}

// closeSocket ends the connection: the close frame when there is a code,
// a moment for the client's answer (so the code is not lost to a TCP
// reset), then the socket.
func (c *conn) closeSocket() {
	c.mu.Lock()
	code, text := c.closeCode, c.closeText
	if code != 0 {
		c.writeSince = c.h.cfg.now()
	}
	if c.readerDone == nil && !c.readerExited {
		c.readerDone = make(chan struct{})
	}
	readerDone := c.readerDone
	exited := c.readerExited
	c.mu.Unlock()
	if code != 0 {
		wait := min(c.h.cfg.WriteTimeout, time.Second)
		msg := websocket.FormatCloseMessage(code, text)
		if c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(2*c.h.cfg.WriteTimeout)) == nil && !exited {
			t := time.NewTimer(wait)
			select {
			case <-readerDone:
			case <-t.C:
			}
			t.Stop()
		}
	}
	c.ws.NetConn().Close() // unblocks the reader
	c.mu.Lock()
	c.writeSince = time.Time{}
	c.socketClosed = true
	if c.done != nil {
		close(c.done)
	}
	c.mu.Unlock()
}

// sweep is the sweeper's visit: queue a ping when one is due, and cut the
// connection when a write has been blocked for WriteTimeout.
func (c *conn) sweep(now time.Time) {
	c.mu.Lock()
	blocked := now.Sub(c.writeSince)
	stalled := !c.writeSince.IsZero() && blocked >= c.h.cfg.WriteTimeout
	pingDue := !c.closing && now.Sub(c.lastPing) >= c.h.cfg.PingInterval
	if pingDue {
		c.lastPing = now
	}
	c.coolLocked()
	c.mu.Unlock()
	if stalled {
		c.log().Info("slow consumer: write blocked, disconnecting", "blocked", blocked, "limit", c.h.cfg.WriteTimeout)
		c.fail(CloseSlowConsumer, "write blocked", reasonSlowConsumer)
		// The socket is jammed: no close frame can get through. Closing it
		// ends the blocked write.
		c.ws.NetConn().Close()
		if c.h.onCut != nil {
			c.h.onCut(-1)
		}
		return
	}
	if pingDue {
		c.enqueue(outFrame{kind: framePing})
	}
}

func writeReason(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return reasonTimeout
	}
	return reasonNetwork
}
