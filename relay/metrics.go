package relay

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the server's Prometheus series. Labels are bounded enums:
// never a username or an address.
type metrics struct {
	reg *prometheus.Registry

	allocationsActive  prometheus.Gauge
	allocationsCreated *prometheus.CounterVec // transport
	authFailures       *prometheus.CounterVec // reason
	quotaRejections    *prometheus.CounterVec // quota
	policyDenials      *prometheus.CounterVec // reason
	relayedBytes       *prometheus.CounterVec // direction
	relayedPackets     *prometheus.CounterVec // direction
	dropped            *prometheus.CounterVec // reason
	segmented          *prometheus.CounterVec // direction
	pionEvents         *prometheus.CounterVec // level
	bindingAnswers     prometheus.Counter
	acceptErrors       prometheus.Counter
	draining           prometheus.Gauge
	fastBindings       prometheus.Gauge
	offload            *offloadMetrics // offload.go

	// Hot-path children, resolved once.
	bytesC2P, bytesP2C, pktsC2P, pktsP2C prometheus.Counter
	segC2P, segP2C                       prometheus.Counter
}

const (
	dirClientToPeer = "client_to_peer"
	dirPeerToClient = "peer_to_client"

	dropMalformed   = "malformed"
	dropRateLimited = "rate_limited"
	dropBandwidth   = "bandwidth"
	dropAuthLimited = "auth_rate_limited"
	dropOversize    = "oversize_frame"
	dropConnLimit   = "connection_limit"
	dropSendBuffer  = "send_buffer_full"
	// dropForbiddenPeer: a Send indication to a peer the policy refuses.
	dropForbiddenPeer = "forbidden_peer"
)

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		allocationsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "turnd_allocations_active", Help: "Allocations currently alive.",
		}),
		allocationsCreated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turnd_allocations_created_total", Help: "Allocations created, by client transport.",
		}, []string{"transport"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turnd_auth_failures_total", Help: "Requests refused by authentication, by reason.",
		}, []string{"reason"}),
		quotaRejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turnd_quota_rejections_total", Help: "Allocate requests refused by a quota or drain.",
		}, []string{"quota"}),
		policyDenials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turnd_policy_denials_total", Help: "Peer addresses refused by the peer policy, by reason.",
		}, []string{"reason"}),
		relayedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turnd_relayed_bytes_total", Help: "Payload bytes relayed, by direction.",
		}, []string{"direction"}),
		relayedPackets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turnd_relayed_packets_total", Help: "Datagrams (or TCP reads) relayed, by direction.",
		}, []string{"direction"}),
		segmented: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turnd_segmented_packets_total", Help: "Relayed datagrams that left merged with others into one segmented send (UDP_SEGMENT), by direction.",
		}, []string{"direction"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turnd_dropped_packets_total", Help: "Packets dropped before or while relaying, by reason.",
		}, []string{"reason"}),
		pionEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turnd_pion_log_events_total", Help: "Log events of the pion TURN library, by level (kept out of the operator log).",
		}, []string{"level"}),
		bindingAnswers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "turnd_rfc5780_answers_total", Help: "RFC 5780 Binding answers sent.",
		}),
		acceptErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "turnd_accept_errors_total", Help: "Failed Accept calls on TCP/TLS listeners (retried with back-off).",
		}),
		draining: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "turnd_draining", Help: "1 while the server drains before shutdown.",
		}),
		fastBindings: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "turnd_fastpath_bindings", Help: "Channel bindings the user-space data plane knows.",
		}),
	}
	reg.MustRegister(m.allocationsActive, m.allocationsCreated, m.authFailures, m.quotaRejections,
		m.policyDenials, m.relayedBytes, m.relayedPackets, m.segmented, m.dropped, m.pionEvents, m.bindingAnswers, m.acceptErrors, m.draining, m.fastBindings,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.offload = newOffloadMetrics(reg)
	m.bytesC2P = m.relayedBytes.WithLabelValues(dirClientToPeer)
	m.bytesP2C = m.relayedBytes.WithLabelValues(dirPeerToClient)
	m.pktsC2P = m.relayedPackets.WithLabelValues(dirClientToPeer)
	m.pktsP2C = m.relayedPackets.WithLabelValues(dirPeerToClient)
	m.segC2P = m.segmented.WithLabelValues(dirClientToPeer)
	m.segP2C = m.segmented.WithLabelValues(dirPeerToClient)
	for _, r := range []string{authUnknownUser, authBadPassword, authExpired, authSessionLimit, authMalformed, authWrongUser} {
		m.authFailures.WithLabelValues(r)
	}
	// Every documented label value exists from the start, so dashboards
	// and alerts see zeros rather than absent series.
	for _, tr := range []string{"udp", "tcp", "tls"} {
		m.allocationsCreated.WithLabelValues(tr)
	}
	for _, q := range []string{"user", "source", "total", "draining", "peers", "unreserved"} {
		m.quotaRejections.WithLabelValues(q)
	}
	for _, r := range policyReasons {
		m.policyDenials.WithLabelValues(r)
	}
	for _, l := range []string{"info", "warn", "error"} {
		m.pionEvents.WithLabelValues(l)
	}
	for _, r := range []string{dropMalformed, dropRateLimited, dropBandwidth, dropAuthLimited, dropOversize, dropConnLimit,
		dropSendBuffer, dropNoPermission, dropForbiddenPeer} {
		m.dropped.WithLabelValues(r)
	}
	return m
}

// registerBehavior exports the RFC 5780 responder's own counters.
func (m *metrics) registerBehavior(b *behaviorResponder) {
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "turnd_rfc5780_answers_all_total", Help: "RFC 5780 Binding answers sent from any of the four sockets.",
		}, func() float64 { return float64(b.stats().Answers) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "turnd_rfc5780_rate_limited_total", Help: "RFC 5780 requests dropped by the per-source rate limit.",
		}, func() float64 { return float64(b.stats().RateLimited) }),
	)
}

// policyReasons are every value of turnd_policy_denials_total{reason}.
var policyReasons = []string{denyLoopback, denyPrivate, denyLinkLocal, denyCGNAT, denyMulticast,
	denyUnspecified, denyReserved, denyMetadata, denyOperator, denySelf, denyBroadcast, denyConnect}
