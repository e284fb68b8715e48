package signaling

import (
	"bufio"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
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

	// sock and br are the socket and read buffer under ws when it is a plain
	// TCP connection (sockread.go); nil otherwise. sock points to sockv.
	sock  *sockConn
	br    *bufio.Reader
	sockv sockConn
	// deadline is the read deadline and deadlineSet when the reader last
	// moved it, in Unix nanoseconds (reader goroutines only; int64 rather
	// than time.Time keeps conn in a smaller allocation size class).
	deadline, deadlineSet int64

	// Everything an idle connection holds is in this struct, the gorilla
	// connection and the socket: channels are made only when a close needs
	// them, and the rate buckets are inline. (The flags are kept together
	// at the end: scattered, their padding took a size class.)
	mu         sync.Mutex
	queue      []outFrame // oldest first; nil while idle
	rest       []byte     // the unwritten tail of a partly written inline frame: goes first
	qbytes     int        // bytes queued, including the frame being written
	writeSince time.Time  // when the write in progress began (zero: none)
	lastPing   time.Time  // when the sweeper last queued a ping
	closeCode  int        // set with closing; 0: no close frame
	closeText  string     // ditto
	reason     string     // ditto

	readerDone chan struct{} // made on demand; closed when the reader exits
	done       chan struct{} // made on demand; closed once the socket is closed

	// The buckets are used by one goroutine at a time: the reader, then the
	// next reader.
	limiter    bucket // client messages and control frames
	errLimiter bucket // errors the client causes

	sess *session // owned by the reader goroutine

	// loopState says who reads the connection: a reader goroutine or the
	// hub's read loop (loop.go). loopFD is the socket's descriptor in the
	// loop's table once loopAdded.
	loopState atomic.Uint32
	loopFD    int32

	writing      bool // a writer goroutine runs
	closing      bool
	readerExited bool
	socketClosed bool
	loopAdded    bool // reader goroutines and the loop, in turn

	// readState says where the reader is (warm readers, read.go); the
	// sweeper cools a warm reader that has had no message for a sweep.
	readState  uint8
	readRecent bool // a message since the last sweep
}

// newConn makes the connection of a client at ip; ws follows once the
// upgrade is done.
func newConn(h *Hub, ip netip.Addr) *conn {
	return &conn{
		h:          h,
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
	c.takeFromLoopLocked() // its reader ends the connection once the socket is closed
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
	c.qbytes += len(f.b)
	if f.kind == frameText {
		c.h.m.sent.Inc()
		if !c.writing && len(c.queue) == 0 {
			// Nothing ahead of f and no writer: write it from here.
			c.writing = true
			c.mu.Unlock()
			c.writeNow(f)
			return enqOK
		}
	}
	c.queue = append(c.queue, f)
	c.kickLocked()
	c.mu.Unlock()
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

// badText strips the sentinel prefix from a decoding error.
func badText(err error) string {
	return strings.TrimPrefix(err.Error(), ErrBadMessage.Error()+": ")
}
