package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/schedslice"
)

// defaultRawWait is Config.RawWait's default, the bound of one raw wait
// (rawwait_linux.go): long enough to span the gaps between datagrams of a
// lightly loaded relay (at 10 flows × 50 packets/s the loop woke about
// every 2.5 ms), short enough that a relay whose traffic stopped parks at
// once, and under sysmon's 10 ms preemption.
const defaultRawWait = 5 * time.Millisecond

// defaultBusySlice is Config.BusySlice's default: shorter than the
// kernel's default slice (1.4 ms on 2 CPUs), so a woken relay thread
// preempts, and longer than the loop's bursts at the loads it applies to,
// so the threads it wakes do not preempt it in turn (100µs did both:
// docs/benchmarks.md, fourteenth and fifteenth passes).
const defaultBusySlice = 500 * time.Microsecond

// maxRawWait bounds Config.RawWait: a longer wait only keeps an idle
// relay's thread and P from the runtime for longer.
const maxRawWait = 100 * time.Millisecond

// withDefaults returns cfg with every zero field set to its default.
func (cfg Config) withDefaults() Config {
	if cfg.Realm == "" {
		cfg.Realm = "rtcsuite"
	}
	if len(cfg.Listeners) == 0 {
		cfg.Listeners = []Listener{{"udp", "0.0.0.0:3478"}, {"tcp", "0.0.0.0:3478"}}
		if HostHasIPv6() {
			cfg.Listeners = append(cfg.Listeners, Listener{"udp", "[::]:3478"}, Listener{"tcp", "[::]:3478"})
		}
		if cfg.Certificate != nil || cfg.GetCertificate != nil {
			cfg.Listeners = append(cfg.Listeners, Listener{"tls", "0.0.0.0:5349"})
		}
	}
	if cfg.TLSMinVersion == 0 {
		cfg.TLSMinVersion = tls.VersionTLS12
	}
	cfg.UDPSockets = udpSocketCount(cfg.UDPSockets)
	if cfg.MinPort == 0 {
		cfg.MinPort = 49152
	}
	if cfg.MaxPort == 0 {
		cfg.MaxPort = 65535
	}
	if cfg.MaxSessionLength == 0 {
		cfg.MaxSessionLength = 12 * time.Hour
	}
	if cfg.UnauthRate == 0 {
		cfg.UnauthRate = 50
	}
	if cfg.AuthFailRate == 0 {
		cfg.AuthFailRate = 30
	}
	if cfg.AllocationLifetime == 0 {
		cfg.AllocationLifetime = 10 * time.Minute
	}
	if cfg.ChannelLifetime == 0 {
		cfg.ChannelLifetime = 10 * time.Minute
	}
	if cfg.PermissionLifetime == 0 {
		cfg.PermissionLifetime = 5 * time.Minute
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.RawWait == 0 {
		cfg.RawWait = defaultRawWait
	}
	if cfg.BusySlice == 0 {
		cfg.BusySlice = defaultBusySlice
	}
	if cfg.StreamIdleTimeout == 0 {
		cfg.StreamIdleTimeout = 60 * time.Second
	}
	if cfg.MaxStreamConns == 0 {
		cfg.MaxStreamConns = 10000
	}
	if cfg.MaxStreamConnsPerSource == 0 {
		cfg.MaxStreamConnsPerSource = 64
	}
	if cfg.MaxPermissions == 0 {
		cfg.MaxPermissions = 256
	}
	if cfg.MaxChannels == 0 {
		cfg.MaxChannels = 256
	}
	if cfg.IPv6SourcePrefix == 0 {
		cfg.IPv6SourcePrefix = 64
	}
	if cfg.Offload == "" {
		cfg.Offload = OffloadAuto
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if r := cfg.RFC5780; r != nil {
		rc := *r
		if rc.Rate == 0 {
			rc.Rate = 20
		}
		cfg.RFC5780 = &rc
	}
	if m := cfg.MaxAllocationLifetime; m > 0 && cfg.AllocationLifetime > m {
		cfg.AllocationLifetime = m
	}
	return cfg
}

// Validate reports every problem in cfg (after defaults) at once, without
// binding anything. New calls it too.
func (cfg Config) Validate() error {
	return cfg.withDefaults().validate()
}

// validate reports every problem in cfg at once.
func (cfg Config) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	hasTLS := false
	for i, l := range cfg.Listeners {
		switch l.Network {
		case "udp", "tcp":
		case "tls":
			hasTLS = true
		default:
			add("listener %d: network %q is not udp, tcp or tls", i, l.Network)
		}
		host, port, err := net.SplitHostPort(l.Addr)
		if err != nil {
			add("listener %d: address %q: %v", i, l.Addr, err)
			continue
		}
		if host != "" {
			if _, err := netip.ParseAddr(host); err != nil {
				add("listener %d: %q is not an IP address", i, host)
			}
		}
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			add("listener %d: port %q out of range", i, port)
		}
	}
	if hasTLS && cfg.Certificate == nil && cfg.GetCertificate == nil {
		add("a tls listener needs a certificate")
	}
	if len(cfg.Users) == 0 && len(cfg.Secrets) == 0 {
		add("no authentication configured: give users or static-auth secrets (turnd is never an open relay)")
	}
	for i, u := range cfg.Users {
		if u.Name == "" {
			add("user %d: empty name", i)
		}
		if len(u.Key) != 16 {
			add("user %q: key must be the 16-byte MD5 long-term key", u.Name)
		}
	}
	for i, s := range cfg.Secrets {
		if len(s) == 0 {
			add("secret %d is empty", i)
		}
	}
	if cfg.MinPort < 1 || cfg.MaxPort > 65535 || cfg.MinPort > cfg.MaxPort {
		add("relay port range %d-%d is invalid", cfg.MinPort, cfg.MaxPort)
	}
	for name, ip := range map[string]netip.Addr{"relay IPv4": cfg.RelayIPv4, "external IPv4": cfg.ExternalIPv4} {
		if ip.IsValid() && !ip.Unmap().Is4() {
			add("%s %v is not IPv4", name, ip)
		}
	}
	for name, ip := range map[string]netip.Addr{"relay IPv6": cfg.RelayIPv6, "external IPv6": cfg.ExternalIPv6} {
		if ip.IsValid() && (!ip.Is6() || ip.Is4In6()) {
			add("%s %v is not IPv6", name, ip)
		}
	}
	errs = append(errs, cfg.Peers.validate()...)
	for _, q := range []struct {
		name string
		v    int
	}{{"user quota", cfg.UserQuota}, {"source quota", cfg.SourceQuota}, {"total quota", cfg.TotalQuota}} {
		if q.v < 0 {
			add("%s %d is negative", q.name, q.v)
		}
	}
	if cfg.MaxBPS < 0 || cfg.UserMaxBPS < 0 {
		add("bandwidth limits must not be negative")
	}
	if cfg.IPv6SourcePrefix < 1 || cfg.IPv6SourcePrefix > 128 {
		add("IPv6 source prefix /%d is not between /1 and /128", cfg.IPv6SourcePrefix)
	}
	if cfg.MaxSessionLength < 0 || cfg.AllocationLifetime < 0 || cfg.DrainTimeout < 0 || cfg.StreamIdleTimeout < 0 ||
		cfg.ChannelLifetime < 0 || cfg.PermissionLifetime < 0 {
		add("durations must not be negative")
	}
	if cfg.RawWait > 0 && (cfg.RawWait < time.Millisecond || cfg.RawWait > maxRawWait) {
		add("loop raw wait %v is not between 1ms and %v (negative turns raw waits off)", cfg.RawWait, maxRawWait)
	}
	if cfg.BusySlice > 0 {
		if err := schedslice.Validate(cfg.BusySlice); err != nil {
			add("busy slice: %v (negative turns it off)", err)
		}
	}
	if r := cfg.RFC5780; r != nil {
		errs = append(errs, cfg.validateRFC5780()...)
	}
	errs = append(errs, cfg.validateDropIn()...)
	if err := cfg.Offload.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (cfg Config) validateRFC5780() []error {
	var errs []error
	r := cfg.RFC5780
	primary, ok := cfg.primaryUDP()
	switch {
	case !ok:
		errs = append(errs, errors.New("rfc5780: needs a UDP listener"))
	case !primary.Addr().IsValid() || primary.Addr().IsUnspecified():
		errs = append(errs, errors.New("rfc5780: the first UDP listener must be bound to an explicit IP (a wildcard socket can answer from the wrong address)"))
	case !r.AlternateIP.IsValid():
		errs = append(errs, errors.New("rfc5780: an alternate IP is required"))
	case r.AlternateIP.Unmap() == primary.Addr().Unmap():
		errs = append(errs, errors.New("rfc5780: the alternate IP must differ from the primary IP"))
	case r.AlternateIP.Unmap().Is4() != primary.Addr().Unmap().Is4():
		errs = append(errs, errors.New("rfc5780: the alternate IP must be of the primary's address family"))
	}
	if r.AlternatePort < 0 || r.AlternatePort > 65535 || (ok && primary.Port() != 0 && r.AlternatePort == int(primary.Port())) {
		errs = append(errs, fmt.Errorf("rfc5780: alternate port %d invalid or equal to the primary port", r.AlternatePort))
	}
	return errs
}

// primaryUDP is the first UDP listener's configured address.
func (cfg Config) primaryUDP() (netip.AddrPort, bool) {
	for _, l := range cfg.Listeners {
		if l.Network != "udp" {
			continue
		}
		host, port, err := net.SplitHostPort(l.Addr)
		if err != nil {
			return netip.AddrPort{}, false
		}
		p, _ := strconv.Atoi(port)
		ip, _ := netip.ParseAddr(host)
		return netip.AddrPortFrom(ip, uint16(p)), true
	}
	return netip.AddrPort{}, false
}

// HostHasIPv6 reports whether this host can bind a UDP socket on ::1. The
// relay's default listeners, and turnd's, include [::] only when it can.
func HostHasIPv6() bool {
	c, err := new(net.ListenConfig).ListenPacket(context.Background(), "udp6", "[::1]:0")
	if err != nil {
		return false
	}
	c.Close()
	return true
}
