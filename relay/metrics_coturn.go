package relay

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// MetricNames chooses which metric names the admin endpoint exposes.
type MetricNames string

const (
	// MetricNamesTurnd (the default; the zero value means the same)
	// exposes turnd_* only.
	MetricNamesTurnd MetricNames = "turnd"
	// MetricNamesCoturn exposes coturn 4.6.1's Prometheus names as well
	// (turn_total_allocations, turn_traffic_*, turn_total_traffic_*), so
	// existing coturn dashboards and alerts keep working next to turnd's
	// own. The names and labels come from coturn 4.6.1's
	// src/apps/relay/prom_server.c.
	MetricNamesCoturn MetricNames = "coturn"
)

// coturnCollector derives coturn's series from turnd's own counters at
// scrape time, so the data path counts once. coturn adds a session's
// traffic when the session finishes; these count live, which only makes
// rate() more timely. "rcv"/"sent" are from the server's side: turn_traffic_*
// is the client leg (received from / sent to clients), turn_traffic_peer_*
// the peer leg. The per-realm series carry coturn's realm label (turnd
// serves one realm); coturn's optional user label
// (prometheus-username-labels) is not offered: it makes a series per user.
type coturnCollector struct {
	m     *metrics
	realm string
	descs map[string]*prometheus.Desc
}

// coturnSeries are coturn 4.6.1's metric names, help texts and whether
// they carry the realm label, in registration order.
var coturnSeries = []struct {
	name, help string
	realm      bool
}{
	{"turn_traffic_rcvp", "Represents finished sessions received packets", true},
	{"turn_traffic_rcvb", "Represents finished sessions received bytes", true},
	{"turn_traffic_sentp", "Represents finished sessions sent packets", true},
	{"turn_traffic_sentb", "Represents finished sessions sent bytes", true},
	{"turn_traffic_peer_rcvp", "Represents finished sessions peer received packets", true},
	{"turn_traffic_peer_rcvb", "Represents finished sessions peer received bytes", true},
	{"turn_traffic_peer_sentp", "Represents finished sessions peer sent packets", true},
	{"turn_traffic_peer_sentb", "Represents finished sessions peer sent bytes", true},
	{"turn_total_traffic_rcvp", "Represents total finished sessions received packets", false},
	{"turn_total_traffic_rcvb", "Represents total finished sessions received bytes", false},
	{"turn_total_traffic_sentp", "Represents total finished sessions sent packets", false},
	{"turn_total_traffic_sentb", "Represents total finished sessions sent bytes", false},
	{"turn_total_traffic_peer_rcvp", "Represents total finished sessions peer received packets", false},
	{"turn_total_traffic_peer_rcvb", "Represents total finished sessions peer received bytes", false},
	{"turn_total_traffic_peer_sentp", "Represents total finished sessions peer sent packets", false},
	{"turn_total_traffic_peer_sentb", "Represents total finished sessions peer sent bytes", false},
	{"turn_total_allocations", "Represents current allocations number", false},
}

func (n MetricNames) validate() error {
	switch n {
	case "", MetricNamesTurnd, MetricNamesCoturn:
		return nil
	}
	return fmt.Errorf("metric names %q: want turnd or coturn", string(n))
}

func newCoturnCollector(m *metrics, realm string) *coturnCollector {
	c := &coturnCollector{m: m, realm: realm, descs: map[string]*prometheus.Desc{}}
	for _, s := range coturnSeries {
		var labels []string
		if s.realm {
			labels = []string{"realm"}
		}
		c.descs[s.name] = prometheus.NewDesc(s.name, s.help, labels, nil)
	}
	return c
}

func (c *coturnCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, s := range coturnSeries {
		ch <- c.descs[s.name]
	}
}

func (c *coturnCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	// The client leg receives what goes to peers and sends what came from
	// them; the peer leg the other way round.
	values := map[string]float64{
		"rcvp":       read(m.pktsC2P),
		"rcvb":       read(m.bytesC2P),
		"sentp":      read(m.pktsP2C),
		"sentb":      read(m.bytesP2C),
		"peer_rcvp":  read(m.pktsP2C),
		"peer_rcvb":  read(m.bytesP2C),
		"peer_sentp": read(m.pktsC2P),
		"peer_sentb": read(m.bytesC2P),
	}
	for _, s := range coturnSeries {
		d := c.descs[s.name]
		switch {
		case s.name == "turn_total_allocations":
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, read(m.allocationsActive))
		case s.realm:
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, values[s.name[len("turn_traffic_"):]], c.realm)
		default:
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, values[s.name[len("turn_total_traffic_"):]])
		}
	}
}

// read returns a counter's or gauge's current value.
func read(c prometheus.Metric) float64 {
	var d dto.Metric
	if c.Write(&d) != nil {
		return 0
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}
