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
	"golang.org/x/time/rate"
)

// Disconnect reasons (metrics label, logs). The terminal ones end the
// peer's session at once; the others let it wait ResumeGrace for a resume.
const (
	reasonClientClose  = "client-close"  // a close frame from the client: terminal
	reasonTimeout      = "timeout"       // no pong or message in time
	reasonNetwork      = "network"       // the socket broke without a close frame
	reasonDrain        = "drain"         // Shutdown: terminal
	reasonSlowConsumer = "slow-consumer" // send queue overflow: terminal
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

// outFrame is one queued message; fromSession marks frames that belong to
// the peer's session (signals, presence) rather than to this connection
// (errors, pongs): only those move to a resumed connection.
type outFrame struct {
	b           []byte
	fromSession bool
}

// conn is one WebSocket connection. Its reader runs in the HTTP handler's
// goroutine (serve), its writer in a goroutine of its own fed by the queue.
type conn struct {
	h   *Hub
	ws  *websocket.Conn
	ip  netip.Addr
	log *slog.Logger

	// The send queue: a slice (no memory while idle) bounded by qcap, and
	// a doorbell for the writer.
	qmu        sync.Mutex
	queue      []outFrame
	qcap       int
	wake       chan struct{} // capacity 1
	closing    chan struct{} // closed by fail
	readerDone chan struct{}
	writerDone chan struct{}

	closeOnce sync.Once
	closeCode int    // written by fail before closing is closed
	closeText string // ditto
	reason    string // ditto

	limiter    *rate.Limiter // client messages
	errLimiter *rate.Limiter // errors the client causes

	sess *session // owned by the reader goroutine
}

func newConn(h *Hub, ws *websocket.Conn, ip netip.Addr) *conn {
	qlen := max(h.cfg.SendQueue, h.cfg.HeldMessages+2)
	return &conn{
		h:          h,
		ws:         ws,
		ip:         ip,
		log:        h.log.With("conn", randomString(6)),
		qcap:       qlen,
		wake:       make(chan struct{}, 1),
		closing:    make(chan struct{}),
		readerDone: make(chan struct{}),
		writerDone: make(chan struct{}),
		limiter:    rate.NewLimiter(rate.Limit(h.cfg.MessageRate), h.cfg.MessageBurst),
		errLimiter: rate.NewLimiter(rate.Limit(h.cfg.ErrorRate), h.cfg.ErrorBurst),
	}
}

// fail asks the connection to close with code (0: no close frame) and
// records reason. The first call wins.
func (c *conn) fail(code int, text, reason string) {
	c.closeOnce.Do(func() {
		c.closeCode, c.closeText, c.reason = code, text, reason
		close(c.closing)
	})
}

func (c *conn) isClosing() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

type enqResult int

const (
	enqOK enqResult = iota
	enqClosing
	enqFull
)

// enqueue queues f without blocking. A full queue fails the connection as a
// slow consumer.
func (c *conn) enqueue(f outFrame) enqResult {
	if c.isClosing() {
		return enqClosing
	}
	c.qmu.Lock()
	if len(c.queue) >= c.qcap {
		c.qmu.Unlock()
		c.log.Info("slow consumer: send queue full, disconnecting", "queue", c.qcap)
		c.fail(CloseSlowConsumer, "send queue overflow", reasonSlowConsumer)
		// The socket is jammed: the writer may be blocked in a write that
		// would only time out. Close it now so nothing waits on it.
		c.ws.NetConn().Close()
		return enqFull
	}
	c.queue = append(c.queue, f)
	c.qmu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default: // the writer has a pending wake-up already
	}
	c.h.m.sent.Inc()
	return enqOK
}

// pop takes the oldest queued frame.
func (c *conn) pop() (outFrame, bool) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if len(c.queue) == 0 {
		return outFrame{}, false
	}
	f := c.queue[0]
	c.queue[0] = outFrame{}
	c.queue = c.queue[1:]
	if len(c.queue) == 0 {
		c.queue = nil // idle connections hold no queue memory
	}
	return f, true
}

// reply queues a connection-level message (error, pong, welcome).
func (c *conn) reply(m ServerMessage) { c.enqueue(outFrame{b: encode(m)}) }

// sendError answers a client mistake. A client that causes errors faster
// than ErrorRate/ErrorBurst allow is disconnected (1008).
func (c *conn) sendError(code, msg, peer string) {
	c.h.m.errors.WithLabelValues(code).Inc()
	c.reply(ServerMessage{Type: TypeError, Code: code, Message: msg, Peer: peer})
	if !c.errLimiter.Allow() {
		c.log.Info("closing abusive connection", "last_error", code)
		c.fail(ClosePolicy, "too many errors", reasonAbuse)
	}
}

// serve runs the connection until it ends, then settles its session.
func (c *conn) serve() {
	c.h.wg.Add(1)
	go func() {
		defer c.h.wg.Done()
		c.writer()
	}()
	err := c.readLoop()
	close(c.readerDone)
	reason := classify(err)
	c.fail(0, "", reason) // no-op when the hub already chose a reason
	<-c.writerDone
	c.ws.Close() // already closed by the writer in most cases
	reason = c.reason
	c.h.m.disconnects.WithLabelValues(reason).Inc()
	c.log.Debug("connection closed", "reason", reason)
	if s := c.sess; s != nil {
		c.h.detach(s, c, reason)
	}
	if c.h.onClosed != nil {
		c.h.onClosed(reason)
	}
}

// classify names why a read failed, when the hub did not close the
// connection itself.
func classify(err error) string {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		if ce.Code == websocket.CloseAbnormalClosure {
			return reasonNetwork // EOF without a close frame
		}
		return reasonClientClose
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

func (c *conn) readLoop() error {
	maxBytes := int64(c.h.cfg.MaxMessageBytes)
	c.ws.SetReadLimit(4 * maxBytes)
	_ = c.ws.SetReadDeadline(c.readDeadline()) // errors surface on read
	c.ws.SetPongHandler(func(string) error {
		return c.ws.SetReadDeadline(c.readDeadline())
	})
	for {
		typ, r, err := c.ws.NextReader()
		if err != nil {
			return err
		}
		_ = c.ws.SetReadDeadline(c.readDeadline())
		data, err := io.ReadAll(io.LimitReader(r, maxBytes+1))
		if err != nil {
			return err
		}
		tooLarge := int64(len(data)) > maxBytes
		if tooLarge {
			// Discard the rest; beyond the hard limit this fails and gorilla
			// closes with 1009.
			if _, err := io.Copy(io.Discard, r); err != nil {
				return err
			}
		}
		if c.isClosing() {
			continue // drain until the writer closes the socket
		}
		if !c.limiter.Allow() {
			c.h.m.receivedType("")
			c.sendError(CodeRateLimited, "too many messages; this one was dropped", "")
			continue
		}
		switch {
		case tooLarge:
			c.h.m.receivedType("")
			c.sendError(CodeTooLarge, "message larger than the limit; dropped", "")
		case typ != websocket.TextMessage:
			c.h.m.receivedType("")
			c.sendError(CodeBadMessage, "only text frames carry messages", "")
		default:
			c.h.handle(c, data)
		}
	}
}

func (c *conn) writer() {
	defer close(c.writerDone)
	ping := time.NewTicker(c.h.cfg.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.closing:
			if c.reason == reasonAbuse {
				// Let the client read the errors that explain the close.
				c.flush(time.Now().Add(min(c.h.cfg.WriteTimeout, time.Second)))
			}
			if c.closeCode != 0 {
				// Close handshake: send our close frame and give the client a
				// moment to answer with its own before closing the socket, so
				// the close code is not lost to a TCP reset.
				wait := min(c.h.cfg.WriteTimeout, time.Second)
				msg := websocket.FormatCloseMessage(c.closeCode, c.closeText)
				if c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(wait)) == nil {
					t := time.NewTimer(wait)
					select {
					case <-c.readerDone:
					case <-t.C:
					}
					t.Stop()
				}
			}
			c.ws.NetConn().Close() // unblocks the reader
			return
		case <-c.wake:
			for !c.isClosing() {
				f, ok := c.pop()
				if !ok {
					break
				}
				_ = c.ws.SetWriteDeadline(time.Now().Add(c.h.cfg.WriteTimeout))
				if err := c.ws.WriteMessage(websocket.TextMessage, f.b); err != nil {
					c.fail(0, "", writeReason(err))
					c.ws.NetConn().Close()
					return
				}
			}
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.h.cfg.WriteTimeout)); err != nil {
				c.fail(0, "", writeReason(err))
				c.ws.NetConn().Close()
				return
			}
		}
	}
}

// flush writes what is queued, without blocking past deadline.
func (c *conn) flush(deadline time.Time) {
	_ = c.ws.SetWriteDeadline(deadline)
	for {
		f, ok := c.pop()
		if !ok || c.ws.WriteMessage(websocket.TextMessage, f.b) != nil {
			return
		}
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
