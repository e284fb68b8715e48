package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/conf"
	"github.com/rtcsuite/rtcsuite/internal/procs"
	"github.com/rtcsuite/rtcsuite/signaling"
)

// envPrefix names signal's environment variables: SIGNAL_TURN_SECRET, ...
const envPrefix = "SIGNAL"

// options are the settings as given, before they become a signaling.Config.
type options struct {
	configFile    string
	listen        string
	adminListen   string
	tlsCert       string
	tlsKey        string
	turnSecret    string
	turnURLs      conf.Strings
	iceTTL        time.Duration
	inviteTTL     time.Duration
	jwtSecret     string
	allowOpen     bool
	origins       conf.Strings
	roomCapacity  int
	maxMessage    int
	pingInterval  time.Duration
	resumeGrace   time.Duration
	heldBytes     int
	heldPerIP     int
	heldTotal     int
	writeTimeout  time.Duration
	publicHosts   conf.Strings
	maxTokenTTL   time.Duration
	iceRate       float64
	iceBurst      int
	maxPending    int
	rate          float64
	burst         int
	maxConns      int
	maxConnsPerIP int
	sendQueueKiB  int
	realIPHeader  string
	logFormat     string
	logLevel      string
	drain         time.Duration
	procs         string

	dev          bool
	devBindAll   bool
	devHTTPS     bool
	devRelayPort int
	version      bool

	cluster clusterOptions // cluster.go
}

func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("signal", flag.ContinueOnError)
	fs.StringVar(&o.configFile, "config", "", "config file (name=value lines with the flag names; also SIGNAL_CONFIG)")
	fs.StringVar(&o.listen, "listen", ":8080", "public HTTP(S) address: /ws, /ice, /healthz and the web page (--dev: 127.0.0.1:8080)")
	fs.StringVar(&o.adminListen, "admin-listen", "127.0.0.1:9642", "admin HTTP address for /metrics and /healthz (empty = off)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "TLS certificate file (PEM) for the public listener")
	fs.StringVar(&o.tlsKey, "tls-key", "", "TLS private key file (PEM)")
	fs.StringVar(&o.turnSecret, "turn-secret", "", "TURN REST shared secret (turnd --static-auth-secret, coturn static-auth-secret)")
	fs.Var(&o.turnURLs, "turn-url", "ICE server URL handed to clients: turn:, turns: or stun: (repeatable)")
	fs.DurationVar(&o.iceTTL, "ice-ttl", time.Hour, "lifetime of minted TURN credentials; fresh ones are sent before they expire")
	fs.DurationVar(&o.inviteTTL, "invite-ttl", time.Hour, "token mode: lifetime of the room invites the hub mints for share links")
	fs.StringVar(&o.jwtSecret, "jwt-secret", "", "HS256 secret of join tokens (at least 32 bytes); required unless --allow-open or --dev")
	fs.BoolVar(&o.allowOpen, "allow-open", false, "run without join tokens: anyone may join any room and get TURN credentials")
	fs.Var(&o.origins, "allowed-origin", "browser origin allowed to connect, e.g. https://app.example.com, or * (repeatable; default same-origin)")
	fs.IntVar(&o.roomCapacity, "room-capacity", 8, "most peers in one room")
	fs.IntVar(&o.maxMessage, "max-message-bytes", 64<<10, "largest client message")
	fs.DurationVar(&o.pingInterval, "ping-interval", 20*time.Second, "WebSocket ping interval (keep below proxy idle timeouts)")
	fs.DurationVar(&o.resumeGrace, "resume-grace", 30*time.Second, "how long a dropped peer may resume its session (negative = never)")
	fs.IntVar(&o.heldBytes, "held-bytes", 1<<20, "bytes held for one peer during its resume grace window")
	fs.IntVar(&o.heldPerIP, "held-bytes-per-ip", 4<<20, "bytes held for all waiting peers of one client address")
	fs.IntVar(&o.heldTotal, "held-bytes-total", 256<<20, "bytes held for all waiting peers of this hub")
	fs.Float64Var(&o.rate, "rate", 20, "client messages per second per connection")
	fs.IntVar(&o.burst, "burst", 100, "client message burst per connection")
	fs.IntVar(&o.maxConns, "max-conns", 10000, "WebSocket connections in total (negative = unlimited)")
	fs.IntVar(&o.maxConnsPerIP, "max-conns-per-ip", 100, "WebSocket connections per client address (negative = unlimited)")
	fs.IntVar(&o.sendQueueKiB, "send-queue-kib", 4096, "KiB queued for one connection before a slow reader is disconnected (4001)")
	fs.DurationVar(&o.writeTimeout, "write-timeout", 10*time.Second, "how long a write to a client that reads nothing may block before it is disconnected (4001)")
	fs.Var(&o.publicHosts, "public-host", "host name browsers reach the hub under, e.g. signal.example.com; other Host headers are refused (repeatable; --dev: loopback)")
	fs.DurationVar(&o.maxTokenTTL, "max-token-ttl", 24*time.Hour, "longest validity a join token may have left")
	fs.Float64Var(&o.iceRate, "ice-rate", 1, "GET /ice requests per second per client address and per token")
	fs.IntVar(&o.iceBurst, "ice-burst", 10, "GET /ice burst per client address and per token")
	fs.IntVar(&o.maxPending, "max-pending-per-ip", 64, "HTTP connections per remote address before the WebSocket upgrade (negative = unlimited; off with --real-ip-header)")
	fs.StringVar(&o.realIPHeader, "real-ip-header", "", "trusted proxy header with the client address (e.g. X-Forwarded-For; its last entry counts)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.DurationVar(&o.drain, "drain-timeout", 10*time.Second, "on SIGTERM, how long closing connections may take")
	fs.StringVar(&o.procs, "procs", "auto", "Go scheduler threads (GOMAXPROCS): auto follows the load between 1 and all CPUs; a count fixes it (0 = all CPUs); a GOMAXPROCS environment variable wins over auto")
	fs.BoolVar(&o.dev, "dev", false, "development mode: embedded TURN relay (allows loopback/private peers), open rooms, loopback only")
	fs.BoolVar(&o.devBindAll, "dev-bind-all", false, "with --dev: listen on all interfaces (other devices on the LAN)")
	fs.BoolVar(&o.devHTTPS, "dev-https", false, "with --dev: serve HTTPS with a generated self-signed certificate")
	fs.IntVar(&o.devRelayPort, "dev-relay-port", 0, "with --dev: port of the embedded relay (0 = any free port)")
	fs.BoolVar(&o.version, "version", false, "print the version and VCS revision, then exit")
	addClusterFlags(fs, &o.cluster)
	return fs
}

// loaded is everything a parsed configuration yields.
type loaded struct {
	hub    signaling.Config
	logger *slog.Logger
	listen string
	admin  string
	tls    *tls.Certificate // nil: plain HTTP (or dev-https, made later)
	// turnURLs and turnSecret make the ICE servers outside --dev.
	turnURLs   []string
	turnSecret []byte
	procs      procs.Setting
}

// build turns options into a hub configuration, reporting every problem
// at once. It reads the certificate files.
func (o *options) build(stderr io.Writer) (loaded, error) {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	var l loaded

	var lerr error
	l.logger, lerr = conf.Logger(stderr, o.logFormat, o.logLevel)
	if lerr != nil {
		errs = append(errs, lerr)
	}

	// Listeners.
	l.listen, l.admin = o.listen, o.adminListen
	if o.dev && o.listen == ":8080" {
		l.listen = "127.0.0.1:8080"
		if o.devBindAll {
			l.listen = ":8080"
		}
	}
	if host, _, err := net.SplitHostPort(l.listen); err != nil {
		add("listen %q is not host:port", l.listen)
	} else if o.dev && !o.devBindAll && !isLoopbackHost(host) {
		add("listen %q: --dev serves loopback only; add --dev-bind-all to open it to the network", l.listen)
	}
	if l.admin != "" {
		if _, _, err := net.SplitHostPort(l.admin); err != nil {
			add("admin-listen %q is not host:port", l.admin)
		}
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		add("tls-cert and tls-key must be given together")
	} else if o.tlsCert != "" {
		c, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			add("tls certificate: %v", err)
		} else {
			l.tls = &c
		}
		if o.devHTTPS {
			add("dev-https generates a certificate: drop tls-cert/tls-key, or dev-https")
		}
	}
	if !o.dev && (o.devBindAll || o.devHTTPS || o.devRelayPort != 0) {
		add("dev-bind-all, dev-https and dev-relay-port need --dev")
	}
	if o.devRelayPort < 0 || o.devRelayPort > 65535 {
		add("dev-relay-port %d out of range", o.devRelayPort)
	}

	// ICE servers.
	if o.dev && (len(o.turnURLs) > 0 || o.turnSecret != "") {
		add("--dev runs its own relay and mints for it: drop turn-url and turn-secret")
	}
	needSecret := false
	for _, u := range o.turnURLs {
		scheme, err := checkICEURL(u)
		if err != nil {
			add("turn-url %q: %v", u, err)
			continue
		}
		if scheme == "turn" || scheme == "turns" {
			needSecret = true
		}
	}
	switch {
	case needSecret && o.turnSecret == "":
		add("turn-url: turn:/turns: URLs need turn-secret (the secret turnd or coturn verifies with)")
	case !needSecret && o.turnSecret != "" && !o.dev && (o.cluster.redisURL == "" || o.cluster.turnFleet == 0):
		add("turn-secret is set but no turn:/turns: turn-url uses it")
	}
	if o.iceTTL < 10*time.Second || o.iceTTL > 7*24*time.Hour {
		add("ice-ttl %v: want between 10s and 168h", o.iceTTL)
	}
	l.turnURLs, l.turnSecret = o.turnURLs, []byte(o.turnSecret)

	// Secrets: refuse the examples' placeholders, warn about short ones.
	for _, sec := range []struct{ name, v string }{{"turn-secret", o.turnSecret}, {"jwt-secret", o.jwtSecret}} {
		if sec.v == "" {
			continue
		}
		if w, err := conf.CheckSecret(sec.name, []byte(sec.v)); err != nil {
			errs = append(errs, err)
		} else if w != "" {
			l.logger.Warn("configuration: " + w)
		}
	}

	// Authentication.
	switch {
	case o.jwtSecret != "" && len(o.jwtSecret) < 32:
		add("jwt-secret: %d bytes is too short (at least 32)", len(o.jwtSecret))
	case o.jwtSecret != "" && o.allowOpen:
		add("jwt-secret and allow-open contradict each other")
	case o.jwtSecret == "" && !o.allowOpen && !o.dev:
		add("jwt-secret is required (or --allow-open to run without tokens: then /ice is an open TURN credential source)")
	}

	h := signaling.Config{
		RoomCapacity:     o.roomCapacity,
		AllowedOrigins:   o.origins,
		InviteTTL:        o.inviteTTL,
		MaxMessageBytes:  o.maxMessage,
		PingInterval:     o.pingInterval,
		ResumeGrace:      o.resumeGrace,
		HeldBytes:        o.heldBytes,
		HeldBytesPerIP:   o.heldPerIP,
		HeldBytesTotal:   o.heldTotal,
		WriteTimeout:     o.writeTimeout,
		AllowedHosts:     o.publicHosts,
		MaxTokenLifetime: o.maxTokenTTL,
		ICERate:          o.iceRate,
		ICEBurst:         o.iceBurst,
		MaxPendingPerIP:  o.maxPending,
		MessageRate:      o.rate,
		MessageBurst:     o.burst,
		MaxConns:         o.maxConns,
		MaxConnsPerIP:    o.maxConnsPerIP,
		SendQueueBytes:   o.sendQueueKiB << 10,
		Logger:           l.logger,
	}
	if o.jwtSecret != "" {
		h.TokenSecret = []byte(o.jwtSecret)
	}
	if o.inviteTTL < time.Minute || o.inviteTTL > 7*24*time.Hour {
		add("invite-ttl %v: want between 1m and 168h", o.inviteTTL)
	}
	if o.dev {
		// A front-end dev server (Vite, webpack) serves the page from
		// another local port: let it in, next to the hub's own pages.
		h.AllowedOrigins = append(append([]string{signaling.SameOrigin}, o.origins...), signaling.LoopbackOrigins...)
	}
	if o.realIPHeader != "" {
		h.ClientIP = headerIP(http.CanonicalHeaderKey(o.realIPHeader))
		// Every connection comes from the proxy: a per-address cap on the
		// TCP peer would cap the proxy.
		h.MaxPendingPerIP = -1
	}
	if o.dev {
		if len(o.publicHosts) > 0 {
			add("--dev accepts loopback hosts only (and the LAN address with --dev-bind-all): drop public-host")
		}
		// A DNS-rebinding page must not reach the dev hub (whose relay
		// allows loopback and private peers): loopback names only. run adds
		// the LAN address with -dev-bind-all.
		h.AllowedHosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	for _, ph := range o.publicHosts {
		if ph == "" || strings.ContainsAny(ph, "/:@ ") {
			add("public-host %q: want a host name without scheme or port", ph)
		}
	}
	// Zero means "default" to the hub; on the command line it is a mistake.
	for _, c := range []struct {
		name string
		v    int
	}{{"room-capacity", o.roomCapacity}, {"burst", o.burst}, {"send-queue-kib", o.sendQueueKiB}, {"held-bytes", o.heldBytes}, {"held-bytes-per-ip", o.heldPerIP}, {"held-bytes-total", o.heldTotal}, {"ice-burst", o.iceBurst}} {
		if c.v < 1 {
			add("%s %d: must be at least 1", c.name, c.v)
		}
	}
	if o.maxMessage < 1024 {
		add("max-message-bytes %d: must be at least 1024", o.maxMessage)
	}
	if o.pingInterval < time.Second {
		add("ping-interval %v: must be at least 1s", o.pingInterval)
	}
	if o.rate <= 0 || o.iceRate <= 0 {
		add("rate %v, ice-rate %v: must be positive", o.rate, o.iceRate)
	}
	if o.writeTimeout < time.Second {
		add("write-timeout %v: must be at least 1s", o.writeTimeout)
	}
	if o.maxTokenTTL < time.Minute || o.maxTokenTTL < o.inviteTTL {
		add("max-token-ttl %v: must be at least 1m and at least invite-ttl (%v)", o.maxTokenTTL, o.inviteTTL)
	}
	if o.sendQueueKiB<<10 < 2*o.maxMessage {
		add("send-queue-kib %d: must hold at least two messages of max-message-bytes", o.sendQueueKiB)
	}
	if o.maxPending == 0 {
		add("max-pending-per-ip: use a negative value for unlimited, not 0")
	}
	if o.maxConns == 0 || o.maxConnsPerIP == 0 {
		add("max-conns and max-conns-per-ip: use a negative value for unlimited, not 0")
	}
	if o.resumeGrace == 0 {
		add("resume-grace 0: use a negative value to disable resuming")
	}
	if ps, err := procs.Parse(o.procs); err != nil {
		errs = append(errs, err)
	} else {
		l.procs = ps
	}
	if o.drain <= 0 {
		add("drain-timeout %v: must be positive", o.drain)
	}
	if err := o.cluster.validate(); err != nil {
		errs = append(errs, err)
	}
	l.hub = h
	return l, errors.Join(errs...)
}

// checkICEURL validates an RFC 7064/7065 URL: scheme:host[:port][?transport=udp|tcp].
func checkICEURL(u string) (string, error) {
	scheme, rest, ok := strings.Cut(u, ":")
	if !ok {
		return "", errors.New("want a turn, turns, stun or stuns URL")
	}
	switch scheme {
	case "turn", "turns", "stun", "stuns":
	default:
		return "", errors.New("want a turn, turns, stun or stuns URL")
	}
	hostport, query, hasQuery := strings.Cut(rest, "?")
	if hasQuery {
		if scheme == "stun" || scheme == "stuns" {
			return "", errors.New("stun: URLs take no query")
		}
		if query != "transport=udp" && query != "transport=tcp" {
			return "", errors.New("the only query is ?transport=udp or ?transport=tcp")
		}
	}
	host := hostport
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		n, perr := strconv.Atoi(p)
		if perr != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("bad port %q", p)
		}
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" || strings.ContainsAny(host, "/@ ") {
		return "", errors.New("bad host")
	}
	return scheme, nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// headerIP reads the client address from a trusted proxy's header: the
// last comma-separated entry (the one the proxy appended), else the
// connection's address.
func headerIP(name string) func(*http.Request) netip.Addr {
	return func(r *http.Request) netip.Addr {
		if v := r.Header.Values(name); len(v) > 0 {
			parts := strings.Split(v[len(v)-1], ",")
			if a, err := netip.ParseAddr(strings.TrimSpace(parts[len(parts)-1])); err == nil {
				return a.Unmap()
			}
		}
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			return netip.Addr{}
		}
		return ap.Addr().Unmap()
	}
}
