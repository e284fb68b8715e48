package main

import (
	"encoding/json"
	"net"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// dashboardExprs returns every PromQL expression in a Grafana dashboard
// (panel targets and template queries).
func dashboardExprs(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d any
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s is not JSON: %v", path, err)
	}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if s, ok := c.(string); ok && (k == "expr" || k == "definition") {
					out = append(out, s)
				}
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(d)
	return out
}

// relayConn makes an allocation as user and returns the client's relay
// connection.
func relayConn(t *testing.T, r *runningTurnd, user, pass string) net.PacketConn {
	t.Helper()
	addr := r.srv.Addr("udp").String()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: user, Password: pass, RTO: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	rc, err := cl.Allocate()
	if err != nil {
		t.Fatalf("allocate as %s: %v", user, err)
	}
	t.Cleanup(func() { rc.Close(); cl.Close(); conn.Close() })
	return rc
}

// TestGrafanaDashboardMetricsExist checks deploy/grafana-turnd.json against
// the metric families a running turnd exports once every kind of event
// has happened.
func TestGrafanaDashboardMetricsExist(t *testing.T) {
	r := startTurndRun(t, "--user", "alice:wonderland-2026", "--user", "bob:builder-2026-x", "--user-quota", "1")

	a := relayConn(t, r, "alice", "wonderland-2026")
	b := relayConn(t, r, "bob", "builder-2026-x")
	// Quota (alice's second), auth failure (wrong password).
	if err := r.allocate(t, "alice", "wonderland-2026"); err == nil {
		t.Error("second allocation passed user-quota 1")
	}
	if err := r.allocate(t, "bob", "wrong-password"); err == nil {
		t.Error("wrong password allocated")
	}
	// Policy denial: a loopback peer.
	if _, err := a.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); err == nil {
		t.Log("write to a loopback peer returned no error (the permission is refused server-side)")
	}
	// A malformed datagram. One listener socket reads in order, so once
	// the relayed datagram below came through, this one was counted.
	junk, err := net.Dial("udp", r.srv.Addr("udp").String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = junk.Write([]byte{0x00, 0x01, 0x00, 0x08, 1, 2, 3})
	junk.Close()
	// Relayed data between the two allocations (own relay addresses pass).
	if _, err := b.WriteTo([]byte("open"), a.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.WriteTo([]byte("hello"), b.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_ = b.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, _, err := b.ReadFrom(buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("relay a->b: %q, %v", buf[:n], err)
	}

	_, body := r.get(t, "/metrics")
	families := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			families[f[2]] = true
		}
	}
	metricName := regexp.MustCompile(`\b(?:turnd|process|go)_[a-z0-9_]+\b`)
	used := map[string]bool{}
	for _, e := range dashboardExprs(t, "../../deploy/grafana-turnd.json") {
		for _, m := range metricName.FindAllString(e, -1) {
			used[m] = true
		}
	}
	if len(used) < 10 {
		t.Fatalf("dashboard uses only %d metrics: %v", len(used), used)
	}
	var missing []string
	for m := range used {
		if !families[m] {
			missing = append(missing, m)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the dashboard queries metrics turnd does not export: %v\n/metrics:\n%s", missing, body)
	}
	for m := range families {
		if strings.HasPrefix(m, "turnd_") && !used[m] && m != "turnd_rfc5780_answers_total" && m != "turnd_pion_log_events_total" {
			t.Errorf("turnd exports %s but the dashboard does not show it", m)
		}
	}
}
