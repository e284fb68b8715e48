package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"math/big"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/testenv"
)

// coturnNames reads testdata/coturn-options.txt.
func coturnNames(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("testdata/coturn-options.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && l[0] != '#' {
			names = append(names, l)
		}
	}
	return names
}

func TestCoturnEveryOptionHasOneOutcome(t *testing.T) {
	names := coturnNames(t)
	if len(names) < 100 {
		t.Fatalf("only %d names in testdata/coturn-options.txt", len(names))
	}
	listed := map[string]bool{}
	var o options
	fs := newFlagSet(&o)
	for _, n := range names {
		if listed[n] {
			t.Errorf("%s listed twice", n)
		}
		listed[n] = true
		opt, ok := coturnOptions[n]
		if !ok {
			t.Errorf("coturn option %q has no outcome", n)
			continue
		}
		switch opt.outcome {
		case implemented:
			target := opt.flag
			if target == "" {
				target = n
			}
			if target != "-" && fs.Lookup(target) == nil {
				t.Errorf("%s: implemented by --%s, which turnd does not have", n, target)
			}
		case accepted, refused:
			if opt.note == "" {
				t.Errorf("%s: %s without a reason", n, opt.outcome)
			}
		default:
			t.Errorf("%s: no outcome", n)
		}
	}
	for n := range coturnOptions {
		if !listed[n] {
			t.Errorf("%q has an outcome but is not a coturn option in testdata/coturn-options.txt", n)
		}
	}
	c := coturnCounts()
	t.Logf("%d options: %d implemented, %d accepted with a warning, %d refused", len(names), c[implemented], c[accepted], c[refused])
}

// TestCoturnOptionListIsCurrent rebuilds the list from the installed coturn.
func TestCoturnOptionListIsCurrent(t *testing.T) {
	ts := testenv.NeedCommand(t, "turnserver", "coturn")
	out, _ := exec.Command(ts, "-h").CombinedOutput() // exits non-zero after printing help
	got := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, " -") {
			continue
		}
		head, _, _ := strings.Cut(line, "\t")
		head, _, _ = strings.Cut(head, "<")
		head, _, _ = strings.Cut(head, "=")
		head, _, _ = strings.Cut(head, "[")
		for _, f := range strings.Fields(strings.ReplaceAll(head, ",", " ")) {
			if n, ok := strings.CutPrefix(f, "--"); ok && n != "" {
				got[n] = true
			}
		}
	}
	if conf, err := os.ReadFile("/etc/turnserver.conf"); err == nil {
		for _, line := range strings.Split(string(conf), "\n") {
			l := strings.TrimPrefix(line, "#")
			name, _, _ := strings.Cut(l, "=")
			if strings.Contains(name, " ") {
				if n, rest, _ := strings.Cut(l, " "); len(strings.Fields(rest)) <= 1 {
					name = n
				}
			}
			if isOptionName(name) && (l == name || strings.HasPrefix(l, name+"=") || strings.HasPrefix(l, name+" ")) {
				got[name] = true
			}
		}
	}
	want := map[string]bool{}
	for _, n := range coturnNames(t) {
		want[n] = true
	}
	var missing []string
	for n := range got {
		if !want[n] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("installed coturn knows options missing from testdata/coturn-options.txt: %v", missing)
	}
	if len(got) < 100 {
		t.Errorf("parsed only %d names from turnserver -h and /etc/turnserver.conf", len(got))
	}
}

func isOptionName(s string) bool {
	if s == "" || s[0] == '-' || s[0] == '_' || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, c := range s {
		if c != '_' && !isNameChar(c) {
			return false
		}
	}
	return true
}

func TestCoturnTableInDocs(t *testing.T) {
	doc, err := os.ReadFile("../../docs/turnd.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- coturn-options: begin -->\n", "<!-- coturn-options: end -->"
	_, rest, ok1 := strings.Cut(string(doc), begin)
	table, _, ok2 := strings.Cut(rest, end)
	if !ok1 || !ok2 {
		t.Fatalf("docs/turnd.md lacks the %q ... %q markers", begin, end)
	}
	if want := coturnTable(); table != want {
		if os.Getenv("UPDATE_DOCS") == "1" {
			updated := strings.Replace(string(doc), begin+table+end, begin+want+end, 1)
			if err := os.WriteFile("../../docs/turnd.md", []byte(updated), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("docs/turnd.md's coturn option table is stale; rerun with UPDATE_DOCS=1")
	}
}

// writeTestCert writes a self-signed certificate and key into dir.
func writeTestCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "turn.example.org"},
		DNSNames: []string{"turn.example.org"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// loadCoturn loads a config file plus args and returns the options, the
// relay config and the warnings.
func loadCoturn(t *testing.T, file string, args ...string) (options, loaded, []string, error) {
	t.Helper()
	var o options
	fs := newFlagSet(&o)
	warnings, err := loadOptions(fs, append([]string{"-c", file}, args...), func(string) string { return "" })
	if err != nil {
		return o, loaded{}, warnings, err
	}
	l, err := o.build(discard{})
	return o, l, append(warnings, l.warnings...), errors.Join(err, l.relay.Validate())
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestCoturnDebianStockConfigLoads(t *testing.T) {
	// Debian's file configures no authentication; coturn would then run an
	// open relay, turnd refuses to. With a secret it loads.
	_, _, _, err := loadCoturn(t, "testdata/debian-turnserver.conf")
	if err == nil || !strings.Contains(err.Error(), "no authentication") {
		t.Fatalf("stock file without credentials: %v, want only the no-authentication refusal", err)
	}
	if strings.Count(err.Error(), "\n") > 0 {
		t.Fatalf("stock file: more than one problem:\n%v", err)
	}
	o, l, warnings, err := loadCoturn(t, "testdata/debian-turnserver.conf", "--static-auth-secret", "f3b8e2c7a9d14e6b8c0a5f2e7d9b1c4a")
	if err != nil {
		t.Fatalf("Debian's /etc/turnserver.conf: %v", err)
	}
	if !o.ext.syslog || o.rfc5780 || l.relay.RFC5780 != nil {
		t.Errorf("syslog=%v rfc5780=%v: want syslog on, RFC 5780 off", o.ext.syslog, o.rfc5780)
	}
	want := []string{`"no-stun-backward-compatibility" ignored`, `"response-origin-only-with-rfc5780" ignored`}
	if len(warnings) != len(want) {
		t.Errorf("warnings %q, want %d", warnings, len(want))
	}
	for i, w := range want {
		if i < len(warnings) && !strings.Contains(warnings[i], w) {
			t.Errorf("warning %d = %q, want %q", i, warnings[i], w)
		}
	}
}

func TestCoturnProductionConfigLoads(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeTestCert(t, dir)
	raw, err := os.ReadFile("testdata/production-turnserver.conf")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer(
		"/etc/letsencrypt/live/turn.example.org/fullchain.pem", cert,
		"/etc/letsencrypt/live/turn.example.org/privkey.pem", key,
		"/var/log/turnserver/turn.log", filepath.Join(dir, "turn.log"),
		"/var/run/turnserver.pid", filepath.Join(dir, "turnserver.pid"),
	).Replace(string(raw))
	path := filepath.Join(dir, "turnserver.conf")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	o, l, warnings, err := loadCoturn(t, path)
	if err != nil {
		t.Fatalf("production config: %v", err)
	}
	c := l.relay
	checks := []struct {
		what string
		ok   bool
	}{
		{"realm", c.Realm == "turn.example.org"},
		{"ports", c.MinPort == 49160 && c.MaxPort == 49200},
		{"quotas", c.TotalQuota == 100 && c.UserQuota == 12 && c.MaxBPS == 3000000},
		{"secret with inline comment stripped", len(c.Secrets) == 1 && string(c.Secrets[0]) == "9e1f0c4b7a2d8e6f3c5b1a0d9e8f7c6b"},
		{"external ip", c.ExternalIPv4 == netip.MustParseAddr("203.0.113.10")},
		{"certificate", c.Certificate != nil},
		{"verbose is debug", o.logLevel == "debug"},
		{"prometheus on loopback 9641", l.admin == "127.0.0.1:9641"},
		{"log file", o.ext.logFile == filepath.Join(dir, "turn.log") && o.ext.noStdoutLog},
		{"pidfile with quotes", o.ext.pidFile == filepath.Join(dir, "turnserver.pid")},
		{"server-name", o.ext.serverName == "turn.example.org"},
		{"use-auth-secret", o.ext.useAuthSecret},
		{"denied peers", len(c.Peers.Denied) >= 20},
		{"allowed peer", len(c.Peers.Allowed) == 1},
		{"listeners udp+tcp+tls", len(c.Listeners) == 3},
	}
	for _, ck := range checks {
		if !ck.ok {
			t.Errorf("%s: not as configured (%+v)", ck.what, c)
		}
	}
	for _, name := range []string{"fingerprint", "lt-cred-mech", "no-tlsv1", "no-tlsv1_1", "no-multicast-peers", "no-cli", "no-software-attribute"} {
		n := 0
		for _, w := range warnings {
			if strings.Contains(w, `"`+name+`"`) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: %d warning lines, want exactly 1 (%q)", name, n, warnings)
		}
	}
}

// TestCoturnProductionRelayLines: the three lines production configs often
// carry that turnd once refused now load with coturn's meaning: a 600 s
// nonce, no TCP relays, and an OpenSSL cipher list (whose name that is no
// real suite is skipped with a warning, as OpenSSL skips it).
func TestCoturnProductionRelayLines(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeTestCert(t, dir)
	raw, err := os.ReadFile("testdata/production-turnserver.conf")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer(
		"/etc/letsencrypt/live/turn.example.org/fullchain.pem", cert,
		"/etc/letsencrypt/live/turn.example.org/privkey.pem", key,
		"/var/log/turnserver/turn.log", filepath.Join(dir, "turn.log"),
		"/var/run/turnserver.pid", filepath.Join(dir, "turnserver.pid"),
	).Replace(string(raw))
	extra := "stale-nonce=600\nno-tcp-relay\ncipher-list=\"ECDHE-RSA-AES256-GCM-SHA512:ECDHE-RSA-AES128-GCM-SHA256\"\n"
	path := filepath.Join(dir, "turnserver.conf")
	if err := os.WriteFile(path, []byte(text+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	_, l, warnings, err := loadCoturn(t, path)
	if err != nil {
		t.Fatalf("production config with the relay lines: %v", err)
	}
	c := l.relay
	if c.StaleNonce != 10*time.Minute || !c.NoTCPRelay || c.NoUDPRelay {
		t.Errorf("stale-nonce %v, no-tcp-relay %v, no-udp-relay %v", c.StaleNonce, c.NoTCPRelay, c.NoUDPRelay)
	}
	if len(c.TLSCipherSuites) != 1 || c.TLSCipherSuites[0] != tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 {
		t.Errorf("cipher suites %v, want only ECDHE-RSA-AES128-GCM-SHA256", c.TLSCipherSuites)
	}
	n := 0
	for _, w := range warnings {
		if strings.Contains(w, "ECDHE-RSA-AES256-GCM-SHA512") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("want one warning for the unknown cipher name, got %q", warnings)
	}
}

// TestCoturnImplemented checks option lines against the turnd settings they
// must produce.
func TestCoturnImplemented(t *testing.T) {
	for _, tc := range []struct {
		lines string
		args  []string
		check func(o options, l loaded) bool
	}{
		{"verbose\n", nil, func(o options, _ loaded) bool { return o.logLevel == "debug" }},
		{"Verbose\n", nil, func(o options, _ loaded) bool { return o.logLevel == "debug" }},
		{"verbose=off\n", nil, func(o options, _ loaded) bool { return o.logLevel == "info" }},
		{"log-level=warn\nverbose\n", nil, func(o options, _ loaded) bool { return o.logLevel == "warn" }},
		{"prometheus\n", nil, func(_ options, l loaded) bool { return l.admin == "127.0.0.1:9641" }},
		{"prometheus\nadmin-listen=127.0.0.1:9100\n", nil, func(_ options, l loaded) bool { return l.admin == "127.0.0.1:9100" }},
		{"prometheus\n", []string{"--admin-listen", "[::1]:9200"}, func(_ options, l loaded) bool { return l.admin == "[::1]:9200" }},
		{"", nil, func(_ options, l loaded) bool { return l.admin == "127.0.0.1:9643" }},
		{"relay-threads=4\n", nil, func(_ options, l loaded) bool { return l.relay.UDPSockets == 4 }},
		{"relay-threads=0\n", nil, func(_ options, l loaded) bool { return l.relay.UDPSockets == 1 }},
		{"no-udp=yes\nno-tcp=off\n", nil, func(o options, _ loaded) bool { return o.noUDP && !o.noTCP }},
		{"no-rfc5780\n", []string{"--rfc5780", "--alt-listening-ip", "127.0.0.2", "--listening-ip", "127.0.0.1"}, func(o options, _ loaded) bool { return o.rfc5780 }},
		{"realm=example.org   # the realm\n", nil, func(_ options, l loaded) bool { return l.relay.Realm == "example.org" }},
		{"realm \"quoted.example\"\n", nil, func(_ options, l loaded) bool { return l.relay.Realm == "quoted.example" }},
		{"--min-port=50000\n", nil, func(_ options, l loaded) bool { return l.relay.MinPort == 50000 }},
		{"db=testdata/coturn-userdb.sqlite\nrealm=example.com\n", nil, func(_ options, l loaded) bool { return len(l.relay.Users) == 2 }},
		{"aux-server=127.0.0.1:3500\n", nil, func(_ options, l loaded) bool {
			n := 0
			for _, ln := range l.relay.Listeners {
				if ln.Addr == "127.0.0.1:3500" {
					n++
				}
			}
			return n == 2
		}},
		{"stale-nonce=3600\nbps-capacity=0\nrest-api-separator=:\n", nil, func(options, loaded) bool { return true }},
		{"server-name=turn.example.net\n", nil, func(o options, _ loaded) bool { return o.ext.serverName == "turn.example.net" }},
	} {
		path := filepath.Join(t.TempDir(), "turnserver.conf")
		if err := os.WriteFile(path, []byte(tc.lines+"user=probe:probe-password-123\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		o, l, _, err := loadCoturn(t, path, tc.args...)
		if err != nil {
			t.Errorf("%q: %v", tc.lines, err)
			continue
		}
		if !tc.check(o, l) {
			t.Errorf("%q %q: wrong result: %+v", tc.lines, tc.args, o)
		}
	}
}

func TestCoturnRefused(t *testing.T) {
	for name, opt := range coturnOptions {
		if opt.outcome != refused {
			continue
		}
		for _, line := range []string{name, name + "=1234"} {
			path := filepath.Join(t.TempDir(), "turnserver.conf")
			if err := os.WriteFile(path, []byte("user=probe:probe-password-123\n"+line+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, _, err := loadCoturn(t, path)
			if !errors.Is(err, errRefused) {
				t.Errorf("%q: err %v, want a refusal", line, err)
				continue
			}
			msg := err.Error()
			if !strings.Contains(msg, path+":2: "+name+": refused: "+opt.note) || strings.Count(msg, "\n") != 0 {
				t.Errorf("%q: refusal %q is not one line naming file, line, option and reason", line, msg)
			}
		}
	}
	// The three examples the issue names.
	for _, n := range []string{"no-dtls", "oauth", "alternate-server"} {
		if n == "no-dtls" {
			if coturnOptions[n].outcome != accepted {
				t.Errorf("no-dtls disables what turnd does not have: want accepted")
			}
			continue
		}
		if coturnOptions[n].outcome != refused {
			t.Errorf("%s must be refused", n)
		}
	}
	// A refused line's value is never echoed (cli-password is accepted,
	// but a refused pkey-pwd must not show the password).
	path := filepath.Join(t.TempDir(), "turnserver.conf")
	if err := os.WriteFile(path, []byte("user=probe:probe-password-123\npkey-pwd=hunter2-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := loadCoturn(t, path); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("pkey-pwd: %v", err)
	}
}

func TestCoturnAcceptedWarnsOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "turnserver.conf")
	lines := "fingerprint\nlt-cred-mech\nfingerprint\nno-cli\ncli-password=qwerty\n"
	if err := os.WriteFile(path, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startTurndRun(t, "-c", path, "--user", "alice:wonderland-123456")
	log := r.stderr.String()
	for _, name := range []string{"fingerprint", "lt-cred-mech", "no-cli", "cli-password"} {
		if n := strings.Count(log, `coturn option \"`+name+`\" ignored`); n != 1 {
			t.Errorf("%s: %d warning lines, want 1:\n%s", name, n, log)
		}
	}
	if strings.Contains(log, "qwerty") {
		t.Error("an ignored option's value reached the log")
	}
	if err := r.allocate(t, "alice", "wonderland-123456"); err != nil {
		t.Errorf("allocate: %v", err)
	}
}

func TestCoturnBoolValues(t *testing.T) {
	for _, v := range []string{"yes", "on", "1", "true", "t"} {
		if b, err := coturnBool(v); err != nil || !b {
			t.Errorf("%q: %v %v", v, b, err)
		}
	}
	for _, v := range []string{"no", "off", "0", "false", "f"} {
		if b, err := coturnBool(v); err != nil || b {
			t.Errorf("%q: %v %v", v, b, err)
		}
	}
	if _, err := coturnBool("maybe"); err == nil {
		t.Error("maybe is a boolean")
	}
	var o options
	fs := newFlagSet(&o)
	tr := coturnTranslator(fs, new([]string))
	if _, _, err := tr("no-udp", "maybe", true); err == nil {
		t.Error("no-udp=maybe accepted")
	}
	if _, handled, _ := tr("admin-listen", "x", true); handled {
		t.Error("a turnd-only name was taken by the coturn table")
	}
	_ = flag.ErrHelp
}

// FuzzCoturnTranslator: any line yields settings for flags turnd has, a
// refusal, or nothing; never a panic.
func FuzzCoturnTranslator(f *testing.F) {
	f.Add("verbose", "", false)
	f.Add("no-udp", "maybe", true)
	f.Add("stale-nonce", "600", true)
	f.Add("prometheus", "off", true)
	var o options
	fs := newFlagSet(&o)
	tr := coturnTranslator(fs, new([]string))
	f.Fuzz(func(t *testing.T, name, value string, hasValue bool) {
		settings, handled, err := tr(name, value, hasValue)
		if !handled && (err != nil || len(settings) > 0) {
			t.Fatalf("unhandled %q gave %v %v", name, settings, err)
		}
		for _, s := range settings {
			if fs.Lookup(s.Name) == nil {
				t.Fatalf("%q set unknown flag %q", name, s.Name)
			}
		}
	})
}
