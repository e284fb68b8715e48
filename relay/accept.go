package relay

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Accept back-off: doubling from acceptBackoffMin to acceptBackoffMax, and
// after acceptFailPersistent failures in a row the listener counts as
// failing (logged as an error, /readyz answers 503) until one succeeds.
const (
	acceptBackoffMin     = 5 * time.Millisecond
	acceptBackoffMax     = time.Second
	acceptFailPersistent = 8
)

// acceptRetry accepts the next connection, backing off and retrying on
// errors (EMFILE, ENFILE, ENOBUFS, ...) instead of returning them: pion's
// accept loop exits on its first error, which would silently stop the
// listener for good. It returns an error only once the listener is closed.
func (l *serverListener) acceptRetry() (net.Conn, error) {
	delay := acceptBackoffMin
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			l.health.succeeded()
			return c, nil
		}
		select {
		case <-l.closed:
			return nil, err
		default:
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		l.s.metrics.acceptErrors.Inc()
		l.health.failed(err)
		if !l.sleep(delay) {
			return nil, net.ErrClosed
		}
		delay = min(2*delay, acceptBackoffMax)
	}
}

// sleep waits d or until the listener closes (false).
func (l *serverListener) sleep(d time.Duration) bool {
	if l.sleepFn != nil {
		return l.sleepFn(d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.closed:
		return false
	}
}

// acceptHealth tracks one listener's run of Accept failures; it is used
// only by that listener's accept goroutine.
type acceptHealth struct {
	s        *Server
	addr     string
	fails    int
	failing  bool
	failedAt time.Time
}

func (h *acceptHealth) failed(err error) {
	h.fails++
	switch {
	case h.fails == 1:
		h.failedAt = time.Now()
		h.s.log.Warn("accept failed, retrying with back-off", "listener", h.addr, "err", err)
	case h.fails == acceptFailPersistent && !h.failing:
		h.failing = true
		h.s.acceptFailing.Add(1)
		h.s.log.Error("accept keeps failing: listener not ready", "listener", h.addr, "err", err,
			"failures", h.fails, "since", h.failedAt)
	}
}

func (h *acceptHealth) succeeded() {
	if h.fails == 0 {
		return
	}
	if h.failing {
		h.failing = false
		h.s.acceptFailing.Add(-1)
		h.s.log.Info("accept recovered", "listener", h.addr, "failures", h.fails)
	}
	h.fails = 0
}

// connLimiter caps simultaneous stream connections in total and per
// source. A limit <= 0 is no limit.
type connLimiter struct {
	total, perSource int

	mu    sync.Mutex
	n     int
	bySrc map[netip.Addr]int
}

func newConnLimiter(total, perSource int) *connLimiter {
	return &connLimiter{total: total, perSource: perSource, bySrc: map[netip.Addr]int{}}
}

func (c *connLimiter) acquire(src netip.Addr) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if (c.total > 0 && c.n >= c.total) || (c.perSource > 0 && c.bySrc[src] >= c.perSource) {
		return false
	}
	c.n++
	c.bySrc[src]++
	return true
}

func (c *connLimiter) release(src netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n--
	if c.bySrc[src]--; c.bySrc[src] <= 0 {
		delete(c.bySrc, src)
	}
}
