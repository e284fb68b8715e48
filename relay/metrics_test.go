package relay

import (
	"bufio"
	"os"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// gathered returns every series of the server's real registry as
// "name{label=value,...}" -> value.
func gathered(t *testing.T, srv *Server) map[string]float64 {
	t.Helper()
	mfs, err := srv.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			if len(m.GetLabel()) > 0 {
				var ls []string
				for _, l := range m.GetLabel() {
					ls = append(ls, l.GetName()+"="+l.GetValue())
				}
				key += "{" + strings.Join(ls, ",") + "}"
			}
			out[key] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

// TestMetricsPresentFromStart: every documented series and label value is
// exported before its first event, so a dashboard or an alert on
// increase() sees a zero rather than nothing.
func TestMetricsPresentFromStart(t *testing.T) {
	srv := newTestServer(t, nil)
	got := gathered(t, srv)
	want := []string{
		"turnd_allocations_active", "turnd_draining", "turnd_accept_errors_total", "turnd_rfc5780_answers_total",
		"turnd_allocations_created_total{transport=udp}", "turnd_allocations_created_total{transport=tcp}",
		"turnd_allocations_created_total{transport=tls}",
		"turnd_relayed_bytes_total{direction=client_to_peer}", "turnd_relayed_bytes_total{direction=peer_to_client}",
		"turnd_relayed_packets_total{direction=client_to_peer}", "turnd_relayed_packets_total{direction=peer_to_client}",
		"turnd_pion_log_events_total{level=info}", "turnd_pion_log_events_total{level=warn}", "turnd_pion_log_events_total{level=error}",
	}
	for _, r := range []string{"unknown_user", "bad_password", "expired", "session_limit", "malformed", "wrong_credentials"} {
		want = append(want, "turnd_auth_failures_total{reason="+r+"}")
	}
	for _, q := range []string{"user", "source", "total", "draining", "peers", "unreserved"} {
		want = append(want, "turnd_quota_rejections_total{quota="+q+"}")
	}
	for _, r := range []string{"loopback", "private", "link-local", "cgnat", "multicast", "unspecified", "reserved",
		"metadata", "operator", "self", "broadcast", "connect_transport"} {
		want = append(want, "turnd_policy_denials_total{reason="+r+"}")
	}
	for _, r := range []string{"malformed", "rate_limited", "bandwidth", "auth_rate_limited", "oversize_frame",
		"connection_limit", "send_buffer_full", "forbidden_peer"} {
		want = append(want, "turnd_dropped_packets_total{reason="+r+"}")
	}
	for _, k := range want {
		if v, ok := got[k]; !ok {
			t.Errorf("%s is missing at start", k)
		} else if v != 0 {
			t.Errorf("%s = %v at start, want 0", k, v)
		}
	}
	for k := range got {
		if strings.HasPrefix(k, "turn_") {
			t.Errorf("coturn name %s exported without MetricNamesCoturn", k)
		}
	}
}

// TestCoturnMetricNames: with MetricNamesCoturn the registry exports
// exactly coturn 4.6.1's names (testdata, taken from its prom_server.c)
// with coturn's labels, fed by live traffic, next to turnd's own.
func TestCoturnMetricNames(t *testing.T) {
	srv := newTestServer(t, func(c *Config) { c.MetricNames = MetricNamesCoturn })
	peer := echoPeer(t, "127.0.0.1:0")
	cl := pionClient(t, srv, "udp", "alice", "wonderland")
	relayConn, err := cl.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relayConn.Close()
	const n = 10
	relayRoundTrips(t, relayConn, peer.LocalAddr(), n)
	// The data path adds its counts once per batch, after the batch is
	// sent: the echo can reach the client before the count is added.
	awaitMetric(t, srv, "turnd_relayed_packets_total", "client_to_peer", n)
	awaitMetric(t, srv, "turnd_relayed_packets_total", "peer_to_client", n)

	got := gathered(t, srv)
	f, err := os.Open("testdata/coturn-4.6.1-metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			names[line] = true
		}
	}
	if len(names) != 17 {
		t.Fatalf("%d coturn names in testdata, want 17", len(names))
	}
	exported := map[string]bool{}
	for k := range got {
		if strings.HasPrefix(k, "turn_") {
			name, _, _ := strings.Cut(k, "{")
			exported[name] = true
			if !names[name] {
				t.Errorf("%s is not a coturn 4.6.1 name", k)
			}
		}
	}
	for name := range names {
		if !exported[name] {
			t.Errorf("coturn's %s is not exported", name)
		}
	}
	if _, ok := got["turnd_allocations_active"]; !ok {
		t.Error("turnd's own names vanished with MetricNamesCoturn")
	}

	// Values follow turnd's counters; coturn's per-session series carry
	// the realm label, its totals none.
	if v := got["turn_total_allocations"]; v != 1 {
		t.Errorf("turn_total_allocations = %v, want 1", v)
	}
	c2p := got["turnd_relayed_packets_total{direction=client_to_peer}"]
	p2c := got["turnd_relayed_packets_total{direction=peer_to_client}"]
	if c2p < n || p2c < n {
		t.Fatalf("relayed %v/%v packets, want at least %d each way", c2p, p2c, n)
	}
	for k, want := range map[string]float64{
		"turn_traffic_rcvp{realm=test.realm}":       c2p,
		"turn_traffic_sentp{realm=test.realm}":      p2c,
		"turn_traffic_peer_rcvp{realm=test.realm}":  p2c,
		"turn_traffic_peer_sentp{realm=test.realm}": c2p,
		"turn_total_traffic_rcvp":                   c2p,
		"turn_total_traffic_peer_sentp":             c2p,
		"turn_total_traffic_sentb":                  got["turnd_relayed_bytes_total{direction=peer_to_client}"],
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
}

func TestMetricNamesValidate(t *testing.T) {
	for _, n := range []MetricNames{"", MetricNamesTurnd, MetricNamesCoturn} {
		if err := n.validate(); err != nil {
			t.Errorf("%q: %v", n, err)
		}
	}
	if err := MetricNames("prometheus").validate(); err == nil {
		t.Error("unknown metric names accepted")
	}
}
