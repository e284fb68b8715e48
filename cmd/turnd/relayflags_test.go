package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rtcsuite/rtcsuite/relay"
)

// writeCoturnConf writes a minimal coturn config plus extra lines.
func writeCoturnConf(t *testing.T, lines ...string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "turnserver.conf")
	body := "listening-ip=127.0.0.1\nuse-auth-secret\nstatic-auth-secret=0123456789abcdef0123456789abcdef\nrealm=r.example\n" +
		strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestMetricsNamesOption: --metrics-names picks coturn's names, and a
// coturn config's `prometheus` line turns them on with coturn's port.
func TestMetricsNamesOption(t *testing.T) {
	_, l, _, err := loadCoturn(t, writeCoturnConf(t, "prometheus"))
	if err != nil {
		t.Fatal(err)
	}
	if l.relay.MetricNames != relay.MetricNamesCoturn || l.admin != "127.0.0.1:9641" {
		t.Errorf("prometheus: metric names %q on %q, want coturn on 127.0.0.1:9641", l.relay.MetricNames, l.admin)
	}
	_, l, _, err = loadCoturn(t, writeCoturnConf(t))
	if err != nil {
		t.Fatal(err)
	}
	if l.relay.MetricNames != relay.MetricNamesTurnd {
		t.Errorf("default metric names %q, want turnd", l.relay.MetricNames)
	}
	_, _, _, err = loadCoturn(t, writeCoturnConf(t), "--metrics-names", "graphite")
	if err == nil || !strings.Contains(err.Error(), "graphite") {
		t.Errorf("--metrics-names graphite: %v, want an error naming the value", err)
	}
}
