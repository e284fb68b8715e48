package main

import (
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/rtcsuite/rtcsuite/relay"
)

// relayExtOptions are the coturn drop-in settings the relay honours:
// metric names, relay transports, STUN/TURN modes, nonce lifetime and TLS.
type relayExtOptions struct {
	metricNames            string
	noUDPRelay, noTCPRelay bool
	stunOnly, noSTUN       bool
	staleNonce             seconds
}

func addRelayExtFlags(fs *flag.FlagSet, r *relayExtOptions) {
	fs.StringVar(&r.metricNames, "metrics-names", "turnd", "metric names on /metrics: turnd, or coturn to add coturn 4.6.1's names (turn_total_allocations, turn_traffic_*) for existing coturn dashboards")
	fs.BoolVar(&r.noUDPRelay, "no-udp-relay", false, "refuse UDP relay allocations (442)")
	fs.BoolVar(&r.noTCPRelay, "no-tcp-relay", false, "refuse RFC 6062 TCP relay allocations (442)")
	fs.BoolVar(&r.stunOnly, "stun-only", false, "answer STUN Binding only; ignore every TURN message")
	fs.BoolVar(&r.noSTUN, "no-stun", false, "ignore STUN Binding requests; serve TURN only")
	fs.Var(&r.staleNonce, "stale-nonce", "nonce lifetime, seconds or a duration, whole minutes from 60 s to 1 h (0 = pion's hour)")
}

// apply copies the settings into cfg; relay.Config's validation reports
// bad values.
func (r *relayExtOptions) apply(cfg *relay.Config, _ func(error)) {
	cfg.MetricNames = relay.MetricNames(r.metricNames)
	cfg.NoUDPRelay, cfg.NoTCPRelay = r.noUDPRelay, r.noTCPRelay
	cfg.STUNOnly, cfg.NoSTUN = r.stunOnly, r.noSTUN
	cfg.StaleNonce = time.Duration(r.staleNonce)
}

// seconds is a duration flag that also takes coturn's plain seconds.
type seconds time.Duration

func (s *seconds) String() string { return time.Duration(*s).String() }

func (s *seconds) Set(v string) error {
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return fmt.Errorf("%d seconds is negative", n)
		}
		*s = seconds(time.Duration(n) * time.Second)
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return fmt.Errorf("%q is neither seconds nor a duration", v)
	}
	*s = seconds(d)
	return nil
}
