package signaling

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Disconnect reasons (metrics label, logs). The terminal ones end the
// peer's session at once; the others let it wait ResumeGrace for a resume.
const (
	reasonClientClose  = "client-close"  // a 1000/1001 close frame from the client: terminal
	reasonTimeout      = "timeout"       // no pong or message in time
	reasonNetwork      = "network"       // the socket broke, or the client failed it (1002, 1007, ...)
	reasonDrain        = "drain"         // Shutdown: terminal
	reasonSlowConsumer = "slow-consumer" // too many bytes queued, or a write blocked too long: terminal
	reasonAbuse        = "abuse"         // too many errors: terminal
	reasonTooLarge     = "too-large"     // above the hard size limit: terminal
	reasonReplaced     = "replaced"      // the session moved to a newer connection
)

func terminal(reason string) bool {
	switch reason {
	case reasonTimeout, reasonNetwork:
		return false
	}
	return true
}

// Kinds of outgoing frames.
const (
	frameText = iota
	framePing
	framePong
)

// outFrame is one queued message; fromSession marks frames that belong to
// the peer's session (signals, presence) rather than to this connection
// (errors, pongs): only those move to a resumed connection.
type outFrame struct {
	b           []byte
	fromSession bool
	kind        uint8
}

// conn is one WebSocket connection. Its reader is a goroutine of its own
// (the HTTP handler returns after the upgrade), a fresh one after each
// message. Its writer exists only
// while there is something to write: enqueue starts one, and it ends when
// the queue is empty, so an idle connection costs one parked goroutine and
// no write buffer. Pings come from the hub's sweeper, which also cuts
// connections whose writes stay blocked.
type conn struct {
	h  *Hub
	ws *websocket.Conn
	ip netip.Addr
	id string // for logs

	// Everything an idle connection holds is in this struct, the gorilla
	// connection and the socket: channels are made only when a close needs
	// them, and the rate buckets are inline.
	mu         sync.Mutex
	queue      []outFrame // oldest first; nil while idle
	qbytes     int        // bytes queued, including the frame being written
	writing    bool       // a writer goroutine runs
	writeSince time.Time  // when the write in progress began (zero: none)
	lastPing   time.Time  // when the sweeper last queued a ping
	closing    bool
	closeCode  int    // set with closing; 0: no close frame
	closeText  string // ditto
	reason     string // ditto

	readerExited bool
	readerDone   chan struct{} // made on demand; closed when the reader exits
	socketClosed bool
	done         chan struct{} // made on demand; closed once the socket is closed

	// The buckets are used by one goroutine at a time: the reader, then the
	// handler it hands a message to, then the next reader.
	limiter    bucket // client messages and control frames
	errLimiter bucket // errors the client causes

	sess *session // owned by the reader goroutine
}

func newConn(h *Hub, ws *websocket.Conn, ip netip.Addr) *conn {
	return &conn{
		h:          h,
		ws:         ws,
		ip:         ip,
		id:         randomString(6),
		lastPing:   h.cfg.now(),
		limiter:    bucket{rate: h.cfg.MessageRate, burst: h.cfg.MessageBurst},
		errLimiter: bucket{rate: h.cfg.ErrorRate, burst: h.cfg.ErrorBurst},
	}
}

func (c *conn) log() *slog.Logger { return c.h.log.With("conn", c.id) }

// allow takes one token of b on the hub's clock.
func (c *conn) allow(b *bucket) bool { return b.allow(c.h.cfg.now()) }

// fail asks the connection to close with code (0: no close frame) and
// records reason. The first call wins. The writer sends the close frame
// after the write in progress, then closes the socket.
func (c *conn) fail(code int, text, reason string) {
	c.mu.Lock()
	c.failLocked(code, text, reason)
	c.mu.Unlock()
}

func (c *conn) failLocked(code int, text, reason string) {
	if c.closing {
		return
	}
	c.closing = true
	c.closeCode, c.closeText, c.reason = code, text, reason
	if reason == reasonSlowConsumer {
		// Nothing queued will be read: free it now.
		c.queue, c.qbytes = nil, 0
	}
	c.kickLocked()
}

// kickLocked makes sure a writer runs.
func (c *conn) kickLocked() {
	if c.writing {
		return
	}
	c.writing = true
	c.h.wg.Add(1)
	go c.writer()
}

func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

type enqResult int

const (
	enqOK enqResult = iota
	enqClosing
	enqFull
)

// enqueue queues f without blocking. When the queued bytes pass
// SendQueueBytes the connection is cut as a slow consumer.
func (c *conn) enqueue(f outFrame) enqResult {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return enqClosing
	}
	if c.qbytes+len(f.b) > c.h.cfg.SendQueueBytes {
		queued := c.qbytes
		c.failLocked(CloseSlowConsumer, "send queue overflow", reasonSlowConsumer)
		c.mu.Unlock()
		c.log().Info("slow consumer: send queue full, disconnecting", "queued_bytes", queued, "limit", c.h.cfg.SendQueueBytes)
		if c.h.onCut != nil {
			c.h.onCut(queued + len(f.b))
		}
		return enqFull
	}
	c.queue = append(c.queue, f)
	c.qbytes += len(f.b)
	c.kickLocked()
	c.mu.Unlock()
	if f.kind == frameText {
		c.h.m.sent.Inc()
	}
	return enqOK
}

// reply queues a connection-level message (error, pong, welcome).
func (c *conn) reply(m ServerMessage) { c.enqueue(outFrame{b: encode(m)}) }

// sendError answers a client mistake. A client that causes errors faster
// than ErrorRate/ErrorBurst allow is disconnected (1008).
func (c *conn) sendError(code, msg, peer string) {
	c.h.m.errors.WithLabelValues(code).Inc()
	c.reply(ServerMessage{Type: TypeError, Code: code, Message: msg, Peer: peer})
	c.chargeError(code)
}

// notify answers with an error the client did not cause (a race the hub
// saw, such as a signal to a peer that left a moment ago): it costs
// nothing from the error budget.
func (c *conn) notify(code, msg, peer string) {
	c.h.m.errors.WithLabelValues(code).Inc()
	c.reply(ServerMessage{Type: TypeError, Code: code, Message: msg, Peer: peer})
}

func (c *conn) chargeError(code string) {
	if !c.allow(&c.errLimiter) {
		c.log().Info("closing abusive connection", "last_error", code)
		c.fail(ClosePolicy, "too many errors", reasonAbuse)
	}
}

// start begins reading in a goroutine of the connection's own.
func (c *conn) start() {
	c.ws.SetReadLimit(4 * int64(c.h.cfg.MaxMessageBytes))
	_ = c.ws.SetReadDeadline(c.readDeadline()) // errors surface on read
	c.ws.SetPongHandler(func(s string) error { return c.control(false, s) })
	c.ws.SetPingHandler(func(s string) error { return c.control(true, s) })
	go c.read()
}

// read reads one message and hands it to one of the hub's handler
// goroutines, which handles it and then starts a fresh reader for the
// next. Handling a message (JSON, the store, encoding) needs an 8 KiB
// stack: on the handlers, which keep theirs, it costs no stack growth per
// message, and the readers, one parked per idle connection, stay at 2 KiB.
func (c *conn) read() {
	// While the connection is idle this frame and NextReader's are all
	// the stack holds: together under the 2 KiB a goroutine starts with.
	typ, r, err := c.ws.NextReader()
	c.received(typ, r, err)
}

// received passes the message NextReader returned to a handler, or ends
// the connection.
//
//go:noinline
func (c *conn) received(typ int, r io.Reader, err error) {
	if err == nil {
		var m message
		if m, err = c.readMessage(typ, r); err == nil {
			c.h.handleLater(m)
			return
		}
	}
	c.end(err)
}

// message is one client message on its way to a handler goroutine.
type message struct {
	c        *conn
	typ      int
	data     []byte
	tooLarge bool
}

// process handles m, then reads the connection's next message.
func (m message) process() {
	m.c.dispatch(m)
	go m.c.read()
}

// end settles the connection after its reader stopped with err.
func (c *conn) end(err error) {
	c.mu.Lock()
	c.readerExited = true
	if c.readerDone != nil {
		close(c.readerDone)
	}
	c.mu.Unlock()
	c.fail(0, "", classify(err)) // no-op when the hub already chose a reason
	c.mu.Lock()
	if !c.socketClosed {
		c.done = make(chan struct{})
		done := c.done
		c.mu.Unlock()
		<-done
	} else {
		c.mu.Unlock()
	}
	c.ws.Close() // already closed by the writer
	c.mu.Lock()
	reason := c.reason
	c.mu.Unlock()
	c.h.m.disconnects.WithLabelValues(reason).Inc()
	c.h.log.Debug("connection closed", "conn", c.id, "reason", reason)
	if s := c.sess; s != nil {
		c.h.detach(s, c, reason)
	}
	if c.h.onClosed != nil {
		c.h.onClosed(reason)
	}
	c.h.connEnded(c)
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
	data, err := io.ReadAll(io.LimitReader(r, maxBytes+1))
	if err != nil {
		return message{}, err
	}
	tooLarge := int64(len(data)) > maxBytes
	if tooLarge {
		// Discard the rest; beyond the hard limit this fails and gorilla
		// closes with 1009.
		if _, err := io.Copy(io.Discard, r); err != nil {
			return message{}, err
		}
		data = nil
	}
	return message{c: c, typ: typ, data: data, tooLarge: tooLarge}, nil
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
		c.h.handle(c, m.data)
	}
}

// writer writes queued frames until the queue is empty, then ends. When
// the connection is closing it sends the close frame (after the write in
// progress) and closes the socket.
func (c *conn) writer() {
	defer c.h.wg.Done()
	for {
		c.mu.Lock()
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

// badText strips the sentinel prefix from a decoding error.
func badText(err error) string {
	return strings.TrimPrefix(err.Error(), ErrBadMessage.Error()+": ")
}

// bucket is a token bucket on the hub's clock, small enough to live inside
// conn (rate.Limiter is a separate allocation of 80 bytes, two per
// connection). Not safe for concurrent use.
type bucket struct {
	rate   float64 // tokens per second
	burst  int
	tokens float64
	last   int64 // UnixNano of the last take; 0: never (full)
}

func (b *bucket) allow(now time.Time) bool {
	n := now.UnixNano()
	if b.last == 0 {
		b.tokens = float64(b.burst)
	} else if el := n - b.last; el > 0 {
		b.tokens = min(float64(b.burst), b.tokens+b.rate*float64(el)/1e9)
	}
	b.last = n
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
