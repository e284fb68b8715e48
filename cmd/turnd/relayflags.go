package main

import (
	"flag"

	"github.com/rtcsuite/rtcsuite/relay"
)

// relayExtOptions are the coturn drop-in settings the relay honours:
// metric names, relay transports, lifetimes, STUN/TURN modes and TLS.
type relayExtOptions struct {
	metricNames string
}

func addRelayExtFlags(fs *flag.FlagSet, r *relayExtOptions) {
	fs.StringVar(&r.metricNames, "metrics-names", "turnd", "metric names on /metrics: turnd, or coturn to add coturn 4.6.1's names (turn_total_allocations, turn_traffic_*) for existing coturn dashboards")
}

// apply copies the settings into cfg; relay.Config's validation reports
// bad values.
func (r *relayExtOptions) apply(cfg *relay.Config, _ func(error)) {
	cfg.MetricNames = relay.MetricNames(r.metricNames)
}
