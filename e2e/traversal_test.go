//go:build linux

package e2e

// The traversal matrix of issue 12: two hosts behind two independent lab
// NATs (e2e/natlab.Pair) share one "internet" with turnd and the hub. On
// every cell, natprobe runs on both LANs, `natprobe predict` gives its
// verdict, and two pion peers (trvpeer, started with `ip netns exec`) join
// one room through the hub and open a data channel in one mode. The
// observed path class (direct, relay, fail) must equal the one the
// prediction implies for that mode; any disagreement fails the test.
//
// CI runs a subset that covers every prediction outcome and every mode
// once (traversal_ciCells). bench/traversal.sh sets TRAVERSAL_FULL=1 for
// all 28 pairs x 3 modes (+ the IPv6 column) and TRAVERSAL_DOC to
// regenerate docs/traversal.md.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rtcsuite/rtcsuite/e2e/natlab"
	"github.com/rtcsuite/rtcsuite/internal/testenv"
	"github.com/rtcsuite/rtcsuite/natclass"
)

// The modes of a cell: which of the hub's ICE servers the peers use.
const (
	traversal_modeSTUN = "stun" // turnd as a STUN server only
	traversal_modeUDP  = "udp"  // STUN + TURN over UDP
	traversal_modeTCP  = "tcp"  // TURN over TCP and turns: on TCP 443 only
	traversal_modeV6   = "ipv6" // IPv6, STUN only: no NAT, firewall filtering
)

var traversal_modes = []string{traversal_modeSTUN, traversal_modeUDP, traversal_modeTCP}

// traversal_cellTimeout is the 15 s per cell.
const traversal_cellTimeout = 15 * time.Second

const traversal_secret = "trv-natlab-secret"

// traversal_cell is one measured cell.
type traversal_cell struct {
	A, B      string // case keys
	Mode      string
	Predicted string // natprobe predict's outcome for the family
	Certain   bool
	Expected  string // path class the prediction implies for the mode
	Observed  string // direct, relay, fail
	Types     string // "host→srflx / host→prflx": each side's selected local→remote candidate types
	MS        float64
	Note      string
}

// traversal_bins holds the binaries one test run builds once.
type traversal_bins struct {
	natprobe, turnd, signal, peer string
	cert, key, ca                 string
}

func traversal_build(t *testing.T) traversal_bins {
	t.Helper()
	dir := t.TempDir()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	var b traversal_bins
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	for _, x := range []struct {
		dst *string
		pkg string
	}{{&b.natprobe, "./cmd/natprobe"}, {&b.turnd, "./cmd/turnd"}, {&b.signal, "./cmd/signal"}, {&b.peer, "./e2e/natlab/trvpeer"}} {
		*x.dst = filepath.Join(dir, filepath.Base(x.pkg))
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "go", "build", "-o", *x.dst, x.pkg)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("go build %s: %v\n%s", x.pkg, err, out))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(strings.Join(errs, "\n"))
	}
	b.cert, b.key, b.ca = traversal_certs(t, dir)
	return b
}

// traversal_certs writes a CA and a server certificate for the lab's
// server addresses; the peers trust the CA through SSL_CERT_FILE (pion
// verifies turns: servers against the system pool).
func traversal_certs(t *testing.T, dir string) (cert, key, ca string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "trv lab CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: natlab.ServerIP.String()},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{natlab.ServerIP.AsSlice(), natlab.ServerIP6.AsSlice()},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("server.pem", "CERTIFICATE", srvDER), write("server.key", "EC PRIVATE KEY", keyDER), write("ca.pem", "CERTIFICATE", caDER)
}

// traversal_servers starts turnd (RFC 5780 on IPv4 and, as a second
// instance, on IPv6; TURN on UDP/TCP 3478 and TLS 443) and the hub in the
// pair's internet namespace.
func traversal_servers(t *testing.T, ctx context.Context, p *natlab.Pair, b traversal_bins) {
	t.Helper()
	allow := []string{"--allowed-peer-ip", "192.0.2.0/24", "--allowed-peer-ip", "198.51.100.0/24", "--allowed-peer-ip", "203.0.113.0/24",
		"--allowed-peer-ip", "2001:db8::/32"}
	common := []string{"--realm", "trv", "--static-auth-secret", traversal_secret, "--rfc5780-rate=-1", "--unauth-rate=-1", "--admin-listen", ""}
	turnd, err := p.Start(p.NetNS(), b.turnd, append(append([]string{
		"--rfc5780", "--listening-ip", natlab.ServerIP.String(), "--alt-listening-ip", natlab.ServerIP2.String(),
		"--listening-port", "3478", "--alt-listening-port", "3479", "--relay-ip", natlab.ServerIP.String(),
		"--cert", b.cert, "--pkey", b.key, "--tls-listening-port", "443",
	}, common...), allow...)...)
	if err != nil {
		t.Fatal(err)
	}
	turnd6, err := p.Start(p.NetNS(), b.turnd, append(append([]string{
		"--rfc5780", "--listening-ip", natlab.ServerIP6.String(), "--alt-listening-ip", natlab.ServerIP6b.String(),
		"--listening-port", "3480", "--alt-listening-port", "3481", "--no-tcp", "--no-tls",
	}, common...), allow...)...)
	if err != nil {
		t.Fatal(err)
	}
	hub, err := p.Start(p.NetNS(), b.signal,
		"--listen", netip.AddrPortFrom(natlab.ServerIP, 8080).String(), "--allow-open", "--admin-listen", "",
		"--max-conns-per-ip", "-1",
		"--turn-secret", traversal_secret,
		"--turn-url", "stun:203.0.113.10:3478",
		"--turn-url", "stun:[2001:db8:f::10]:3480",
		"--turn-url", "turn:203.0.113.10:3478?transport=udp",
		"--turn-url", "turn:203.0.113.10:3478?transport=tcp",
		"--turn-url", "turns:203.0.113.10:443?transport=tcp")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitReady(ctx, netip.AddrPortFrom(natlab.ServerIP, 3478), netip.AddrPortFrom(natlab.ServerIP, 8080), turnd, hub); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitReady(ctx, netip.AddrPortFrom(natlab.ServerIP6, 3480), netip.AddrPort{}, turnd6); err != nil {
		t.Fatal(err)
	}
}

// traversal_probe runs natprobe on side s and returns its report file.
func traversal_probe(t *testing.T, ctx context.Context, p *natlab.Pair, b traversal_bins, s natlab.Side, family string) (string, natclass.Result) {
	t.Helper()
	server, flag := "203.0.113.10:3478", "-4"
	if family == "ipv6" {
		server, flag = "[2001:db8:f::10]:3480", "-6"
	}
	if err := p.ResetNAT(ctx); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", p.LANNS(s), b.natprobe, "--json", flag, "-q", "--server", server)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run() // the exit code is the verdict's; the report says it
	rep, err := natclass.ParseReport(bytes.NewReader(stdout.Bytes()))
	if err != nil {
		t.Fatalf("natprobe side %s (%s): %v\n%s\n%s", s, family, err, stdout.Bytes(), stderr.Bytes())
	}
	r, ok := rep.Result(family)
	if !ok {
		t.Fatalf("natprobe side %s: no %s result", s, family)
	}
	file := filepath.Join(t.TempDir(), fmt.Sprintf("natprobe-%s-%s.json", s, family))
	if err := os.WriteFile(file, stdout.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return file, r
}

// traversal_predict runs `natprobe predict` on the two reports.
func traversal_predict(t *testing.T, ctx context.Context, b traversal_bins, fa, fb, family string) natclass.FamilyPrediction {
	t.Helper()
	out, err := exec.CommandContext(ctx, b.natprobe, "predict", "--json", fa, fb).Output()
	if _, exit := err.(*exec.ExitError); err != nil && !exit {
		t.Fatalf("natprobe predict: %v", err)
	}
	var rp natclass.ReportPrediction
	if err := json.Unmarshal(out, &rp); err != nil {
		t.Fatalf("natprobe predict output %q: %v", out, err)
	}
	for _, f := range rp.Families {
		if f.Family == family {
			return f
		}
	}
	t.Fatalf("natprobe predict: no %s family in %s", family, out)
	return natclass.FamilyPrediction{}
}

// traversal_expect is the path class a prediction implies for a mode:
//   - STUN only: direct when predict says direct (either kind), else fail;
//   - STUN + TURN/UDP: a UDP-blocked side fails (it reaches nothing over
//     UDP), else direct or relay as predicted;
//   - TURN over TCP/TLS only: there are no server-reflexive candidates, so
//     a direct path needs a host candidate the other side can reach: one
//     side without NAT and without a filter, the other not UDP-blocked.
//     Everything else goes through the relay, which TCP always reaches.
func traversal_expect(mode string, pred natclass.Prediction, a, b natclass.Result) string {
	blocked := a.UDPBlocked || b.UDPBlocked
	direct := pred.Outcome == natclass.OutcomeDirect || pred.Outcome == natclass.OutcomePeerReflexive
	open := func(r natclass.Result) bool {
		return r.NAT == natclass.No && r.Filtering == natclass.EndpointIndependent
	}
	switch mode {
	case traversal_modeSTUN, traversal_modeV6:
		if direct && !blocked {
			return "direct"
		}
		return "fail"
	case traversal_modeUDP:
		switch {
		case blocked:
			return "fail"
		case direct:
			return "direct"
		}
		return "relay"
	}
	if !blocked && (open(a) || open(b)) {
		return "direct"
	}
	return "relay"
}

// traversal_peerResult is trvpeer's JSON line.
type traversal_peerResult struct {
	OK         bool    `json:"ok"`
	MS         float64 `json:"ms"`
	Local      string  `json:"local"`
	Remote     string  `json:"remote"`
	LocalAddr  string  `json:"local_addr"`
	RemoteAddr string  `json:"remote_addr"`
	ICEState   string  `json:"ice_state"`
	Error      string  `json:"error"`
}

var traversal_roomSeq struct {
	sync.Mutex
	n int
}

// traversal_runCell starts both peers and waits for their result lines.
func traversal_runCell(t *testing.T, ctx context.Context, p *natlab.Pair, b traversal_bins, mode string) (res [2]traversal_peerResult, note string) {
	t.Helper()
	if err := p.ResetNAT(ctx); err != nil {
		t.Fatal(err)
	}
	traversal_roomSeq.Lock()
	traversal_roomSeq.n++
	room := fmt.Sprintf("cell-%d", traversal_roomSeq.n)
	traversal_roomSeq.Unlock()
	peerMode, family := mode, "ipv4"
	if mode == traversal_modeV6 {
		peerMode, family = traversal_modeSTUN, "ipv6"
	}
	var procs [2]*natlab.Proc
	var lines [2]<-chan string
	for s := natlab.SideA; s <= natlab.SideB; s++ {
		proc, ch, err := p.StartLines(p.LANNS(s), "env", "SSL_CERT_FILE="+b.ca, b.peer,
			"-hub", "ws://203.0.113.10:8080/ws", "-room", room, "-mode", peerMode, "-family", family,
			"-timeout", traversal_cellTimeout.String())
		if err != nil {
			t.Fatal(err)
		}
		procs[s], lines[s] = proc, ch
	}
	defer func() {
		for _, proc := range procs {
			proc.Stop(5 * time.Second)
		}
	}()
	bound := time.NewTimer(traversal_cellTimeout + 10*time.Second) // a safety net for a hung helper
	defer bound.Stop()
	for s := range 2 {
		select {
		case line, ok := <-lines[s]:
			if !ok {
				t.Fatalf("peer %d ended without a result: %v\n%s", s, procs[s].Err(), procs[s].Output())
			}
			if err := json.Unmarshal([]byte(line), &res[s]); err != nil {
				t.Fatalf("peer %d result %q: %v", s, line, err)
			}
		case <-bound.C:
			t.Fatalf("peer %d gave no result in %v\n%s", s, traversal_cellTimeout+10*time.Second, procs[s].Output())
		}
	}
	if !res[0].OK || !res[1].OK {
		note = fmt.Sprintf("a: %s %s; b: %s %s", res[0].ICEState, res[0].Error, res[1].ICEState, res[1].Error)
	}
	return res, note
}

func traversal_observed(r [2]traversal_peerResult) string {
	switch {
	case !r[0].OK || !r[1].OK:
		return "fail"
	case r[0].Local == "relay" || r[1].Local == "relay":
		return "relay"
	}
	return "direct"
}

// traversal_pairCells are the cells of one pair to run.
type traversal_pairCells struct {
	a, b  natlab.Case
	modes []string
}

// traversal_ciCells covers every prediction outcome (direct, peer-reflexive,
// relay; relay over TCP) and every mode at least once, and one cell that
// must fail, in seven cells.
func traversal_ciCells() []traversal_pairCells {
	c := map[string]natlab.Case{}
	for _, x := range natlab.PairCases() {
		c[x.Key()] = x
	}
	return []traversal_pairCells{
		{c["eim-eif"], c["eim-apdf"], []string{traversal_modeSTUN}},    // direct
		{c["apdm-apdf"], c["eim-adf"], []string{traversal_modeSTUN}},   // peer-reflexive
		{c["apdm-apdf"], c["eim-apdf"], []string{traversal_modeUDP}},   // relay needed, relayed over UDP
		{c["blocked"], c["apdm-apdf"], []string{traversal_modeTCP}},    // UDP blocked: TURN over TCP/TLS
		{c["nonat"], c["apdm-apdf"], []string{traversal_modeTCP}},      // TCP-only mode, direct via host
		{c["eim-apdf"], c["adm-adf"], []string{traversal_modeV6}},      // IPv6 firewalls, direct
		{c["apdm-apdf"], c["apdm-apdf"], []string{traversal_modeSTUN}}, // relay needed but no TURN: must fail (15 s)
	}
}

func traversal_fullCells() []traversal_pairCells {
	cs := natlab.PairCases()
	var out []traversal_pairCells
	for i := range cs {
		for j := i; j < len(cs); j++ {
			out = append(out, traversal_pairCells{cs[i], cs[j], append(append([]string{}, traversal_modes...), traversal_modeV6)})
		}
	}
	return out
}

func TestTraversalMatrix(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ip", "iproute2")
	testenv.NeedCommand(t, "nft", "nftables")
	testenv.NeedCommand(t, "conntrack", "conntrack")
	bins := traversal_build(t)
	cells, parallel := traversal_ciCells(), 2
	if os.Getenv("TRAVERSAL_FULL") == "1" {
		cells, parallel = traversal_fullCells(), 3
	}
	var mu sync.Mutex
	var results []traversal_cell
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for _, pc := range cells {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			t.Run(pc.a.Key()+"_x_"+pc.b.Key(), func(t *testing.T) {
				got := traversal_pair(t, bins, pc)
				mu.Lock()
				results = append(results, got...)
				mu.Unlock()
			})
		})
	}
	wg.Wait()
	sort.Slice(results, func(i, j int) bool {
		ki, kj := traversal_caseIndex(results[i].A)*10+traversal_caseIndex(results[i].B), traversal_caseIndex(results[j].A)*10+traversal_caseIndex(results[j].B)
		if ki != kj {
			return ki < kj
		}
		return traversal_modeIndex(results[i].Mode) < traversal_modeIndex(results[j].Mode)
	})
	for _, c := range results {
		t.Logf("%-9s x %-9s %-4s predicted %-35s expected %-6s observed %-6s %-27s %6.0f ms %s",
			c.A, c.B, c.Mode, c.Predicted, c.Expected, c.Observed, c.Types, c.MS, c.Note)
	}
	if doc := os.Getenv("TRAVERSAL_DOC"); doc != "" && !t.Failed() {
		if err := os.WriteFile(doc, []byte(traversal_doc(results)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if raw := os.Getenv("TRAVERSAL_JSON"); raw != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		_ = os.WriteFile(raw, b, 0o644)
	}
}

func traversal_caseIndex(key string) int {
	for i, c := range natlab.PairCases() {
		if c.Key() == key {
			return i
		}
	}
	return 9
}

func traversal_modeIndex(m string) int {
	for i, x := range append(append([]string{}, traversal_modes...), traversal_modeV6) {
		if x == m {
			return i
		}
	}
	return 9
}

// traversal_pair builds one pair's lab and runs its cells.
func traversal_pair(t *testing.T, bins traversal_bins, pc traversal_pairCells) []traversal_cell {
	return traversal_pairWith(t, bins, pc, nil)
}

// traversal_pairWith is traversal_pair that also hands the lab (alive
// until t ends) to keep.
func traversal_pairWith(t *testing.T, bins traversal_bins, pc traversal_pairCells, keep func(*natlab.Pair)) []traversal_cell {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p := natlab.NewPair(t, pc.a, pc.b)
	if keep != nil {
		keep(p)
	}
	traversal_servers(t, ctx, p, bins)
	type probed struct {
		pred natclass.FamilyPrediction
		a, b natclass.Result
	}
	preds := map[string]probed{}
	predFor := func(family string) probed {
		if x, ok := preds[family]; ok {
			return x
		}
		fa, ra := traversal_probe(t, ctx, p, bins, natlab.SideA, family)
		fb, rb := traversal_probe(t, ctx, p, bins, natlab.SideB, family)
		// natprobe must classify each side exactly as the lab built it.
		for i, r := range []natclass.Result{ra, rb} {
			c := [2]natlab.Case{pc.a, pc.b}[i]
			want := c.Want()
			if family == "ipv6" {
				want = c.Want6()
			}
			if got := natlab_got(r); got != want {
				t.Errorf("natprobe %s on side %s (%s):\n got  %+v\n want %+v\nreasons: %q", family, natlab.Side(i), c.Key(), got, want, r.Reasons)
			}
		}
		x := probed{traversal_predict(t, ctx, bins, fa, fb, family), ra, rb}
		preds[family] = x
		return x
	}
	// Both families are probed on every pair, whichever cells run, so
	// that natprobe's IPv4 and IPv6 classification of every side is checked.
	predFor("ipv4")
	predFor("ipv6")
	var out []traversal_cell
	for _, mode := range pc.modes {
		family := "ipv4"
		if mode == traversal_modeV6 {
			family = "ipv6"
		}
		pr := predFor(family)
		cell := traversal_cell{A: pc.a.Key(), B: pc.b.Key(), Mode: mode, Predicted: string(pr.pred.Outcome), Certain: pr.pred.Certain,
			Expected: traversal_expect(mode, pr.pred.Prediction, pr.a, pr.b)}
		if !pr.pred.Certain {
			t.Errorf("%s: natprobe's prediction is not certain in the lab (a: %s, b: %s): %s", mode, pr.a.Verdict, pr.b.Verdict, pr.pred.Reason)
		}
		res, note := traversal_runCell(t, ctx, p, bins, mode)
		cell.Observed, cell.Note = traversal_observed(res), note
		if cell.Observed != "fail" {
			cell.Types = res[0].Local + "→" + res[0].Remote + " / " + res[1].Local + "→" + res[1].Remote
			cell.MS = max(res[0].MS, res[1].MS)
		}
		for i, r := range res {
			// A failed cell must be ICE failing, not the lab: both peers
			// joined, negotiated and ran connectivity checks.
			if !r.OK && (r.ICEState == "new" || strings.HasPrefix(r.Error, "hub:") || strings.HasPrefix(r.Error, "join:")) {
				t.Errorf("%s x %s, mode %s: side %s never got to ICE checks (state %s): %s", cell.A, cell.B, mode, natlab.Side(i), r.ICEState, r.Error)
			}
		}
		if cell.Observed != cell.Expected {
			t.Errorf("%s x %s, mode %s: natprobe predicts %q (so %s), observed %s (A %s->%s %s, B %s->%s %s) %s\nreason: %s",
				cell.A, cell.B, mode, pr.pred.Outcome, cell.Expected, cell.Observed,
				res[0].LocalAddr, res[0].RemoteAddr, res[0].Local, res[1].LocalAddr, res[1].RemoteAddr, res[1].Local, note, pr.pred.Reason)
		}
		out = append(out, cell)
	}
	return out
}

// traversal_doc renders docs/traversal.md from the measured cells.
func traversal_doc(cells []traversal_cell) string {
	var b strings.Builder
	b.WriteString(`# Traversal matrix: measured connectivity between pairs of lab NATs

Generated by ` + "`bench/traversal.sh`" + ` (TestTraversalMatrix with TRAVERSAL_FULL=1); do not edit by hand.

Two hosts, each behind its own router namespace (e2e/natlab.Pair), share one "internet" namespace with
turnd (STUN, RFC 5780, TURN on UDP/TCP 3478 and TLS 443) and the signaling hub. Per pair, natprobe runs
on both LANs and ` + "`natprobe predict`" + ` gives its verdict; then two pion peers (separate processes in the LAN
namespaces) join one room through the hub and open a data channel, 15 s at most per cell, in four modes:

* **STUN**: only the hub's ` + "`stun:`" + ` URL (turnd as STUN server);
* **STUN+TURN/UDP**: ` + "`stun:`" + ` and ` + "`turn:…?transport=udp`" + `;
* **TURN/TCP**: ` + "`turn:…?transport=tcp`" + ` and ` + "`turns:`" + ` on TCP 443 only (no STUN);
* **IPv6**: IPv6 only, STUN only; the routers do not translate IPv6, their firewalls filter as the
  case's IPv4 filtering (EIF, ADF, APDF; UDP blocked blocks IPv6 UDP too).

Each cell shows the path class observed (**direct**: host, server- or peer-reflexive candidates on both
sides; **relay**: a TURN relay candidate on either side; **fail**: no open data channel in 15 s), the
selected candidate pair as each side sees it (side A's local→remote candidate type / side B's), and
the time from sending "join" to the hub to the open data channel (the slower side). A side behind a
NAT usually sees its own candidate as ` + "`host`" + ` (the NAT translates it) and the other side's as
` + "`prflx` or `srflx`" + `. The test fails on any cell where the path differs from the one
natprobe's prediction implies for the mode:

| prediction | STUN | STUN+TURN/UDP | TURN/TCP |
|---|---|---|---|
| direct / direct via peer-reflexive | direct | direct | direct if one side has no NAT and no filter, else relay |
| relay needed | fail | relay | relay |
| a side is UDP-blocked | fail | fail | relay (or direct, as above, never with a UDP-blocked side) |

Cases (rows and columns): ` + "`nonat`" + ` no NAT; ` + "`eim-eif`" + ` full cone; ` + "`eim-adf`" + ` restricted cone;
` + "`eim-apdf`" + ` port-restricted cone; ` + "`adm-adf`" + ` address-dependent mapping and filtering; ` + "`apdm-apdf`" + `
symmetric; ` + "`blocked`" + ` a firewall that drops all UDP (TCP passes, NATed).

`)
	byPair := map[[2]string]map[string]traversal_cell{}
	var pairs [][2]string
	for _, c := range cells {
		k := [2]string{c.A, c.B}
		if byPair[k] == nil {
			byPair[k] = map[string]traversal_cell{}
			pairs = append(pairs, k)
		}
		byPair[k][c.Mode] = c
	}
	b.WriteString("| A | B | natprobe predict | STUN | STUN+TURN/UDP | TURN/TCP | IPv6 |\n|---|---|---|---|---|---|---|\n")
	fmtCell := func(c traversal_cell, ok bool) string {
		if !ok {
			return "-"
		}
		if c.Observed == "fail" {
			return "**fail**"
		}
		return fmt.Sprintf("**%s** %s, %.0f ms", c.Observed, c.Types, c.MS)
	}
	for _, k := range pairs {
		m := byPair[k]
		pred := ""
		for _, mode := range []string{traversal_modeSTUN, traversal_modeUDP, traversal_modeTCP} {
			if c, ok := m[mode]; ok {
				pred = c.Predicted
				break
			}
		}
		v6 := ""
		if c, ok := m[traversal_modeV6]; ok {
			v6 = fmtCell(c, true) + " (pred. " + traversal_short(c.Predicted) + ")"
		} else {
			v6 = "-"
		}
		c1, ok1 := m[traversal_modeSTUN]
		c2, ok2 := m[traversal_modeUDP]
		c3, ok3 := m[traversal_modeTCP]
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", k[0], k[1], pred, fmtCell(c1, ok1), fmtCell(c2, ok2), fmtCell(c3, ok3), v6)
	}
	agree := 0
	for _, c := range cells {
		if c.Observed == c.Expected {
			agree++
		}
	}
	fmt.Fprintf(&b, "\n%d cells, %d agree with the prediction.\n", len(cells), agree)
	byPath := map[string][]float64{}
	for _, c := range cells {
		if c.Observed != "fail" {
			byPath[c.Observed] = append(byPath[c.Observed], c.MS)
		}
	}
	b.WriteString("\n## Reading the times\n\n")
	for _, path := range []string{"direct", "relay"} {
		ms := byPath[path]
		if len(ms) == 0 {
			continue
		}
		sort.Float64s(ms)
		fmt.Fprintf(&b, "* **%s**: %d cells, median %.0f ms (%.0f to %.0f ms).\n", path, len(ms), ms[len(ms)/2], ms[0], ms[len(ms)-1])
	}
	b.WriteString(`
The times are dominated by pion's ICE nomination waits, not by the network (the lab adds no delay):
the controlling agent nominates a host pair at once, but waits 500 ms before accepting a
server-reflexive pair, 1 s for a peer-reflexive one and 2 s for a relay pair, in case a better pair
succeeds meanwhile. Hence about 0-50 ms where both sides have public host candidates, about 0.6-1.1 s for
hole punching, and about 2.0-2.4 s through the relay. Browsers nominate differently (see below).
`)
	return b.String()
}

func traversal_short(o string) string {
	switch o {
	case string(natclass.OutcomeDirect):
		return "direct"
	case string(natclass.OutcomePeerReflexive):
		return "prflx"
	}
	return "relay"
}
