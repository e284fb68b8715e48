package relay

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/netip"
	"time"
)

// Listener is one address turnd serves STUN/TURN on.
type Listener struct {
	// Network is "udp", "tcp" or "tls".
	Network string
	// Addr is host:port. Port 0 picks a free port (tests); the bound address
	// is reported by Server.Addrs. For "udp", Config.UDPSockets sockets
	// share the address with SO_REUSEPORT.
	Addr string
}

// User is a static long-term credential. Key is the RFC 8489 key
// MD5(username:realm:password), as coturn's `turnadmin -k` prints it.
type User struct {
	Name string
	Key  []byte
}

// Config configures a Server. The zero value of every field is a working
// default, except that some authentication (Users or Secrets) is required.
type Config struct {
	// Realm is the long-term credential realm. Default "rtcsuite".
	Realm string

	// Listeners are the sockets to serve. Default: UDP and TCP on
	// 0.0.0.0:3478 (and [::]:3478 when the host has IPv6), plus TLS on
	// :5349 when Certificate is set.
	Listeners []Listener
	// UDPSockets is how many SO_REUSEPORT sockets share each UDP listener
	// address, so the kernel spreads clients across cores. Default
	// runtime.NumCPU(). Linux only: elsewhere it is always 1 (New logs
	// when more were asked for; udpsockets_other.go says why).
	UDPSockets int
	// Certificate serves the "tls" listeners. GetCertificate, when set, is
	// used instead, so callers can swap certificates (SIGHUP) live.
	Certificate    *tls.Certificate
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)

	// RelayIPv4 and RelayIPv6 are the local addresses relay sockets bind.
	// Default: the listener's address when it is specific, else the first
	// non-loopback address of that family (loopback if there is none).
	RelayIPv4, RelayIPv6 netip.Addr
	// ExternalIPv4 and ExternalIPv6 are advertised in XOR-RELAYED-ADDRESS
	// (and RFC 5780 attributes) instead of the bound address, for hosts
	// behind 1:1 NAT such as cloud VMs. Unset means advertise the bound one.
	ExternalIPv4, ExternalIPv6 netip.Addr
	// MinPort and MaxPort bound relay ports. Default 49152-65535.
	MinPort, MaxPort int

	// Users are static long-term credentials, by name.
	Users []User
	// Secrets are TURN REST API shared secrets (coturn's
	// static-auth-secret). Every one is accepted, so an operator rotates by
	// adding the new secret, moving minting over, then removing the old one.
	Secrets [][]byte
	// MaxSessionLength bounds how long an allocation made with a REST
	// credential keeps refreshing after the credential expires. Default 12h.
	// An expired REST credential can never create an allocation.
	MaxSessionLength time.Duration

	// Peers is the peer address policy. The zero value denies every
	// special-purpose range (loopback, private, link-local, CGNAT, ...).
	Peers PeerPolicy

	// UserQuota, SourceQuota and TotalQuota cap simultaneous allocations per
	// user, per client source IP and in total. 0 means unlimited. Exceeding
	// one answers 486 (per user/source) or 508 (total).
	UserQuota, SourceQuota, TotalQuota int
	// MaxBPS limits each allocation's relayed bytes per second (both
	// directions counted separately); UserMaxBPS limits the sum over a user's
	// allocations. 0 means unlimited. Excess datagrams are dropped and counted.
	MaxBPS, UserMaxBPS int64

	// UnauthRate is the number of requests without valid credentials one
	// source IP may send per second (burst 2x), over UDP and, counted
	// apart, over TCP and TLS; AuthFailRate is the number of failed
	// authentications per minute. Defaults 50/s and 30/min;
	// negative disables.
	UnauthRate, AuthFailRate float64

	// StreamIdleTimeout closes a TCP or TLS connection that has had no
	// allocation for this long since it opened or lost its allocation,
	// whatever it sends meanwhile (coturn closes such sessions at 60 s).
	// Default 60s.
	StreamIdleTimeout time.Duration
	// MaxStreamConns and MaxStreamConnsPerSource cap simultaneous TCP and
	// TLS connections in total and per source (IPv6 per prefix, see
	// IPv6SourcePrefix); past a cap new connections are closed at once.
	// Defaults 10000 and 64; negative disables.
	MaxStreamConns, MaxStreamConnsPerSource int
	// MaxPermissions and MaxChannels bound the live permissions (peer IPs)
	// and channel bindings of one allocation; a request past either is
	// answered 508. Defaults 256 each; negative disables.
	MaxPermissions, MaxChannels int
	// IPv6SourcePrefix is the prefix length that identifies one IPv6 client
	// for rate limits, source quotas and connection caps: a host usually
	// owns a whole /64. Default 64; 128 counts every address apart.
	IPv6SourcePrefix int

	// AllocationLifetime is the default allocation lifetime. Default 10m.
	AllocationLifetime time.Duration
	// ChannelLifetime and PermissionLifetime are how long a channel binding
	// and a permission live without a refresh. Defaults 10m and 5m (RFC
	// 8656); tests use short ones.
	ChannelLifetime, PermissionLifetime time.Duration

	// DisableFastPath turns off the user-space data plane: pion then
	// carries every packet (for A/B measurements and as an escape hatch).
	// Permissions, policy and limits apply either way.
	DisableFastPath bool
	// DisableGSO stops the relay loops from merging runs of datagrams for
	// one destination into one segmented send (UDP_SEGMENT, Linux 4.18):
	// an escape hatch for a network path that mishandles them, and for
	// A/B measurements. Kernels without it are detected at start.
	DisableGSO bool
	// RawWait is how long the first relay loop may keep its thread blocked
	// in its own epoll set, outside Go's scheduler, for the next datagram
	// before it parks in Go's poller. At light load this spares each
	// datagram a trip through the scheduler (lower latency and CPU); a busy
	// relay never waits so (rawwait_linux.go states the contract). Linux
	// with GOMAXPROCS 2 or more only; fixed at start. Default 5ms; negative
	// turns raw waits off; otherwise between 1ms and 100ms.
	RawWait time.Duration
	// BusySlice is the scheduler time slice every thread of the process
	// asks for while the first relay loop carries a moderate load (4,000
	// to 15,000 datagrams a second; loopslice_linux.go): a
	// slice shorter than the kernel's default lets a thread woken by a
	// datagram preempt a busy CPU's running thread instead of queueing
	// behind it. It sets process-wide state (internal/schedslice). Linux
	// 6.12 or later: an older kernel gets one log line when the load first
	// calls for it; systems without relay loops never use it. Default
	// 500µs; negative turns it off; otherwise between 100µs and 100ms.
	BusySlice time.Duration
	// Offload chooses the kernel (eBPF, tcx) path for established
	// UDP↔UDP channels: OffloadAuto (the default) uses it when the program
	// loads, passes its self-test and attaches, else logs one line and
	// relays in user space; OffloadTC makes that failure a start-up error;
	// OffloadOff never loads it. Reload switches it live (docs/offload.md).
	Offload OffloadMode

	// RFC5780 enables NAT behaviour discovery answers (off by default since
	// it raises the amplification factor). Without it a Binding request
	// carrying CHANGE-REQUEST is answered 420.
	RFC5780 *RFC5780Config

	// DrainTimeout bounds how long Run waits for allocations to end after
	// its context is cancelled. Default 30s.
	DrainTimeout time.Duration

	// AdminPorts are extra local ports (the admin HTTP listener) that peers
	// may never reach through the relay. Listener ports are added
	// automatically.
	AdminPorts []int

	// Logger receives structured logs; never credentials. Default slog.Default().
	Logger *slog.Logger

	// --- coturn drop-in options (metrics names, relay transports, TLS) ---

	// MetricNames adds coturn 4.6.1's metric names to /metrics when
	// MetricNamesCoturn. Default: turnd's names only.
	MetricNames MetricNames

	// NoUDPRelay and NoTCPRelay refuse Allocate requests for UDP relays
	// or RFC 6062 TCP relays with 442 (coturn no-udp-relay, no-tcp-relay).
	NoUDPRelay, NoTCPRelay bool
	// STUNOnly ignores every TURN message (coturn stun-only); NoSTUN
	// ignores Binding requests (coturn no-stun). At most one may be set.
	STUNOnly, NoSTUN bool
	// StaleNonce is how long a nonce is accepted before the answer is 438
	// Stale Nonce with a fresh one (coturn stale-nonce). pion's nonces
	// record the minute they were made and live at most an hour, so
	// StaleNonce is a whole number of minutes between 1m and 1h; the zero
	// value means pion's hour.
	StaleNonce time.Duration

	// MaxAllocationLifetime caps the lifetime a client may ask for in
	// Allocate and Refresh (coturn max-allocate-lifetime); at most an hour
	// (pion's maximum). Zero means an hour. AllocationLifetime, the
	// default, is capped to it.
	MaxAllocationLifetime time.Duration

	// BPSCapacity caps the bytes per second all allocations together
	// relay in each direction (coturn bps-capacity); excess datagrams are
	// dropped and counted like MaxBPS excess. 0 means no cap.
	BPSCapacity int64

	// TLS settings of the "tls" listeners (coturn no-tlsv1_2,
	// cipher-list, ec-curve-name, CA-file). TLSMinVersion defaults to TLS
	// 1.2; TLSCipherSuites (TLS 1.2 only: Go's TLS 1.3 suites are fixed)
	// and TLSCurves default to Go's choice. TLSClientCAs, when set, makes
	// every TLS client present a certificate signed by one of them.
	TLSMinVersion   uint16
	TLSCipherSuites []uint16
	TLSCurves       []tls.CurveID
	TLSClientCAs    *x509.CertPool

	// --- end of coturn drop-in options ---

	// now is the clock credential expiry and rate limits are judged by
	// (tests inject one). Default time.Now.
	now func() time.Time
	// checkHookGoroutine makes the auth hand-off record goroutines, so a
	// test can prove pion calls the hook on the reading goroutine.
	checkHookGoroutine bool
	// onSelfRefresh (tests) runs after every re-read of own addresses.
	onSelfRefresh func()
	// offloadPoll is how often the kernel path's counters are read
	// (default offloadPollInterval; tests shorten it).
	offloadPoll time.Duration
	// offloadReconcile is how often the kernel's bindings are reconciled
	// with user space's (default offloadReconcileInterval).
	offloadReconcile time.Duration
}

// PeerPolicy decides which peer addresses allocations may reach.
// Allowed prefixes win over Denied ones and over the built-in deny list, as
// coturn's allowed-peer-ip does.
type PeerPolicy struct {
	// Allowed are operator exceptions (coturn allowed-peer-ip).
	Allowed []netip.Prefix
	// Denied are extra denied ranges (coturn denied-peer-ip).
	Denied []netip.Prefix
	// AllowLoopback and AllowPrivate open the loopback and RFC 1918 / ULA
	// ranges (development and tests only).
	AllowLoopback, AllowPrivate bool
}

// RFC5780Config enables RFC 5780 NAT behaviour discovery. It needs the
// primary UDP listener bound to an explicit IP (a wildcard socket can answer
// from the wrong address) plus a second IP and a second port: answers to
// CHANGE-REQUEST leave from the socket the client asked for, and every
// Binding answer carries OTHER-ADDRESS and RESPONSE-ORIGIN.
type RFC5780Config struct {
	// AlternateIP is a second local IP of the same family as the primary
	// UDP listener.
	AlternateIP netip.Addr
	// AlternatePort is the second port, bound on both IPs. Default: the
	// primary port + 1.
	AlternatePort int
	// AdvertisedAlternateIP replaces AlternateIP in OTHER-ADDRESS and
	// RESPONSE-ORIGIN behind 1:1 NAT (the primary uses ExternalIPv4/6).
	AdvertisedAlternateIP netip.Addr
	// Rate caps Binding answers per second per source IP on the three extra
	// sockets (burst 2x). Default 20; negative disables.
	Rate float64
}
