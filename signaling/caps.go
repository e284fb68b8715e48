package signaling

import (
	"net"
	"net/http"
	"net/netip"
)

// takeSlotLocked counts one connection (or held session) against the
// caps. h.mu must be held; the caller has checked them.
func (h *Hub) takeSlotLocked(ip netip.Addr) {
	h.nconns++
	h.perIP[ip]++
}

func (h *Hub) releaseSlotLocked(ip netip.Addr) {
	h.nconns--
	if h.perIP[ip]--; h.perIP[ip] <= 0 {
		delete(h.perIP, ip)
	}
}

// ConnState caps the HTTP connections one remote address holds before
// they become WebSockets (Config.MaxPendingPerIP). Install it as the
// public http.Server's ConnState; a connection over the cap is closed
// before its first request is read.
func (h *Hub) ConnState(c net.Conn, state http.ConnState) {
	if h.cfg.MaxPendingPerIP < 0 {
		return
	}
	key := remoteKey(c)
	h.pendMu.Lock()
	defer h.pendMu.Unlock()
	switch state {
	case http.StateNew:
		if h.pending[key] >= h.cfg.MaxPendingPerIP {
			h.m.rejected.WithLabelValues("max-pending-per-ip").Inc()
			c.Close() // refusing it
			// net/http reports StateClosed for it next; count it until then.
		}
		h.pending[key]++
	case http.StateHijacked, http.StateClosed:
		if h.pending[key]--; h.pending[key] <= 0 {
			delete(h.pending, key)
		}
	}
}

func remoteKey(c net.Conn) string {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap().String()
	}
	return c.RemoteAddr().String()
}

// reserveHeld accounts n bytes held for a session of ip against the
// per-address and hub totals; it reports false (and reserves nothing) when
// they do not fit.
func (h *Hub) reserveHeld(ip netip.Addr, n int) bool {
	h.heldMu.Lock()
	defer h.heldMu.Unlock()
	if h.heldTotal+n > h.cfg.HeldBytesTotal || h.heldByIP[ip]+n > h.cfg.HeldBytesPerIP {
		return false
	}
	h.heldTotal += n
	h.heldByIP[ip] += n
	return true
}

func (h *Hub) releaseHeld(ip netip.Addr, n int) {
	if n == 0 {
		return
	}
	h.heldMu.Lock()
	defer h.heldMu.Unlock()
	h.heldTotal -= n
	if h.heldByIP[ip] -= n; h.heldByIP[ip] <= 0 {
		delete(h.heldByIP, ip)
	}
}
