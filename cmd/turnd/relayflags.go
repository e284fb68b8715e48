package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rtcsuite/rtcsuite/relay"
)

// relayExtOptions are the coturn drop-in settings the relay honours:
// metric names, relay transports, STUN/TURN modes, lifetimes and TLS.
type relayExtOptions struct {
	metricNames            string
	noUDPRelay, noTCPRelay bool
	stunOnly, noSTUN       bool
	staleNonce             seconds
	channelLifetime        seconds
	permissionLifetime     seconds
	maxAllocLifetime       seconds
	bpsCapacity            int64
	noTLS12                bool
	cipherList             string
	ecCurve                string
	caFile                 string
	offload                string
}

func addRelayExtFlags(fs *flag.FlagSet, r *relayExtOptions) {
	fs.StringVar(&r.metricNames, "metrics-names", "turnd", "metric names on /metrics: turnd, or coturn to add coturn 4.6.1's names (turn_total_allocations, turn_traffic_*) for existing coturn dashboards")
	fs.BoolVar(&r.noUDPRelay, "no-udp-relay", false, "refuse UDP relay allocations (442)")
	fs.BoolVar(&r.noTCPRelay, "no-tcp-relay", false, "refuse RFC 6062 TCP relay allocations (442)")
	fs.BoolVar(&r.stunOnly, "stun-only", false, "answer STUN Binding only; ignore every TURN message")
	fs.BoolVar(&r.noSTUN, "no-stun", false, "ignore STUN Binding requests; serve TURN only")
	fs.Var(&r.staleNonce, "stale-nonce", "nonce lifetime, seconds or a duration, whole minutes from 60 s to 1 h (0 = pion's hour)")
	fs.Var(&r.channelLifetime, "channel-lifetime", "channel binding lifetime without refresh, seconds or a duration (0 = 10m, RFC 8656)")
	fs.Var(&r.permissionLifetime, "permission-lifetime", "permission lifetime without refresh, seconds or a duration (0 = 5m, RFC 8656)")
	fs.Var(&r.maxAllocLifetime, "max-allocate-lifetime", "longest allocation lifetime a client may ask for, seconds or a duration, up to 1h (0 = 1h)")
	fs.Int64Var(&r.bpsCapacity, "bps-capacity", 0, "bytes per second all allocations together relay, per direction (0 = unlimited)")
	fs.BoolVar(&r.noTLS12, "no-tlsv1_2", false, "TLS listeners accept TLS 1.3 only")
	fs.StringVar(&r.cipherList, "cipher-list", "", "TLS 1.2 cipher suites, OpenSSL names separated by ':' (empty = Go's list)")
	fs.StringVar(&r.ecCurve, "ec-curve-name", "", "the one ECDH curve TLS offers: prime256v1, secp384r1, secp521r1 or X25519 (empty = Go's choice)")
	fs.StringVar(&r.caFile, "ca-file", "", "PEM CA certificates; TLS clients must present a certificate they signed")
	fs.StringVar(&r.offload, "offload", string(relay.OffloadAuto), "eBPF kernel path for UDP channels: auto (use it when it loads and passes its self-test, else log one line and relay in user space), tc (required: failing to start is an error) or off; re-read on SIGHUP. Linux only: elsewhere auto relays in user space and tc is an error")
}

// apply copies the settings into cfg, reading the CA file. It returns
// warnings to log; relay.Config's validation reports bad values it does
// not check itself.
func (r *relayExtOptions) apply(cfg *relay.Config, add func(error)) (warnings []string) {
	cfg.MetricNames = relay.MetricNames(r.metricNames)
	cfg.NoUDPRelay, cfg.NoTCPRelay = r.noUDPRelay, r.noTCPRelay
	cfg.STUNOnly, cfg.NoSTUN = r.stunOnly, r.noSTUN
	cfg.StaleNonce = time.Duration(r.staleNonce)
	cfg.ChannelLifetime = time.Duration(r.channelLifetime)
	cfg.PermissionLifetime = time.Duration(r.permissionLifetime)
	cfg.MaxAllocationLifetime = time.Duration(r.maxAllocLifetime)
	cfg.BPSCapacity = r.bpsCapacity
	cfg.Offload = relay.OffloadMode(r.offload)
	if r.noTLS12 {
		cfg.TLSMinVersion = tls.VersionTLS13
	}
	if r.cipherList != "" {
		suites, unknown, err := parseCipherList(r.cipherList)
		if err != nil {
			add(err)
		}
		cfg.TLSCipherSuites = suites
		for _, u := range unknown {
			warnings = append(warnings, fmt.Sprintf("cipher-list: %q names no TLS 1.2 suite Go offers; skipped (as OpenSSL skips it)", u))
		}
	}
	if r.ecCurve != "" {
		id, ok := ecCurves[strings.ToLower(r.ecCurve)]
		if !ok {
			add(fmt.Errorf("ec-curve-name %q: want prime256v1, secp384r1, secp521r1 or X25519", r.ecCurve))
		}
		cfg.TLSCurves = []tls.CurveID{id}
	}
	if r.caFile != "" {
		pem, err := os.ReadFile(r.caFile)
		pool := x509.NewCertPool()
		switch {
		case err != nil:
			add(fmt.Errorf("ca-file: %w", err))
		case !pool.AppendCertsFromPEM(pem):
			add(fmt.Errorf("ca-file %s: no PEM certificate in it", r.caFile))
		default:
			cfg.TLSClientCAs = pool
		}
	}
	return warnings
}

var ecCurves = map[string]tls.CurveID{
	"prime256v1": tls.CurveP256, "secp256r1": tls.CurveP256, "p-256": tls.CurveP256,
	"secp384r1": tls.CurveP384, "p-384": tls.CurveP384,
	"secp521r1": tls.CurveP521, "p-521": tls.CurveP521,
	"x25519": tls.X25519,
}

// openSSLSuites maps OpenSSL cipher names to the Go TLS 1.2 suites Go
// offers as secure.
var openSSLSuites = map[string]uint16{
	"ECDHE-ECDSA-AES128-GCM-SHA256": tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-RSA-AES128-GCM-SHA256":   tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-ECDSA-AES256-GCM-SHA384": tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-RSA-AES256-GCM-SHA384":   tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-ECDSA-CHACHA20-POLY1305": tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-RSA-CHACHA20-POLY1305":   tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-ECDSA-AES128-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	"ECDHE-RSA-AES128-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	"ECDHE-ECDSA-AES256-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	"ECDHE-RSA-AES256-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
}

// cipherKeywords keep Go's own suite list (it holds no weak suite).
var cipherKeywords = map[string]bool{"DEFAULT": true, "HIGH": true, "ALL": true}

// parseCipherList reads an OpenSSL cipher string the way coturn hands it
// to SSL_CTX_set_cipher_list: names that match nothing are skipped, and
// only a list that matches nothing at all is an error. A keyword (DEFAULT,
// HIGH, ALL) yields nil: Go's list. Exclusions and ordering terms (!, -,
// +, @) are ignored: Go's list never holds the weak suites they remove.
func parseCipherList(s string) (suites []uint16, unknown []string, err error) {
	keyword := false
	for _, tok := range strings.FieldsFunc(strings.Trim(s, `"`), func(r rune) bool { return r == ':' || r == ',' || r == ' ' }) {
		switch {
		case strings.ContainsAny(tok[:1], "!-+@"):
		case cipherKeywords[strings.ToUpper(tok)]:
			keyword = true
		default:
			if id, ok := openSSLSuites[strings.ToUpper(tok)]; ok {
				suites = append(suites, id)
			} else {
				unknown = append(unknown, tok)
			}
		}
	}
	if keyword {
		return nil, unknown, nil
	}
	if len(suites) == 0 {
		return nil, unknown, errors.New("cipher-list matches no TLS 1.2 suite Go offers (names such as ECDHE-RSA-AES128-GCM-SHA256, or DEFAULT)")
	}
	return suites, unknown, nil
}

// seconds is a duration flag that also takes coturn's plain seconds; a
// negative number (coturn's -1) means the default.
type seconds time.Duration

func (s *seconds) String() string { return time.Duration(*s).String() }

func (s *seconds) Set(v string) error {
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			n = 0
		}
		*s = seconds(time.Duration(n) * time.Second)
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return fmt.Errorf("%q is neither seconds nor a duration", v)
	}
	*s = seconds(d)
	return nil
}
