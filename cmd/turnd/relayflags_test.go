package main

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestRelayExtOptions: the coturn lines the relay now honours set the
// relay settings with coturn's meaning, and bad values are refused.
func TestRelayExtOptions(t *testing.T) {
	dir := t.TempDir()
	caCert, _ := writeTestCert(t, dir)
	_, l, _, err := loadCoturn(t, writeCoturnConf(t,
		"stale-nonce", "no-udp-relay", "stun-only", "channel-lifetime=900", "permission-lifetime=120", "max-allocate-lifetime=1800", "bps-capacity=1250000",
		"no-tlsv1_2", "ec-curve-name=secp384r1", "CA-file="+caCert, "cipher-list=DEFAULT:!aNULL"))
	if err != nil {
		t.Fatal(err)
	}
	c := l.relay
	for _, ck := range []struct {
		what string
		ok   bool
	}{
		{"stale-nonce without a value is 600 s", c.StaleNonce == 10*time.Minute},
		{"no-udp-relay", c.NoUDPRelay && !c.NoTCPRelay},
		{"stun-only", c.STUNOnly && !c.NoSTUN},
		{"channel-lifetime", c.ChannelLifetime == 15*time.Minute},
		{"permission-lifetime", c.PermissionLifetime == 2*time.Minute},
		{"max-allocate-lifetime", c.MaxAllocationLifetime == 30*time.Minute},
		{"bps-capacity", c.BPSCapacity == 1250000},
		{"no-tlsv1_2", c.TLSMinVersion == tls.VersionTLS13},
		{"ec-curve-name", len(c.TLSCurves) == 1 && c.TLSCurves[0] == tls.CurveP384},
		{"CA-file", c.TLSClientCAs != nil},
		{"cipher-list DEFAULT keeps Go's list", c.TLSCipherSuites == nil},
	} {
		if !ck.ok {
			t.Errorf("%s: not applied", ck.what)
		}
	}
	_, l, _, err = loadCoturn(t, writeCoturnConf(t, "channel-lifetime=-1", "permission-lifetime=0"))
	if err != nil {
		t.Fatal(err)
	}
	if l.relay.ChannelLifetime != 0 || l.relay.PermissionLifetime != 0 {
		t.Errorf("coturn's -1/0 lifetimes must mean the defaults, got %v/%v", l.relay.ChannelLifetime, l.relay.PermissionLifetime)
	}

	for _, bad := range [][]string{
		{"stale-nonce=30"},
		{"stale-nonce=7200"},
		{"max-allocate-lifetime=7200"},
		{"stun-only", "no-stun"},
		{"no-udp-relay", "no-tcp-relay"},
		{"ec-curve-name=brainpoolP256r1"},
		{"CA-file=" + filepath.Join(dir, "missing.pem")},
		{"cipher-list=RC4-SHA:DES-CBC3-SHA"},
	} {
		if _, _, _, err := loadCoturn(t, writeCoturnConf(t, bad...)); err == nil {
			t.Errorf("%q loaded", bad)
		}
	}
}

func TestParseCipherList(t *testing.T) {
	suites, unknown, err := parseCipherList("ECDHE-ECDSA-AES256-GCM-SHA384:ecdhe-rsa-chacha20-poly1305:!MD5:EECDH+AESGCM")
	if err != nil {
		t.Fatal(err)
	}
	if len(suites) != 2 || suites[0] != tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 || suites[1] != tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 {
		t.Errorf("suites %v", suites)
	}
	if len(unknown) != 1 || unknown[0] != "EECDH+AESGCM" {
		t.Errorf("unknown %q", unknown)
	}
}

func FuzzParseCipherList(f *testing.F) {
	f.Add("ECDHE-RSA-AES128-GCM-SHA256:!aNULL")
	f.Add("DEFAULT")
	f.Add(":::")
	f.Fuzz(func(t *testing.T, s string) {
		suites, _, err := parseCipherList(s)
		if err == nil && suites == nil {
			return // a keyword: Go's list
		}
		for _, id := range suites {
			if tls.CipherSuiteName(id) == "" {
				t.Errorf("unknown suite %#x", id)
			}
		}
	})
}

// TestOffloadOption: --offload defaults to auto, takes tc and off from a
// flag or a config file line, and refuses anything else by name.
func TestOffloadOption(t *testing.T) {
	for _, tc := range []struct {
		lines, args []string
		want        relay.OffloadMode
	}{
		{nil, nil, relay.OffloadAuto},
		{nil, []string{"--offload", "tc"}, relay.OffloadTC},
		{[]string{"offload=off"}, nil, relay.OffloadOff},
		{[]string{"offload=off"}, []string{"--offload=auto"}, relay.OffloadAuto},
	} {
		_, l, _, err := loadCoturn(t, writeCoturnConf(t, tc.lines...), tc.args...)
		if err != nil {
			t.Fatalf("%q %q: %v", tc.lines, tc.args, err)
		}
		if l.relay.Offload != tc.want {
			t.Errorf("%q %q: offload %q, want %q", tc.lines, tc.args, l.relay.Offload, tc.want)
		}
	}
	_, _, _, err := loadCoturn(t, writeCoturnConf(t), "--offload", "xdp")
	if err == nil || !strings.Contains(err.Error(), `"xdp"`) || !strings.Contains(err.Error(), "auto, tc or off") {
		t.Errorf("--offload xdp: %v, want an error naming the value and the choices", err)
	}
}
