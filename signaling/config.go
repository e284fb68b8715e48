package signaling

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// ICEServer has the RTCIceServer JSON shape a browser passes straight to
// RTCPeerConnection.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Config configures a Hub. The zero value of every field is a working
// default; see each field.
type Config struct {
	// ICEServers returns the ICE servers for peer id plus when their
	// credentials expire. cmd/signal mints TURN REST credentials here; the
	// package never knows how credentials are made. Before the expiry the
	// hub sends the peer fresh ones ({"type":"ice-servers"}). A zero expiry
	// means the servers never need refreshing (STUN only). Nil means no ICE
	// servers at all (host candidates only).
	ICEServers func(peerID string) ([]ICEServer, time.Time)

	// RoomCapacity is the most peers one room holds. Default 8.
	RoomCapacity int

	// TokenSecret is the HS256 secret of join tokens (JWTs carrying "room",
	// "exp" and an optional "name"). Nil means open mode: anyone may join
	// any room and fetch /ice (development only).
	TokenSecret []byte

	// AllowedOrigins lists the browser origins ("https://app.example.com")
	// allowed to open /ws and fetch /ice; "*" allows every origin. Empty
	// means same-origin only: the Origin's scheme and host must equal the
	// request's, and a DNS name in the Host header counts only when it is
	// listed in AllowedHosts (or is "localhost"), because a DNS-rebinding
	// page controls the name it is served under but never an IP literal.
	// Requests without an Origin header (non-browser clients) are always
	// allowed: they are authenticated by token. An entry may end in ":*"
	// for any port of that scheme and host (LoopbackOrigins); SameOrigin
	// keeps same-origin pages (by the rule above) allowed next to the
	// listed ones.
	AllowedOrigins []string

	// AllowedHosts lists the host names (the Host header without its port)
	// this hub is served under, such as "signal.example.com". When set,
	// /ws and /ice refuse requests for any other Host (421), so a
	// DNS-rebinding page cannot reach them. Empty: any Host, with the
	// same-origin rule above. A hub behind a TLS-terminating proxy lists
	// its public name here: a listed host's https origin is same-origin
	// even though the request arrived over plain HTTP.
	AllowedHosts []string

	// MaxTokenLifetime is the longest a join token may still be valid
	// ("exp" minus now); tokens valid for longer are refused, so a leaked
	// token cannot admit for ever. Default 24h, or InviteTTL if longer.
	MaxTokenLifetime time.Duration

	// ICERate and ICEBurst bound GET /ice per client address and per
	// token (a token bucket each). Defaults 1/s and 10.
	ICERate  float64
	ICEBurst int

	// InviteTTL is how long an invite minted for a peer's share link admits
	// to its room (token mode). Default 1h, at most 168h.
	InviteTTL time.Duration

	// MaxMessageBytes is the largest client message the hub accepts; larger
	// ones are answered "too-large" and dropped. Messages above four times
	// this close the connection (1009). Default 64 KiB.
	MaxMessageBytes int

	// PingInterval is how often the hub pings each connection; PongTimeout
	// is how long after a ping without any answer (pong or message) the
	// connection counts as dead. Defaults 20s and PingInterval.
	PingInterval, PongTimeout time.Duration
	// WriteTimeout is how long one write to a connection may stay blocked
	// (the client reads nothing) before the hub cuts the connection as a
	// slow consumer (4001). Default 10s.
	WriteTimeout time.Duration
	// SendQueueBytes bounds the bytes queued for one connection; a client
	// that lets more pile up is cut as a slow consumer (4001, sent after
	// the write in progress). The queue is never bounded by message count:
	// a client that keeps reading survives any burst the rate limits allow.
	// Default 4 MiB.
	SendQueueBytes int

	// ResumeGrace is how long a peer whose connection broke without a close
	// frame keeps its id and room membership, waiting for a resume. Default
	// 30s; negative disables resuming.
	ResumeGrace time.Duration
	// HeldBytes bounds the bytes held for one peer during its grace window;
	// HeldBytesPerIP and HeldBytesTotal bound them for all held sessions of
	// one client address and of the hub. When a frame does not fit, the
	// peer is removed at once rather than resumed with a gap. Defaults
	// 1 MiB, 4 MiB and 256 MiB.
	HeldBytes, HeldBytesPerIP, HeldBytesTotal int

	// MessageRate and MessageBurst are the per-connection token bucket for
	// client messages. Defaults 20/s and 100.
	MessageRate  float64
	MessageBurst int
	// ErrorRate and ErrorBurst bound the errors one connection may cause
	// (bad, too large or rate-limited messages) before it is closed with
	// 1008. Defaults 1/s and 20.
	ErrorRate  float64
	ErrorBurst int

	// MaxConns and MaxConnsPerIP cap WebSocket connections in total and per
	// client address. A session waiting for a resume keeps its
	// connection's place. Defaults 10000 and 100; negative means unlimited.
	MaxConns, MaxConnsPerIP int
	// MaxPendingPerIP caps the HTTP connections one remote address may hold
	// open before they become WebSockets (page loads, handshakes in
	// progress). It works through ConnState, which the server must install;
	// it counts the TCP peer, so set it negative behind a proxy. Default
	// 64; negative means unlimited.
	MaxPendingPerIP int
	// ClientIP returns the address a request counts against for
	// MaxConnsPerIP. Default: the host of r.RemoteAddr. Set it when the hub
	// runs behind a proxy that you trust to set a header.
	ClientIP func(r *http.Request) netip.Addr

	// Store keeps room membership and delivers messages. Default: an
	// in-memory store (one hub instance).
	Store Store

	// Logger receives structured logs; never tokens or signal bodies.
	// Default slog.Default().
	Logger *slog.Logger

	// now is the clock (tests).
	now func() time.Time
}

func (c *Config) setDefaults() {
	if c.RoomCapacity == 0 {
		c.RoomCapacity = 8
	}
	if c.InviteTTL == 0 {
		c.InviteTTL = defaultInviteTTL
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = 64 << 10
	}
	if c.PingInterval == 0 {
		c.PingInterval = 20 * time.Second
	}
	if c.PongTimeout == 0 {
		c.PongTimeout = c.PingInterval
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.SendQueueBytes == 0 {
		c.SendQueueBytes = 4 << 20
	}
	if c.ResumeGrace == 0 {
		c.ResumeGrace = 30 * time.Second
	}
	if c.HeldBytes == 0 {
		c.HeldBytes = 1 << 20
	}
	if c.HeldBytesPerIP == 0 {
		c.HeldBytesPerIP = 4 << 20
	}
	if c.HeldBytesTotal == 0 {
		c.HeldBytesTotal = 256 << 20
	}
	if c.MaxTokenLifetime == 0 {
		c.MaxTokenLifetime = max(24*time.Hour, c.InviteTTL)
	}
	if c.ICERate == 0 {
		c.ICERate = 1
	}
	if c.ICEBurst == 0 {
		c.ICEBurst = 10
	}
	if c.MaxPendingPerIP == 0 {
		c.MaxPendingPerIP = 64
	}
	if c.MessageRate == 0 {
		c.MessageRate = 20
	}
	if c.MessageBurst == 0 {
		c.MessageBurst = 100
	}
	if c.ErrorRate == 0 {
		c.ErrorRate = 1
	}
	if c.ErrorBurst == 0 {
		c.ErrorBurst = 20
	}
	if c.MaxConns == 0 {
		c.MaxConns = 10000
	}
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = 100
	}
	if c.ClientIP == nil {
		c.ClientIP = remoteIP
	}
	if c.Store == nil {
		c.Store = NewMemoryStore()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.now == nil {
		c.now = time.Now
	}
}

// validate reports every problem at once.
func (c *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.RoomCapacity < 1 {
		bad("RoomCapacity %d: must be at least 1", c.RoomCapacity)
	}
	if c.TokenSecret != nil && len(c.TokenSecret) < 16 {
		bad("TokenSecret: %d bytes is too short (at least 16, 32 recommended)", len(c.TokenSecret))
	}
	for _, o := range c.AllowedOrigins {
		if !validOriginPattern(o) {
			bad("AllowedOrigins: %q is not an origin like https://app.example.com (or http://localhost:*)", o)
		}
	}
	if c.InviteTTL < time.Minute || c.InviteTTL > maxInviteTTL {
		bad("InviteTTL %v: want between 1m and %v", c.InviteTTL, maxInviteTTL)
	}
	if c.MaxMessageBytes < 1024 {
		bad("MaxMessageBytes %d: must be at least 1024", c.MaxMessageBytes)
	}
	if c.PingInterval < 0 || c.PongTimeout < 0 || c.WriteTimeout < 0 {
		bad("PingInterval, PongTimeout and WriteTimeout must be positive")
	}
	if c.HeldBytes < 1 || c.HeldBytesPerIP < 1 || c.HeldBytesTotal < 1 {
		bad("HeldBytes %d, HeldBytesPerIP %d, HeldBytesTotal %d: must be positive", c.HeldBytes, c.HeldBytesPerIP, c.HeldBytesTotal)
	}
	if c.MaxTokenLifetime < c.InviteTTL {
		bad("MaxTokenLifetime %v: must be at least InviteTTL (%v): the hub's own invites must pass", c.MaxTokenLifetime, c.InviteTTL)
	}
	if c.ICERate < 0 || c.ICEBurst < 1 {
		bad("ICERate %v / ICEBurst %d: need a rate >= 0 and a burst >= 1", c.ICERate, c.ICEBurst)
	}
	for _, h := range c.AllowedHosts {
		if h == "" || strings.ContainsAny(h, "/:@ ") && !isIPv6Literal(h) {
			bad("AllowedHosts: %q is not a host name (no scheme, no port)", h)
		}
	}
	if c.MessageRate < 0 || c.MessageBurst < 1 {
		bad("MessageRate %v / MessageBurst %d: need a rate >= 0 and a burst >= 1", c.MessageRate, c.MessageBurst)
	}
	if c.ErrorRate < 0 || c.ErrorBurst < 1 {
		bad("ErrorRate %v / ErrorBurst %d: need a rate >= 0 and a burst >= 1", c.ErrorRate, c.ErrorBurst)
	}
	if c.SendQueueBytes < 2*c.MaxMessageBytes {
		bad("SendQueueBytes %d: must be at least twice MaxMessageBytes (%d)", c.SendQueueBytes, c.MaxMessageBytes)
	}
	return errors.Join(errs...)
}

// remoteIP is the default ClientIP.
func remoteIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err == nil {
		return ap.Addr().Unmap()
	}
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	a, _ := netip.ParseAddr(strings.Trim(host, "[]"))
	return a.Unmap()
}

func isIPv6Literal(h string) bool {
	a, err := netip.ParseAddr(strings.Trim(h, "[]"))
	return err == nil && a.Is6()
}
