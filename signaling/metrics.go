package signaling

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the hub's Prometheus series, on a registry of its own. No
// label carries a peer id, room name or address.
type metrics struct {
	reg          *prometheus.Registry
	conns        prometheus.Gauge
	peers        prometheus.Gauge
	received     *prometheus.CounterVec        // by message type
	byType       map[string]prometheus.Counter // received's series, resolved once (hot path)
	sent         prometheus.Counter
	errors       *prometheus.CounterVec // by error code
	disconnects  *prometheus.CounterVec // by reason
	rejected     *prometheus.CounterVec // upgrade refusals by reason
	resumes      *prometheus.CounterVec // by result
	iceRequests  *prometheus.CounterVec // GET /ice by result
	iceRefreshes prometheus.Counter
}

// knownTypes bounds the "type" label.
var knownTypes = map[string]bool{TypeJoin: true, TypeResume: true, TypeSignal: true, TypeLeave: true, TypePing: true, TypeInvite: true}

func newMetrics(store Store) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "signal_connections", Help: "Open WebSocket connections.",
		}),
		peers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "signal_peers", Help: "Peers in rooms on this instance, including those waiting for a resume.",
		}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signal_messages_received_total", Help: "Client messages by type (invalid = undecodable).",
		}, []string{"type"}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signal_messages_sent_total", Help: "Messages queued to clients.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signal_errors_total", Help: "Error messages sent to clients by code.",
		}, []string{"code"}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signal_disconnects_total", Help: "Closed connections by reason.",
		}, []string{"reason"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signal_rejected_connections_total", Help: "WebSocket upgrades refused by reason.",
		}, []string{"reason"}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signal_resumes_total", Help: "Resume attempts by result.",
		}, []string{"result"}),
		iceRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signal_ice_requests_total", Help: "GET /ice requests by result.",
		}, []string{"result"}),
		iceRefreshes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signal_ice_refreshes_total", Help: "ice-servers messages sent before credentials expired.",
		}),
	}
	m.reg.MustRegister(m.conns, m.peers, m.received, m.sent, m.errors, m.disconnects, m.rejected,
		m.resumes, m.iceRequests, m.iceRefreshes,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "signal_rooms", Help: "Non-empty rooms in the store.",
		}, func() float64 { return float64(store.Rooms()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if cs, ok := store.(interface{ Collectors() []prometheus.Collector }); ok {
		m.reg.MustRegister(cs.Collectors()...) // the cluster store's own series
	}
	m.byType = make(map[string]prometheus.Counter, len(knownTypes)+1)
	for t := range knownTypes {
		m.byType[t] = m.received.WithLabelValues(t)
	}
	m.byType["invalid"] = m.received.WithLabelValues("invalid")
	for _, c := range []string{CodeBadMessage, CodeUnauthorized, CodeRoomFull, CodeUnknownPeer, CodeRateLimited, CodeTooLarge, CodeResumeFailed, CodeUnavailable} {
		m.errors.WithLabelValues(c)
	}
	return m
}

func (m *metrics) receivedType(t string) {
	c, ok := m.byType[t]
	if !ok {
		c = m.byType["invalid"]
	}
	c.Inc()
}
