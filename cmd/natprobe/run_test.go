package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pion/stun/v4"

	"github.com/rtcsuite/rtcsuite/internal/testenv"
	"github.com/rtcsuite/rtcsuite/natclass"
)

// stunServer is a plain STUN server on 127.0.0.1 (no RFC 5780: 420 to
// CHANGE-REQUEST), or a silent socket when silent is set.
func stunServer(t *testing.T, silent bool) string {
	return stunServerOn(t, silent, "udp4", net.IPv4(127, 0, 0, 1))
}

func stunServerOn(t *testing.T, silent bool, network string, ip net.IP) string {
	t.Helper()
	c, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
	if err != nil && network == "udp6" {
		testenv.SkipOrFail(t, "no IPv6 loopback (::1): "+err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			m := &stun.Message{Raw: buf[:n]}
			if silent || m.Decode() != nil || m.Type != stun.BindingRequest {
				continue
			}
			var resp *stun.Message
			if m.Contains(stun.AttrChangeRequest) {
				resp = stun.MustBuild(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingError,
					stun.CodeUnknownAttribute, stun.UnknownAttributes{stun.AttrChangeRequest}, stun.Fingerprint)
			} else {
				resp = stun.MustBuild(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
					&stun.XORMappedAddress{IP: from.IP, Port: from.Port}, stun.Fingerprint)
			}
			_, _ = c.WriteToUDP(resp.Raw, from)
		}
	}()
	t.Cleanup(func() { c.Close(); wg.Wait() })
	return c.LocalAddr().String()
}

func runCLI(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"no --server given"}},
		{[]string{"--server", "127.0.0.1:0"}, []string{"bad port"}},
		{[]string{"--server", "127.0.0.1:99999", "--server", ":3478", "-4", "-6"}, []string{"bad port", "no host", "-4 and -6"}},
		{[]string{"--server", "::1"}, []string{"[addr]:port"}},
		{[]string{"--server", "127.0.0.1:3478", "extra"}, []string{"unexpected arguments"}},
		{[]string{"--nosuchflag"}, []string{"flag provided but not defined"}},
		{[]string{"--server", "127.0.0.1:3478", "--timeout", "-1s"}, []string{"--timeout"}},
		{[]string{"--server", "127.0.0.1:3478", "--peer", "/nonexistent/peer.json"}, []string{"/nonexistent/peer.json"}},
		{[]string{"predict", "one.json"}, []string{"want two report files"}},
	} {
		code, _, stderr := runCLI(t, nil, tc.args...)
		if code != exitUsage {
			t.Errorf("%q: exit %d, want %d (%s)", tc.args, code, exitUsage, stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%q: stderr lacks %q:\n%s", tc.args, w, stderr)
			}
		}
	}
	if code, _, stderr := runCLI(t, nil, "--help"); code != exitOK || !strings.Contains(stderr, "Exit codes:") {
		t.Errorf("--help: exit %d\n%s", code, stderr)
	}
}

func TestProbePlainServer(t *testing.T) {
	t.Parallel()
	srv := stunServer(t, false)
	code, stdout, stderr := runCLI(t, nil, "--server", srv)
	if code != exitPartial {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, exitPartial, stdout, stderr)
	}
	for _, want := range []string{"plain STUN, no OTHER-ADDRESS", "Filtering:", "unknown", "WebRTC:", "IPv6: not probed"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "natprobe: [ipv4] mapping") {
		t.Errorf("no progress on stderr:\n%s", stderr)
	}

	// --json from the environment's server list, quiet.
	code, stdout, stderr = runCLI(t, map[string]string{envServers: srv}, "--json", "-q", "-4")
	if code != exitPartial || stderr != "" {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
	rep, err := natclass.ParseReport(strings.NewReader(stdout))
	if err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, stdout)
	}
	r := rep.Results[0]
	if r.Verdict != natclass.VerdictPartial || r.NAT != natclass.No || r.Filtering != natclass.BehaviorUnknown || len(rep.Results) != 1 {
		t.Fatalf("report %+v", r)
	}
}

func TestProbeBlocked(t *testing.T) {
	t.Parallel()
	srv := stunServer(t, true)
	code, stdout, _ := runCLI(t, nil, "--server", srv, "-4", "-q", "--timeout", "200ms")
	if code != exitBlocked || !strings.Contains(stdout, "UDP is blocked") {
		t.Fatalf("exit %d\n%s", code, stdout)
	}
}

// A closed port (ICMP port unreachable on loopback) is "server port
// closed", exit 8, never "UDP is blocked".
func TestProbeServerPortClosed(t *testing.T) {
	t.Parallel()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	closed := c.LocalAddr().String()
	c.Close()
	code, stdout, _ := runCLI(t, nil, "--server", closed, "-4", "-q")
	if code != exitPortClosed || !strings.Contains(stdout, "port is closed") || strings.Contains(stdout, "UDP is blocked") {
		t.Fatalf("exit %d\n%s", code, stdout)
	}
}

func writeReport(t *testing.T, dir, name string, m, f natclass.Behavior) string {
	t.Helper()
	rep := natclass.Report{Schema: natclass.SchemaVersion, Results: []natclass.Result{{
		Family: "ipv4", Verdict: natclass.VerdictComplete, NAT: natclass.Yes, Mapping: m, Filtering: f,
		Hairpinning: natclass.Unknown, PortPreservation: natclass.Unknown, Classic: natclass.ClassicUnknown,
	}}}
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPredictCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cone := writeReport(t, dir, "cone.json", natclass.EndpointIndependent, natclass.AddressAndPortDependent)
	full := writeReport(t, dir, "full.json", natclass.EndpointIndependent, natclass.EndpointIndependent)
	sym := writeReport(t, dir, "sym.json", natclass.AddressAndPortDependent, natclass.AddressAndPortDependent)
	for _, tc := range []struct {
		a, b string
		code int
		want string
	}{
		{cone, cone, exitOK, "Prediction: Direct"},
		{sym, full, exitPeerReflex, "peer-reflexive"},
		{sym, cone, exitRelayNeeded, "Deploy a TURN server"},
	} {
		code, stdout, stderr := runCLI(t, nil, "predict", tc.a, tc.b)
		if code != tc.code || !strings.Contains(stdout, tc.want) {
			t.Errorf("predict %s %s: exit %d, want %d\n%s%s", tc.a, tc.b, code, tc.code, stdout, stderr)
		}
	}
	code, stdout, _ := runCLI(t, nil, "predict", sym, cone, "--json")
	var p natclass.ReportPrediction
	if err := json.Unmarshal([]byte(stdout), &p); err != nil || code != exitRelayNeeded || p.Outcome != natclass.OutcomeRelay || len(p.Families) != 1 {
		t.Fatalf("predict --json: exit %d err %v %+v", code, err, p)
	}

	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"schema":"something else"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCLI(t, nil, "predict", bad, cone); code != exitError || !strings.Contains(stderr, "not a natprobe --json report") {
		t.Fatalf("bad file: exit %d %s", code, stderr)
	}

	// --peer: probe, then predict. Loopback has no NAT (endpoint-independent
	// mapping), so against a port-restricted cone it is direct.
	srv := stunServer(t, false)
	code, stdout, stderr := runCLI(t, nil, "--server", srv, "-4", "-q", "--peer", cone)
	if code != exitOK || !strings.Contains(stdout, "Prediction: Direct") {
		t.Fatalf("--peer: exit %d\n%s%s", code, stdout, stderr)
	}
}

func TestProbeIPv6Loopback(t *testing.T) {
	t.Parallel()
	srv := stunServerOn(t, false, "udp6", net.IPv6loopback)
	code, stdout, stderr := runCLI(t, nil, "--server", srv, "-6", "-q")
	if code != exitPartial || !strings.Contains(stdout, "IPv6 via ") || !strings.Contains(stdout, "as usual for IPv6") {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = runCLI(t, nil, "--server", srv, "-6", "-q", "--json")
	rep, err := natclass.ParseReport(strings.NewReader(stdout))
	if err != nil || code != exitPartial || len(rep.Results) != 1 || rep.Results[0].Family != "ipv6" || rep.Results[0].NAT != natclass.No {
		t.Fatalf("exit %d err %v %+v", code, err, rep.Results)
	}
}
