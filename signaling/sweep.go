package signaling

import "time"

// sweepPeriod is how often the sweeper visits every connection: often
// enough that pings keep their interval and blocked writes are cut close to
// WriteTimeout, on one goroutine for the whole hub instead of a timer per
// connection.
func (h *Hub) sweepPeriod() time.Duration {
	return min(max(min(h.cfg.PingInterval, h.cfg.WriteTimeout)/4, 10*time.Millisecond), 5*time.Second)
}

// sweeper runs from the first connection until Shutdown.
func (h *Hub) sweeper() {
	defer h.wg.Done()
	t := time.NewTicker(h.sweepPeriod())
	defer t.Stop()
	var buf []*conn
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			buf = h.sweep(buf[:0])
		}
	}
}

// sweep visits every connection once on the hub's clock. buf is reused
// between sweeps.
func (h *Hub) sweep(buf []*conn) []*conn {
	h.mu.Lock()
	for c := range h.conns {
		buf = append(buf, c)
	}
	h.mu.Unlock()
	now := h.cfg.now()
	for i, c := range buf {
		c.sweep(now)
		buf[i] = nil
	}
	return buf
}
