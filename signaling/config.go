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
	// means same-origin only. Requests without an Origin header (non-browser
	// clients) are always allowed: they are authenticated by token.
	// An entry may end in ":*" for any port of that scheme and host
	// (LoopbackOrigins); SameOrigin keeps same-origin pages allowed next to
	// the listed ones.
	AllowedOrigins []string

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
	// WriteTimeout bounds each write to a connection. Default 10s.
	WriteTimeout time.Duration

	// ResumeGrace is how long a peer whose connection broke without a close
	// frame keeps its id and room membership, waiting for a resume. Default
	// 30s; negative disables resuming.
	ResumeGrace time.Duration
	// HeldMessages bounds the messages held for a peer during its grace
	// window. Default 256. When it overflows the peer is removed at once.
	HeldMessages int

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
	// client address. Defaults 10000 and 100; negative means unlimited.
	MaxConns, MaxConnsPerIP int
	// ClientIP returns the address a request counts against for
	// MaxConnsPerIP. Default: the host of r.RemoteAddr. Set it when the hub
	// runs behind a proxy that you trust to set a header.
	ClientIP func(r *http.Request) netip.Addr

	// SendQueue is each connection's queue of outgoing messages. A client
	// that lets it fill is disconnected (4001). Default 256.
	SendQueue int

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
	if c.ResumeGrace == 0 {
		c.ResumeGrace = 30 * time.Second
	}
	if c.HeldMessages == 0 {
		c.HeldMessages = 256
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
	if c.SendQueue == 0 {
		c.SendQueue = 256
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
	if c.HeldMessages < 1 {
		bad("HeldMessages %d: must be at least 1", c.HeldMessages)
	}
	if c.MessageRate < 0 || c.MessageBurst < 1 {
		bad("MessageRate %v / MessageBurst %d: need a rate >= 0 and a burst >= 1", c.MessageRate, c.MessageBurst)
	}
	if c.ErrorRate < 0 || c.ErrorBurst < 1 {
		bad("ErrorRate %v / ErrorBurst %d: need a rate >= 0 and a burst >= 1", c.ErrorRate, c.ErrorBurst)
	}
	if c.SendQueue < 1 {
		bad("SendQueue %d: must be at least 1", c.SendQueue)
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
