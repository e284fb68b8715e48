package main

import (
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/conf"
	"github.com/rtcsuite/rtcsuite/internal/turnrest"
	"github.com/rtcsuite/rtcsuite/relay"
)

// envPrefix names turnd's environment variables: TURND_REALM, TURND_MAX_PORT, ...
const envPrefix = "TURND"

// options are turnd's settings as given, before they become a relay.Config.
// Names follow coturn's turnserver.conf where coturn has the setting.
type options struct {
	configFile   string
	realm        string
	listeningIPs conf.Strings
	port         int
	tlsPort      int
	noUDP, noTCP bool
	noTLS        bool
	cert, pkey   string
	externalIPs  conf.Strings
	relayIPs     conf.Strings
	minPort      int
	maxPort      int
	secrets      conf.Strings
	secretFile   string
	users        conf.Strings
	userDB       string
	maxSession   time.Duration
	allowedPeers conf.Strings
	deniedPeers  conf.Strings
	allowLoop    bool
	allowPrivate bool
	userQuota    int
	sourceQuota  int
	totalQuota   int
	maxBPS       int64
	userMaxBPS   int64
	unauthRate   float64
	authFailRate float64
	udpSockets   int
	lifetime     time.Duration
	rfc5780      bool
	altIP        string
	altPort      int
	altExternal  string
	rfc5780Rate  float64
	adminListen  string
	logFormat    string
	logLevel     string
	drain        time.Duration
	idleTimeout  time.Duration
	maxConns     int
	maxConnsIP   int
	maxPerms     int
	maxChannels  int
	v6Prefix     int
	ext          extOptions      // coturn drop-in settings (extflags.go)
	relayExt     relayExtOptions // coturn drop-in relay settings (relayflags.go)
	fleet        fleetOptions    // fleet.go
	noFastPath   bool
	noGSO        bool
	rawWait      time.Duration
	busySlice    time.Duration
}

func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("turnd", flag.ContinueOnError)
	fs.StringVar(&o.configFile, "config", "", "config file (key=value lines, coturn names; also TURND_CONFIG)")
	fs.StringVar(&o.realm, "realm", "rtcsuite", "long-term credential realm")
	fs.Var(&o.listeningIPs, "listening-ip", "IP to listen on (repeatable; default all IPv4 and IPv6 addresses)")
	fs.IntVar(&o.port, "listening-port", 3478, "UDP and TCP port for STUN/TURN")
	fs.IntVar(&o.tlsPort, "tls-listening-port", 5349, "TLS port (turns:), used when --cert is given")
	fs.BoolVar(&o.noUDP, "no-udp", false, "do not listen on UDP")
	fs.BoolVar(&o.noTCP, "no-tcp", false, "do not listen on TCP")
	fs.BoolVar(&o.noTLS, "no-tls", false, "do not listen on TLS even with a certificate")
	fs.StringVar(&o.cert, "cert", "", "TLS certificate file (PEM); reloaded on SIGHUP")
	fs.StringVar(&o.pkey, "pkey", "", "TLS private key file (PEM); reloaded on SIGHUP")
	fs.Var(&o.externalIPs, "external-ip", "advertised PUBLIC[/PRIVATE] address behind 1:1 NAT, one per family (repeatable)")
	fs.Var(&o.relayIPs, "relay-ip", "local IP relay sockets bind, one per family (repeatable)")
	fs.IntVar(&o.minPort, "min-port", 49152, "lowest relay port")
	fs.IntVar(&o.maxPort, "max-port", 65535, "highest relay port")
	fs.Var(&o.secrets, "static-auth-secret", "TURN REST API shared secret (repeatable: all are accepted, for rotation)")
	fs.StringVar(&o.secretFile, "static-auth-secret-file", "", "file with one TURN REST secret per line (reloaded on SIGHUP)")
	fs.Var(&o.users, "user", "static user NAME:PASSWORD or NAME:0xKEY (turnadmin -k key) (repeatable)")
	fs.StringVar(&o.userDB, "userdb", "", "users file: NAME:PASSWORD or NAME:0xKEY per line (reloaded on SIGHUP)")
	fs.DurationVar(&o.maxSession, "max-session-length", 12*time.Hour, "how long an allocation may outlive its REST credential")
	fs.Var(&o.allowedPeers, "allowed-peer-ip", "peer IP, CIDR or FROM-TO range to allow even if denied (repeatable)")
	fs.Var(&o.deniedPeers, "denied-peer-ip", "peer IP, CIDR or FROM-TO range to deny (repeatable)")
	fs.BoolVar(&o.allowLoop, "allow-loopback-peers", false, "allow relaying to loopback peers (development only)")
	fs.BoolVar(&o.allowPrivate, "allow-private-peers", false, "allow relaying to RFC 1918 / ULA peers (LAN deployments)")
	fs.IntVar(&o.userQuota, "user-quota", 0, "simultaneous allocations per user (0 = unlimited)")
	fs.IntVar(&o.sourceQuota, "source-quota", 0, "simultaneous allocations per client IP (0 = unlimited)")
	fs.IntVar(&o.totalQuota, "total-quota", 0, "simultaneous allocations in total (0 = unlimited)")
	fs.Int64Var(&o.maxBPS, "max-bps", 0, "bytes per second per allocation and direction (0 = unlimited)")
	fs.Int64Var(&o.userMaxBPS, "user-max-bps", 0, "bytes per second per user and direction (0 = unlimited)")
	fs.Float64Var(&o.unauthRate, "unauth-rate", 50, "unauthenticated requests per second per client IP, UDP and TCP/TLS counted apart (negative = off)")
	fs.Float64Var(&o.authFailRate, "auth-fail-rate", 30, "failed authentications per minute per client IP (negative = off)")
	fs.IntVar(&o.udpSockets, "udp-sockets", 0, "SO_REUSEPORT sockets per UDP address (0 = one per CPU; always one off Linux)")
	fs.DurationVar(&o.lifetime, "allocation-lifetime", 10*time.Minute, "default allocation lifetime")
	fs.BoolVar(&o.rfc5780, "rfc5780", false, "answer RFC 5780 NAT behaviour discovery (needs --alt-listening-ip)")
	fs.StringVar(&o.altIP, "alt-listening-ip", "", "second local IP for RFC 5780")
	fs.IntVar(&o.altPort, "alt-listening-port", 0, "second port for RFC 5780 (0 = listening-port + 1)")
	fs.StringVar(&o.altExternal, "alt-external-ip", "", "public address advertised for alt-listening-ip behind 1:1 NAT")
	fs.Float64Var(&o.rfc5780Rate, "rfc5780-rate", 20, "RFC 5780 answers per second per client IP on the extra sockets")
	fs.StringVar(&o.adminListen, "admin-listen", "127.0.0.1:9643", "admin HTTP address for /metrics, /healthz, /readyz (empty = off)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.DurationVar(&o.drain, "drain-timeout", 30*time.Second, "on SIGTERM, how long live allocations may continue")
	fs.DurationVar(&o.idleTimeout, "stream-idle-timeout", 60*time.Second, "close a TCP/TLS connection this long without an allocation")
	fs.IntVar(&o.maxConns, "max-stream-conns", 10000, "simultaneous TCP/TLS connections in total (negative = unlimited)")
	fs.IntVar(&o.maxConnsIP, "max-stream-conns-per-ip", 64, "simultaneous TCP/TLS connections per client IP or IPv6 prefix (negative = unlimited)")
	fs.IntVar(&o.maxPerms, "max-permissions", 256, "live permissions (peer IPs) per allocation; more get 508 (negative = unlimited)")
	fs.IntVar(&o.maxChannels, "max-channels", 256, "live channel bindings per allocation; more get 508 (negative = unlimited)")
	fs.IntVar(&o.v6Prefix, "ipv6-source-prefix", 64, "IPv6 prefix length counted as one client for rate limits, quotas and connection caps")
	addExtFlags(fs, o)
	addRelayExtFlags(fs, &o.relayExt)
	addFleetFlags(fs, &o.fleet)
	fs.BoolVar(&o.noGSO, "no-gso", false, "send every relayed datagram on its own instead of merging runs for one destination into one segmented send (UDP_SEGMENT)")
	fs.BoolVar(&o.noFastPath, "no-fastpath", false, "let pion carry every packet instead of turnd's ChannelData fast path (A/B tests)")
	fs.DurationVar(&o.rawWait, "loop-raw-wait", 5*time.Millisecond, "at light load, how long a relay loop waits for the next datagram outside Go's scheduler before it sleeps (1ms-100ms; 0 = off; Linux)")
	fs.DurationVar(&o.busySlice, "busy-slice", 500*time.Microsecond, "at moderate load, the scheduler time slice turnd's threads ask for, so a thread woken by a datagram preempts a busy CPU instead of queueing (100us-100ms; 0 = off; Linux 6.12+)")
	return fs
}

// loaded is everything a parsed configuration yields.
type loaded struct {
	relay    relay.Config
	logger   *slog.Logger
	admin    string
	warnings []string // one log line each once the logger is final
}

// build turns options into a relay.Config, reporting every problem at once.
// It reads the users, secret and certificate files.
func (o *options) build(stderr interface{ Write([]byte) (int, error) }) (loaded, error) {
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	cfg := relay.Config{
		Realm:                   o.realm,
		MinPort:                 o.minPort,
		MaxPort:                 o.maxPort,
		MaxSessionLength:        o.maxSession,
		UserQuota:               o.userQuota,
		SourceQuota:             o.sourceQuota,
		TotalQuota:              o.totalQuota,
		MaxBPS:                  o.maxBPS,
		UserMaxBPS:              o.userMaxBPS,
		UnauthRate:              o.unauthRate,
		AuthFailRate:            o.authFailRate,
		UDPSockets:              o.udpSockets,
		AllocationLifetime:      o.lifetime,
		StreamIdleTimeout:       o.idleTimeout,
		MaxStreamConns:          o.maxConns,
		MaxStreamConnsPerSource: o.maxConnsIP,
		MaxPermissions:          o.maxPerms,
		MaxChannels:             o.maxChannels,
		IPv6SourcePrefix:        o.v6Prefix,
		DrainTimeout:            o.drain,
		DisableFastPath:         o.noFastPath,
		DisableGSO:              o.noGSO,
		RawWait:                 zeroOff(o.rawWait),
		BusySlice:               zeroOff(o.busySlice),
		Peers:                   relay.PeerPolicy{AllowLoopback: o.allowLoop, AllowPrivate: o.allowPrivate},
	}

	// Logger.
	logger, lerr := conf.Logger(stderr, o.logFormat, o.logLevel)
	if lerr != nil {
		add(lerr)
	}
	cfg.Logger = logger

	// Listeners.
	ips := []string(o.listeningIPs)
	if len(ips) == 0 {
		ips = []string{"0.0.0.0"}
		if relay.HostHasIPv6() {
			ips = append(ips, "::")
		}
	}
	// Port 0 lets the kernel pick (UDP and TCP then get different ports,
	// reported in the "turnd serving" log line): for tests.
	if o.port < 0 || o.port > 65535 {
		add(fmt.Errorf("listening-port %d out of range", o.port))
	}
	haveCert := o.cert != "" || o.pkey != ""
	if (o.cert == "") != (o.pkey == "") {
		add(errors.New("cert and pkey must be given together"))
	}
	for _, ip := range ips {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			add(fmt.Errorf("listening-ip %q is not an IP address", ip))
			continue
		}
		hp := func(p int) string { return net.JoinHostPort(a.String(), strconv.Itoa(p)) }
		if !o.noUDP {
			cfg.Listeners = append(cfg.Listeners, relay.Listener{Network: "udp", Addr: hp(o.port)})
		}
		if !o.noTCP {
			cfg.Listeners = append(cfg.Listeners, relay.Listener{Network: "tcp", Addr: hp(o.port)})
		}
		if haveCert && !o.noTLS {
			cfg.Listeners = append(cfg.Listeners, relay.Listener{Network: "tls", Addr: hp(o.tlsPort)})
		}
	}
	if len(cfg.Listeners) == 0 && o.noUDP && o.noTCP {
		add(errors.New("no listeners: every transport is disabled"))
	}
	if haveCert && o.cert != "" && o.pkey != "" {
		c, err := tls.LoadX509KeyPair(o.cert, o.pkey)
		if err != nil {
			add(fmt.Errorf("certificate: %w", err))
		} else {
			cfg.Certificate = &c
		}
	}

	// Addresses.
	for _, e := range o.externalIPs {
		pub, priv, hasPriv := strings.Cut(e, "/")
		p, err := netip.ParseAddr(pub)
		if err != nil {
			add(fmt.Errorf("external-ip %q: %q is not an IP address", e, pub))
			continue
		}
		var q netip.Addr
		if hasPriv {
			if q, err = netip.ParseAddr(priv); err != nil || q.Is4() != p.Is4() {
				add(fmt.Errorf("external-ip %q: private part must be an IP of the same family", e))
				continue
			}
		}
		if p.Unmap().Is4() {
			cfg.ExternalIPv4, cfg.RelayIPv4 = p.Unmap(), q
		} else {
			cfg.ExternalIPv6, cfg.RelayIPv6 = p, q
		}
	}
	for _, r := range o.relayIPs {
		a, err := netip.ParseAddr(r)
		switch {
		case err != nil:
			add(fmt.Errorf("relay-ip %q is not an IP address", r))
		case a.Unmap().Is4():
			cfg.RelayIPv4 = a.Unmap()
		default:
			cfg.RelayIPv6 = a
		}
	}

	// Credentials.
	for _, s := range o.secrets {
		cfg.Secrets = append(cfg.Secrets, []byte(s))
	}
	if o.secretFile != "" {
		lines, err := readLines(o.secretFile)
		if err != nil {
			add(fmt.Errorf("static-auth-secret-file: %w", err))
		}
		for _, l := range lines {
			cfg.Secrets = append(cfg.Secrets, []byte(l))
		}
	}
	for _, l := range o.users {
		u, err := parseUser(l, o.realm)
		if err != nil {
			add(err)
			continue
		}
		cfg.Users = append(cfg.Users, u)
	}
	if o.userDB != "" {
		db, err := readUserDB(o.userDB, o.realm, o.ext)
		if err != nil {
			add(fmt.Errorf("userdb: %w", err))
		}
		cfg.Users = append(cfg.Users, db.users...)
		cfg.Secrets = append(cfg.Secrets, db.secrets...)
		o.allowedPeers = append(o.allowedPeers, db.allowed...)
		o.deniedPeers = append(o.deniedPeers, db.denied...)
	}
	if o.ext.useAuthSecret && len(cfg.Secrets) == 0 {
		add(errors.New("use-auth-secret needs a static-auth-secret or turn_secret rows in the SQLite userdb"))
	}
	warnings := vetSecrets(cfg.Secrets, add)
	o.ext.validate(&cfg, o.noUDP, o.noTCP, add)
	warnings = append(warnings, o.relayExt.apply(&cfg, add)...)

	// Peer policy.
	for _, s := range o.allowedPeers {
		p, err := parsePeerRange(s)
		if err != nil {
			add(fmt.Errorf("allowed-peer-ip: %w", err))
		}
		cfg.Peers.Allowed = append(cfg.Peers.Allowed, p...)
	}
	for _, s := range o.deniedPeers {
		p, err := parsePeerRange(s)
		if err != nil {
			add(fmt.Errorf("denied-peer-ip: %w", err))
		}
		cfg.Peers.Denied = append(cfg.Peers.Denied, p...)
	}

	// RFC 5780.
	if o.rfc5780 {
		alt, err := netip.ParseAddr(o.altIP)
		if err != nil {
			add(fmt.Errorf("rfc5780 needs --alt-listening-ip (got %q)", o.altIP))
		}
		altPort := o.altPort
		if altPort == 0 {
			altPort = o.port + 1
		}
		cfg.RFC5780 = &relay.RFC5780Config{AlternateIP: alt, AlternatePort: altPort, Rate: o.rfc5780Rate}
		if len(o.listeningIPs) == 0 {
			add(errors.New("rfc5780 needs an explicit --listening-ip (a wildcard socket can answer from the wrong address)"))
		}
		if o.altExternal != "" {
			ext, err := netip.ParseAddr(o.altExternal)
			if err != nil {
				add(fmt.Errorf("alt-external-ip %q is not an IP address", o.altExternal))
			}
			cfg.RFC5780.AdvertisedAlternateIP = ext
		}
	} else if o.altIP != "" {
		add(errors.New("alt-listening-ip is only used with --rfc5780"))
	}

	// Admin listener: its port joins the relay's own-ports deny list.
	if o.adminListen != "" {
		_, p, err := net.SplitHostPort(o.adminListen)
		port, perr := strconv.Atoi(p)
		if err != nil || perr != nil {
			add(fmt.Errorf("admin-listen %q is not host:port", o.adminListen))
		} else {
			cfg.AdminPorts = append(cfg.AdminPorts, port)
		}
	}
	if o.udpSockets < 0 {
		add(fmt.Errorf("udp-sockets %d is negative", o.udpSockets))
	}
	if err := o.fleet.validate(); err != nil {
		add(err)
	}
	return loaded{relay: cfg, logger: logger, admin: o.adminListen, warnings: warnings}, errors.Join(errs...)
}

// parseUser reads NAME:PASSWORD or NAME:0xHEXKEY (the 16-byte long-term key
// coturn's turnadmin -k prints).
func parseUser(line, realm string) (relay.User, error) {
	name, secret, ok := strings.Cut(line, ":")
	if !ok || name == "" || secret == "" {
		return relay.User{}, fmt.Errorf("user %q: want NAME:PASSWORD or NAME:0xKEY", redactUser(line))
	}
	if hexKey, isKey := strings.CutPrefix(secret, "0x"); isKey {
		key, err := hex.DecodeString(hexKey)
		if err != nil || len(key) != 16 {
			return relay.User{}, fmt.Errorf("user %q: key must be 0x and 32 hex digits", name)
		}
		return relay.User{Name: name, Key: key}, nil
	}
	return relay.User{Name: name, Key: turnrest.LongTermKey(name, realm, secret)}, nil
}

func redactUser(line string) string {
	name, _, _ := strings.Cut(line, ":")
	return name + ":<redacted>"
}

// parsePeerRange accepts an IP, a CIDR or coturn's FROM-TO range.
func parsePeerRange(s string) ([]netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return []netip.Prefix{p.Masked()}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}, nil
	}
	from, to, ok := strings.Cut(s, "-")
	if ok {
		a, err1 := netip.ParseAddr(strings.TrimSpace(from))
		b, err2 := netip.ParseAddr(strings.TrimSpace(to))
		if err1 == nil && err2 == nil && a.Is4() == b.Is4() && !b.Less(a) {
			return rangeToPrefixes(a, b), nil
		}
	}
	return nil, fmt.Errorf("%q is not an IP, CIDR or FROM-TO range", s)
}

// rangeToPrefixes covers [a, b] with the fewest CIDR prefixes.
func rangeToPrefixes(a, b netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for {
		bits := a.BitLen()
		// Grow the prefix while it starts at a and stays within b.
		for bits > 0 {
			p := netip.PrefixFrom(a, bits-1)
			if p.Masked().Addr() != a || lastAddr(p).Compare(b) > 0 {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(a, bits)
		out = append(out, p)
		last := lastAddr(p)
		if last.Compare(b) >= 0 {
			return out
		}
		a = last.Next()
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func readLines(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out, nil
}

// zeroOff maps a flag where 0 means off (--loop-raw-wait, --busy-slice)
// to its relay.Config field, where 0 is the default and off is negative.
func zeroOff(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
