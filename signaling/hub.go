package signaling

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Hub is a WebSocket signaling hub: rooms of peers that exchange opaque
// signals (SDP descriptions, ICE candidates) by peer id. Serve its Handler
// on the public listener and its AdminHandler on an internal one; call
// Shutdown to drain.
type Hub struct {
	cfg      Config
	log      *slog.Logger
	m        *metrics
	store    Store
	cluster  ClusterStore // nil unless the store is shared between nodes
	upgrader websocket.Upgrader

	// wg counts connection goroutines and pending timers.
	wg sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	nconns   int // connections plus sessions waiting for a resume
	conns    map[*conn]struct{}
	perIP    map[netip.Addr]int  // ditto, per client address
	sessions map[string]*session // by resume token
	sweeping bool
	stop     chan struct{} // closed by Shutdown; ends the sweeper

	// loop is the read loop (loop.go), started with the first connection
	// that relays a signal; nil in cluster mode, when the system has none,
	// or when noLoop (tests of the reader goroutines alone).
	loopOnce sync.Once
	loop     *readLoop
	noLoop   bool
	// noSock (tests) serves connections as Windows does: no raw socket
	// reads or inline writes (sockio_windows.go), so no read loop either.
	noSock bool

	pendMu  sync.Mutex
	pending map[string]int // pre-upgrade HTTP connections by remote address

	heldMu    sync.Mutex
	heldTotal int
	heldByIP  map[netip.Addr]int

	iceByIP, iceByToken *keyedLimiter
	originLog           *logLimiter
	recentlyLeft        *recentSet // peer ids that left a moment ago

	// onDetach, when set (tests), is called after a peer's connection broke
	// and its session started waiting for a resume.
	onDetach func(id string)
	// onClosed, when set (tests), is called after a connection ended and
	// its session was settled, with the disconnect reason.
	onClosed func(reason string)
	// onCut, when set (tests), is called when the hub cuts a slow consumer,
	// with the bytes that would have been queued (-1: a blocked write).
	onCut func(queued int)
	// onLoopPark, when set (tests), is called by the read loop as it leaves
	// a connection idle, with the bytes of a partial frame it keeps.
	onLoopPark func(buffered int)
}

// NewHub validates cfg and returns a hub. It starts no goroutines until
// connections arrive.
func NewHub(cfg Config) (*Hub, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("signaling: invalid config: %w", err)
	}
	h := &Hub{
		cfg:      cfg,
		log:      cfg.Logger,
		store:    cfg.Store,
		conns:    make(map[*conn]struct{}),
		perIP:    make(map[netip.Addr]int),
		sessions: make(map[string]*session),
		stop:     make(chan struct{}),
		pending:  make(map[string]int),
		heldByIP: make(map[netip.Addr]int),
		iceByIP:  newKeyedLimiter(cfg.ICERate, cfg.ICEBurst, 1<<16),
		// Tokens are long-lived compared with the bucket: one table entry
		// per token seen recently.
		iceByToken:   newKeyedLimiter(cfg.ICERate, cfg.ICEBurst, 1<<16),
		originLog:    newLogLimiter(),
		recentlyLeft: newRecentSet(1<<14, max(time.Minute, cfg.ResumeGrace)),
	}
	h.cluster, _ = cfg.Store.(ClusterStore)
	h.m = newMetrics(cfg.Store)
	h.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		// Idle connections should cost little: a small read buffer of the
		// connection's own (hijackWriter supplies it, readBufSize; the HTTP
		// server's 4 KiB one is released), and write buffers pooled between
		// writes.
		WriteBufferSize: 4096,
		WriteBufferPool: &sync.Pool{},
		// The origin is checked before the upgrade (serveWS), so the
		// refusal is counted and logged.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	return h, nil
}

// Handler serves the public endpoints:
//
//	GET /ws       the WebSocket (docs/protocol.md)
//	GET /ice      {"iceServers":[...]} for pages outside a room; needs a
//	              join token (Authorization: Bearer, or ?token=) unless the
//	              hub is open, and an allowed Origin
//	GET /healthz  200 "ok", 503 while draining
//
// Other paths get 404, so mount it next to other handlers, for example
// mux.Handle("/ws", h.Handler()) and so on for each path.
func (h *Hub) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", h.serveWS)
	mux.HandleFunc("GET /ice", h.serveICE)
	mux.HandleFunc("OPTIONS /ice", h.serveICE)
	mux.HandleFunc("GET /healthz", h.serveHealth)
	return mux
}

// Paths lists the paths Handler serves, for callers that compose muxes.
var Paths = []string{"/ws", "/ice", "/healthz"}

// AdminHandler serves /metrics (Prometheus, the hub's own registry, no
// per-peer labels) and /healthz. Keep it on an internal listener.
func (h *Hub) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(h.m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", h.serveHealth)
	return mux
}

func (h *Hub) serveHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if h.draining() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "draining")
		return
	}
	fmt.Fprintln(w, "ok")
}

func (h *Hub) draining() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// Shutdown drains the hub: it refuses new connections, closes every
// connection with 1012 (service restart: clients reconnect), ends every
// session and waits for the hub's goroutines. When ctx ends first it closes
// the remaining sockets outright and returns ctx.Err(). It may be called
// more than once.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	if !h.closed {
		close(h.stop)
	}
	h.closed = true
	conns := make([]*conn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	sessions := make([]*session, 0, len(h.sessions))
	for _, s := range h.sessions {
		sessions = append(sessions, s)
	}
	h.mu.Unlock()

	for _, c := range conns {
		c.fail(CloseServiceRestart, "service restart", reasonDrain)
	}
	// Sessions waiting for a resume have no connection to end them.
	for _, s := range sessions {
		s.mu.Lock()
		idle := s.conn == nil
		s.mu.Unlock()
		switch {
		case idle && h.cluster != nil:
			h.stopGrace(s) // parked below, for another node
		case idle:
			h.endSession(s, reasonDrain)
		}
	}
	h.loopOnce.Do(func() {}) // no loop starts from now on
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		if h.loop != nil {
			h.loop.stop() // every connection has ended: none is in the loop
		}
		if h.cluster != nil {
			h.parkSessions(ctx)
		}
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, c := range conns {
			c.ws.NetConn().Close() // forcing readers out
		}
		if h.loop != nil {
			h.loop.stop() // every connection was failed: none stays in the loop
		}
		return ctx.Err()
	}
}

// refuseBrowser answers a request whose Host or Origin the hub does not
// serve, logging at a bounded rate and never more than a prefix of what
// the client sent.
func (h *Hub) refuseBrowser(w http.ResponseWriter, r *http.Request, what string) bool {
	reason, status := "", 0
	switch {
	case !hostAllowed(h.cfg.AllowedHosts, r):
		reason, status = "host", http.StatusMisdirectedRequest
	case !originAllowed(h.cfg.AllowedOrigins, h.cfg.AllowedHosts, r):
		reason, status = "origin", http.StatusForbidden
	default:
		return false
	}
	if what == "websocket" {
		h.m.rejected.WithLabelValues(reason).Inc()
	} else {
		h.m.iceRequests.WithLabelValues(reason).Inc()
	}
	if ok, suppressed := h.originLog.allow(h.cfg.now()); ok {
		h.log.Info(what+" refused", "reason", reason+" not allowed",
			"origin", truncate(r.Header.Get("Origin"), 64), "host", truncate(r.Host, 64),
			"suppressed", suppressed)
	}
	if reason == "origin" {
		refuseOrigin(w, r)
	} else {
		http.Error(w, "host not allowed: start the hub with --public-host <this name>", status)
	}
	return true
}

// serveWS upgrades GET /ws after the host, origin and connection-cap
// checks.
func (h *Hub) serveWS(w http.ResponseWriter, r *http.Request) {
	if h.refuseBrowser(w, r, "websocket") {
		return
	}
	ip := h.cfg.ClientIP(r)
	h.mu.Lock()
	switch {
	case h.closed:
		h.mu.Unlock()
		h.m.rejected.WithLabelValues("draining").Inc()
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	case h.cfg.MaxConns > 0 && h.nconns >= h.cfg.MaxConns:
		h.mu.Unlock()
		h.m.rejected.WithLabelValues("max-conns").Inc()
		h.log.Warn("websocket refused", "reason", "connection cap", "max", h.cfg.MaxConns)
		http.Error(w, "too many connections", http.StatusServiceUnavailable)
		return
	case h.cfg.MaxConnsPerIP > 0 && h.perIP[ip] >= h.cfg.MaxConnsPerIP:
		h.mu.Unlock()
		h.m.rejected.WithLabelValues("max-conns-per-ip").Inc()
		h.log.Info("websocket refused", "reason", "per-address cap", "ip", ip)
		http.Error(w, "too many connections from your address", http.StatusTooManyRequests)
		return
	}
	h.takeSlotLocked(ip)
	h.wg.Add(1)
	if !h.sweeping {
		h.sweeping = true
		h.wg.Add(1)
		go h.sweeper()
	}
	h.mu.Unlock()
	c := newConn(h, ip)
	hw := &hijackWriter{ResponseWriter: w, sock: &c.sockv, noSock: h.noSock}
	ws, err := h.upgrader.Upgrade(hw, r, nil)
	if err != nil {
		// The upgrader has answered with an HTTP error.
		h.m.rejected.WithLabelValues("handshake").Inc()
		h.releaseConn(ip)
		return
	}
	c.ws, c.br = ws, hw.br
	if hw.useSock {
		c.sock = &c.sockv
	}
	c.lastPing = h.cfg.now()
	h.mu.Lock()
	h.conns[c] = struct{}{}
	closed := h.closed
	h.mu.Unlock()
	if closed {
		c.fail(CloseServiceRestart, "service restart", reasonDrain)
	}
	h.m.conns.Inc()
	// The connection lives on in its own goroutine and this handler
	// returns: net/http then drops its per-request buffers, request and
	// context, which a handler blocked for the connection's lifetime would
	// keep reachable (measured: 29 -> 24 KiB per idle connection).
	c.start()
}

// readLoop returns the hub's read loop, starting it on first use; nil when
// there is none.
func (h *Hub) readLoop() *readLoop {
	h.loopOnce.Do(func() {
		if h.cluster != nil || h.noLoop {
			return
		}
		l, err := newReadLoop()
		if err != nil {
			h.log.Info("no read loop: every connection reads on its own goroutine", "err", err)
			return
		}
		h.loop = l
	})
	return h.loop
}

// connEnded forgets c once it is over and its session settled.
func (h *Hub) connEnded(c *conn) {
	if c.loopAdded {
		h.loop.remove(c)
	}
	h.m.conns.Dec()
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
	h.releaseConn(c.ip)
}

// releaseConn gives back what serveWS took for a connection.
func (h *Hub) releaseConn(ip netip.Addr) {
	h.mu.Lock()
	h.releaseSlotLocked(ip)
	h.mu.Unlock()
	h.wg.Done()
}

// iceResponse is the body of GET /ice.
type iceResponse struct {
	ICEServers []ICEServer `json:"iceServers"`
	// Expires is when the credentials expire, in Unix seconds (0: never).
	Expires int64 `json:"expires,omitempty"`
}

func (h *Hub) serveICE(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	hdr.Add("Vary", "Origin")
	if h.refuseBrowser(w, r, "ice") {
		return
	}
	if o := r.Header.Get("Origin"); o != "" {
		hdr.Set("Access-Control-Allow-Origin", o)
		hdr.Set("Access-Control-Allow-Headers", "Authorization")
		hdr.Set("Access-Control-Allow-Methods", "GET")
	}
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	now := h.cfg.now()
	if !h.iceByIP.allow(h.cfg.ClientIP(r).String(), now) {
		h.tooManyICE(w)
		return
	}
	if h.cfg.TokenSecret != nil {
		tok := bearerToken(r)
		if _, err := verifyToken(h.cfg.TokenSecret, tok, "", now, h.cfg.MaxTokenLifetime); err != nil {
			h.m.iceRequests.WithLabelValues("unauthorized").Inc()
			h.log.Debug("ice refused", "err", err)
			hdr.Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write(encode(ServerMessage{Type: TypeError, Code: CodeUnauthorized, Message: "a valid token is required"}))
			return
		}
		// Keyed by the signature: the token's own identity, not a secret
		// the table could leak.
		if !h.iceByToken.allow(tok[strings.LastIndexByte(tok, '.')+1:], now) {
			h.tooManyICE(w)
			return
		}
	}
	servers, exp := h.iceServers("ice-" + randomString(9))
	resp := iceResponse{ICEServers: servers}
	if !exp.IsZero() {
		resp.Expires = exp.Unix()
	}
	h.m.iceRequests.WithLabelValues("ok").Inc()
	hdr.Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp) // client went away
}

func (h *Hub) tooManyICE(w http.ResponseWriter) {
	h.m.iceRequests.WithLabelValues("rate-limited").Inc()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", "1")
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write(encode(ServerMessage{Type: TypeError, Code: CodeRateLimited, Message: "too many /ice requests"}))
}

// iceServers calls Config.ICEServers, never returning nil.
func (h *Hub) iceServers(peerID string) ([]ICEServer, time.Time) {
	if h.cfg.ICEServers == nil {
		return []ICEServer{}, time.Time{}
	}
	s, exp := h.cfg.ICEServers(peerID)
	if s == nil {
		s = []ICEServer{}
	}
	return s, exp
}

// afterFunc runs f after d on a timer the hub's WaitGroup tracks; stop it
// with stopTimer.
func (h *Hub) afterFunc(d time.Duration, f func()) *time.Timer {
	h.wg.Add(1)
	return time.AfterFunc(d, func() {
		defer h.wg.Done()
		f()
	})
}

func (h *Hub) stopTimer(t *time.Timer) {
	if t != nil && t.Stop() {
		h.wg.Done()
	}
}

// randomString returns n random bytes, base64url-encoded.
func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// newPeerID returns a random, unguessable peer id (96 bits).
func newPeerID() string { return randomString(12) }

// newResumeToken returns a resume token (256 bits).
func newResumeToken() string { return randomString(32) }
