package relay

import (
	"errors"
	"fmt"
	"reflect"
)

// Reload applies the reloadable parts of cfg without dropping allocations:
// users, secrets, MaxSessionLength, the peer policy and the TLS
// certificate; it also re-reads the host's own addresses. Everything else needs a restart; Reload reports those
// fields as a non-fatal note in the returned error's text and still applies
// the rest (check with errors.Is(err, ErrNeedsRestart)).
//
// Live allocations of a removed user (or of a REST credential whose secret
// was removed) are not cut: their next Refresh, CreatePermission or
// ChannelBind fails authentication, so they end when their current
// lifetime runs out (at most AllocationLifetime, 10 minutes by default).
// A narrowed peer policy applies at once to every datagram, including on
// existing permissions and channels.
func (s *Server) Reload(cfg Config) error {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("relay reload: %w", err)
	}
	s.creds.Store(newCredentials(cfg))
	s.policy.Store(s.policy.Load().withConfig(cfg.Peers))
	s.refreshSelf()
	s.fast.revalidate()
	offErr := s.offload.setMode(cfg.Offload)
	if cfg.Certificate != nil {
		s.cert.Store(cfg.Certificate)
	}
	s.log.Info("reloaded", "users", len(cfg.Users), "secrets", len(cfg.Secrets),
		"allowed_peers", len(cfg.Peers.Allowed), "denied_peers", len(cfg.Peers.Denied))

	var fixed []string
	old := s.cfg
	if !reflect.DeepEqual(old.Listeners, cfg.Listeners) {
		fixed = append(fixed, "listeners")
	}
	if old.Realm != cfg.Realm {
		fixed = append(fixed, "realm")
	}
	if old.MinPort != cfg.MinPort || old.MaxPort != cfg.MaxPort {
		fixed = append(fixed, "relay port range")
	}
	if old.ExternalIPv4 != cfg.ExternalIPv4 || old.ExternalIPv6 != cfg.ExternalIPv6 {
		fixed = append(fixed, "external IPs")
	}
	if old.UserQuota != cfg.UserQuota || old.SourceQuota != cfg.SourceQuota || old.TotalQuota != cfg.TotalQuota ||
		old.MaxBPS != cfg.MaxBPS || old.UserMaxBPS != cfg.UserMaxBPS {
		fixed = append(fixed, "quotas and bandwidth limits")
	}
	if old.StreamIdleTimeout != cfg.StreamIdleTimeout || old.MaxStreamConns != cfg.MaxStreamConns ||
		old.MaxStreamConnsPerSource != cfg.MaxStreamConnsPerSource || old.MaxPermissions != cfg.MaxPermissions ||
		old.MaxChannels != cfg.MaxChannels || old.IPv6SourcePrefix != cfg.IPv6SourcePrefix {
		fixed = append(fixed, "stream and table limits")
	}
	if (old.RFC5780 == nil) != (cfg.RFC5780 == nil) {
		fixed = append(fixed, "rfc5780")
	}
	if len(fixed) > 0 {
		return errors.Join(offErr, fmt.Errorf("%w: %v", ErrNeedsRestart, fixed))
	}
	return offErr
}

// ErrNeedsRestart marks configuration changes Reload could not apply.
var ErrNeedsRestart = errors.New("relay reload: changes that need a restart were not applied")
