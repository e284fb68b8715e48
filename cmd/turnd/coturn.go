package main

import (
	"errors"
	"flag"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/rtcsuite/rtcsuite/internal/conf"
)

// This file gives every coturn 4.6.1 option (testdata/coturn-options.txt:
// the long names of `turnserver -h` and of Debian's /etc/turnserver.conf)
// exactly one outcome when it appears in a config file turnd loads:
//
//   - implemented: it sets a turnd flag with coturn's meaning;
//   - accepted: turnd already behaves so, or the option has no meaning for
//     turnd; one warning line says so;
//   - refused: ignoring it would silently change security or behaviour,
//     so loading fails with a one-line reason.
//
// A security-relevant option is implemented or refused, never accepted.
// docs/turnd.md carries the same table (TestCoturnTableInDocs).

type outcome int

const (
	implemented outcome = iota + 1
	accepted
	refused
)

func (o outcome) String() string {
	switch o {
	case implemented:
		return "implemented"
	case accepted:
		return "accepted, warns"
	case refused:
		return "refused"
	}
	return "?"
}

// coturnOption is what one coturn option means for turnd.
type coturnOption struct {
	outcome outcome
	// flag is the turnd flag an implemented option sets; "" means the
	// flag of the same name, "-" none (the note says why).
	flag string
	// value is the flag value it sets; "" means the line's own value.
	value string
	// note says how (implemented), why it is harmless (accepted) or why
	// it is refused.
	note string
	// same, for a refused option, lists the values that are exactly
	// turnd's behaviour: those lines load without a word.
	same []string
	// bare is the value an implemented option takes when its line has none.
	bare string
	// also are further settings an implemented option makes.
	also []conf.Setting
}

// needsRelay marks refusals that a relay.Config field would lift.
const needsRelay = " (needs a relay change)"

var coturnOptions = map[string]coturnOption{
	// Listening and addresses.
	"listening-port":         {outcome: implemented, note: "UDP and TCP port"},
	"tls-listening-port":     {outcome: implemented, note: "TLS port (with cert and pkey)"},
	"listening-ip":           {outcome: implemented, note: "repeatable"},
	"alt-listening-port":     {outcome: implemented, note: "RFC 5780 second port (RFC 5780 itself is off unless --rfc5780)"},
	"external-ip":            {outcome: implemented, note: "PUBLIC or PUBLIC/PRIVATE, one per address family"},
	"relay-ip":               {outcome: implemented, note: "one per address family"},
	"aux-server":             {outcome: implemented, note: "extra UDP+TCP listener IP:PORT"},
	"min-port":               {outcome: implemented},
	"max-port":               {outcome: implemented},
	"no-udp":                 {outcome: implemented},
	"no-tcp":                 {outcome: implemented},
	"no-tls":                 {outcome: implemented},
	"relay-threads":          {outcome: implemented, flag: "udp-sockets", note: "SO_REUSEPORT sockets per UDP address (0 means one)"},
	"listening-device":       {outcome: refused, note: "SO_BINDTODEVICE is not supported; bind with listening-ip instead"},
	"relay-device":           {outcome: refused, note: "SO_BINDTODEVICE is not supported; bind relays with relay-ip instead"},
	"tcp-proxy-port":         {outcome: refused, note: "PROXY-protocol listeners are not supported"},
	"udp-self-balance":       {outcome: accepted, note: "the kernel spreads UDP clients over SO_REUSEPORT sockets already"},
	"alt-tls-listening-port": {outcome: accepted, note: "turnd answers RFC 5780 over UDP only; the TLS alternate port is never used"},
	"ne":                     {outcome: accepted, note: "coturn's network-engine choice has no meaning for turnd"},

	// Authentication.
	"realm":                    {outcome: implemented},
	"user":                     {outcome: implemented, note: "NAME:PASSWORD or NAME:0xKEY"},
	"userdb":                   {outcome: implemented, note: "coturn's SQLite database (turnadmin -b), read-only, re-read on SIGHUP"},
	"db":                       {outcome: implemented, flag: "userdb", note: "alias of userdb"},
	"static-auth-secret":       {outcome: implemented, note: "repeatable; every secret is accepted"},
	"use-auth-secret":          {outcome: implemented, note: "also accept REST secrets from the userdb's turn_secret table"},
	"lt-cred-mech":             {outcome: accepted, note: "turnd always uses long-term credentials"},
	"no-auth":                  {outcome: refused, note: "turnd never runs an open relay"},
	"oauth":                    {outcome: refused, note: "OAuth (RFC 7635) third-party authorization is not implemented"},
	"server-name":              {outcome: implemented, note: "the host name in the iceServers entry turnd prints (coturn uses it for OAuth only, which turnd refuses)"},
	"secure-stun":              {outcome: refused, note: "authenticated Binding requests are not implemented" + needsRelay},
	"rest-api-separator":       {outcome: refused, note: "the TURN REST username separator is always ':'", same: []string{":"}},
	"stale-nonce":              {outcome: implemented, bare: "600", note: "seconds (600 without a value), enforced to the minute (pion's nonce records its minute) between 60 and 3600; 0 means pion's hour, not unlimited"},
	"check-origin-consistency": {outcome: refused, note: "ORIGIN checks are not implemented" + needsRelay},
	"psql-userdb":              {outcome: refused, note: "PostgreSQL user databases are not supported; use userdb (SQLite) or user lines"},
	"sql-userdb":               {outcome: refused, note: "PostgreSQL user databases are not supported; use userdb (SQLite) or user lines"},
	"mysql-userdb":             {outcome: refused, note: "MySQL user databases are not supported; use userdb (SQLite) or user lines"},
	"mongo-userdb":             {outcome: refused, note: "MongoDB user databases are not supported; use userdb (SQLite) or user lines"},
	"redis-userdb":             {outcome: refused, note: "Redis user databases are not supported; use userdb (SQLite) or user lines"},
	"secret-key-file":          {outcome: accepted, note: "it decrypts MySQL passwords, and MySQL user databases are refused anyway"},
	"no-auth-pings":            {outcome: accepted, note: "turnd has no database health pings"},
	"no-dynamic-ip-list":       {outcome: implemented, note: "do not read allowed_peer_ip/denied_peer_ip rows from the userdb"},
	"no-dynamic-realms":        {outcome: implemented, note: "do not read turn_realm_option rows from the userdb"},

	// Peer policy and limits.
	"allowed-peer-ip":                   {outcome: implemented, note: "IP, CIDR or FROM-TO"},
	"denied-peer-ip":                    {outcome: implemented, note: "IP, CIDR or FROM-TO"},
	"allow-loopback-peers":              {outcome: implemented},
	"no-multicast-peers":                {outcome: accepted, note: "turnd never relays to multicast addresses"},
	"server-relay":                      {outcome: refused, note: "relaying to the server's own addresses is never allowed"},
	"user-quota":                        {outcome: implemented},
	"total-quota":                       {outcome: implemented},
	"max-bps":                           {outcome: implemented},
	"bps-capacity":                      {outcome: implemented, note: "bytes per second all allocations together relay, per direction; excess is dropped and counted (coturn instead shares the capacity out among sessions at allocation time)"},
	"max-allocate-lifetime":             {outcome: implemented, note: "seconds, up to 3600 (pion's maximum); longer requests get the maximum, and the default lifetime is capped to it"},
	"channel-lifetime":                  {outcome: implemented, note: "seconds; -1 or 0 means 600 (RFC 8656)"},
	"permission-lifetime":               {outcome: implemented, note: "seconds; 0 means 300 (RFC 8656)"},
	"max-allocate-timeout":              {outcome: accepted, note: "turnd keeps no half-made allocation; a TCP/TLS client must send its first frame within 10 s"},
	"no-udp-relay":                      {outcome: implemented, note: "Allocate for a UDP relay gets 442"},
	"no-tcp-relay":                      {outcome: implemented, note: "Allocate for an RFC 6062 TCP relay gets 442"},
	"allocation-default-address-family": {outcome: refused, note: "an Allocate without REQUESTED-ADDRESS-FAMILY always gets IPv4: pion takes the relay family from that attribute alone and checks peers against it, and turnd cannot add the attribute to a client's signed request (no room in the receive buffer)", same: []string{"ipv4"}},
	"keep-address-family":               {outcome: refused, note: "an Allocate without REQUESTED-ADDRESS-FAMILY always gets IPv4: pion takes the relay family from that attribute alone and checks peers against it, so the client connection's family cannot choose it"},
	"mobility":                          {outcome: refused, note: "RFC 8016 mobility is not implemented"},

	// STUN behaviour.
	"stun-only":                         {outcome: implemented, note: "TURN messages are ignored; only Binding is answered"},
	"no-stun":                           {outcome: implemented, note: "Binding requests are ignored (not with --rfc5780)"},
	"no-rfc5780":                        {outcome: implemented, flag: "rfc5780", value: "false", note: "RFC 5780 is off unless --rfc5780"},
	"no-stun-backward-compatibility":    {outcome: accepted, note: "turnd never answers RFC 3489 requests"},
	"response-origin-only-with-rfc5780": {outcome: accepted, note: "turnd sends RESPONSE-ORIGIN only with RFC 5780 on"},
	"no-software-attribute":             {outcome: accepted, note: "turnd sends no SOFTWARE attribute"},
	"fingerprint":                       {outcome: accepted, note: "FINGERPRINT is handled per RFC 8489 without a setting"},
	"alternate-server":                  {outcome: refused, note: "ALTERNATE-SERVER redirection is not implemented"},
	"tls-alternate-server":              {outcome: refused, note: "ALTERNATE-SERVER redirection is not implemented"},

	// TLS and DTLS.
	"cert":          {outcome: implemented, note: "PEM; reloaded on SIGHUP"},
	"pkey":          {outcome: implemented, note: "PEM; reloaded on SIGHUP"},
	"pkey-pwd":      {outcome: refused, note: "encrypted private keys are not supported; store the key unencrypted with group read for turnd"},
	"CA-file":       {outcome: implemented, flag: "ca-file", note: "TLS clients must present a certificate from these CAs (PEM)"},
	"cipher-list":   {outcome: implemented, note: "OpenSSL names mapped to Go's TLS 1.2 suites (TLS 1.3 suites are fixed); DEFAULT, HIGH, ALL keep Go's list; !/-/+ terms are ignored (Go offers no weak suite); unknown names warn and are skipped, as OpenSSL skips them; a list matching nothing is refused"},
	"ec-curve-name": {outcome: implemented, note: "prime256v1, secp384r1, secp521r1 or X25519: the only ECDH curve offered"},
	"dh-file":       {outcome: accepted, note: "Go's TLS has no finite-field DHE; only ECDHE is used"},
	"dh566":         {outcome: accepted, note: "Go's TLS has no finite-field DHE; only ECDHE is used"},
	"dh1066":        {outcome: accepted, note: "Go's TLS has no finite-field DHE; only ECDHE is used"},
	"no-tlsv1":      {outcome: accepted, note: "turnd never offers TLS 1.0"},
	"no-tlsv1_1":    {outcome: accepted, note: "turnd never offers TLS 1.1"},
	"no-tlsv1_2":    {outcome: implemented, note: "TLS 1.3 only"},
	"no-dtls":       {outcome: accepted, note: "turnd has no DTLS listener"},

	// Logging, process and operations.
	"log-file":                    {outcome: implemented, note: "exact path (coturn's simple-log naming), or stdout/stderr/syslog; reopened on SIGHUP"},
	"simple-log":                  {outcome: implemented, flag: "-", note: "turnd always writes the exact log-file path; rotate with logrotate and SIGHUP"},
	"no-stdout-log":               {outcome: implemented, note: "with log-file or syslog, do not also log to stderr"},
	"syslog":                      {outcome: implemented},
	"syslog-facility":             {outcome: implemented},
	"verbose":                     {outcome: implemented, flag: "log-level", value: "debug"},
	"Verbose":                     {outcome: implemented, flag: "log-level", value: "debug"},
	"log-binding":                 {outcome: accepted, note: "turnd never logs Binding requests"},
	"new-log-timestamp":           {outcome: accepted, note: "every turnd log line carries an RFC 3339 timestamp"},
	"new-log-timestamp-format":    {outcome: accepted, note: "every turnd log line carries an RFC 3339 timestamp"},
	"pidfile":                     {outcome: implemented},
	"prometheus":                  {outcome: implemented, flag: "admin-listen", value: "127.0.0.1:9641", also: []conf.Setting{{Name: "metrics-names", Value: "coturn"}}, note: "metrics on 127.0.0.1:9641 (coturn's exporter port, loopback) unless admin-listen is set, with coturn's metric names too (`--metrics-names coturn`)"},
	"version":                     {outcome: implemented, note: "print the version and exit"},
	"daemon":                      {outcome: refused, note: "turnd runs in the foreground; run it under systemd (deploy/turnd.service)"},
	"proc-user":                   {outcome: refused, note: "turnd does not switch users; start it as the service user (deploy/turnd.service)"},
	"proc-group":                  {outcome: refused, note: "turnd does not switch groups; start it with the service group (deploy/turnd.service)"},
	"redis-statsdb":               {outcome: refused, note: "statistics in Redis are not implemented; scrape /metrics"},
	"acme-redirect":               {outcome: refused, note: "ACME redirection is not implemented; renew with certbot (deploy/turnd-certbot-hook)"},
	"no-cli":                      {outcome: accepted, note: "turnd has no telnet CLI"},
	"cli-ip":                      {outcome: accepted, note: "turnd has no telnet CLI"},
	"cli-port":                    {outcome: accepted, note: "turnd has no telnet CLI"},
	"cli-password":                {outcome: accepted, note: "turnd has no telnet CLI"},
	"cli-max-output-sessions":     {outcome: accepted, note: "turnd has no telnet CLI"},
	"web-admin":                   {outcome: refused, note: "the web admin is not implemented; use /metrics, /healthz and /readyz"},
	"web-admin-ip":                {outcome: accepted, note: "turnd has no web admin (web-admin itself is refused)"},
	"web-admin-port":              {outcome: accepted, note: "turnd has no web admin (web-admin itself is refused)"},
	"web-admin-listen-on-workers": {outcome: accepted, note: "turnd has no web admin (web-admin itself is refused)"},
}

// errRefused marks a refused coturn option.
var errRefused = errors.New("refused")

// coturnTranslator reads coturn option lines for conf.LoadWith. Accepted
// options add one warning each to *warnings (once per name).
func coturnTranslator(fs *flag.FlagSet, warnings *[]string) conf.Translator {
	var mu sync.Mutex
	seen := map[string]bool{}
	return func(name, value string, hasValue bool) ([]conf.Setting, bool, error) {
		opt, ok := coturnOptions[name]
		if !ok {
			return nil, false, nil
		}
		switch opt.outcome {
		case accepted:
			mu.Lock()
			if !seen[name] {
				seen[name] = true
				*warnings = append(*warnings, fmt.Sprintf("coturn option %q ignored: %s", name, opt.note))
			}
			mu.Unlock()
			return nil, true, nil
		case refused:
			for _, v := range opt.same {
				if hasValue && value == v {
					return nil, true, nil
				}
			}
			return nil, true, fmt.Errorf("%w: %s", errRefused, opt.note)
		}
		target := opt.flag
		switch target {
		case "-":
			return nil, true, nil
		case "":
			target = name
		}
		v := value
		if !hasValue && opt.bare != "" {
			v, hasValue = opt.bare, true
		}
		if opt.value != "" {
			if hasValue {
				on, err := coturnBool(value)
				if err != nil {
					return nil, true, err
				}
				if !on {
					return nil, true, nil // "verbose=off": nothing to do
				}
			}
			v = opt.value
		} else if isBoolFlag(fs, target) {
			on := true
			if hasValue {
				var err error
				if on, err = coturnBool(value); err != nil {
					return nil, true, err
				}
			}
			v = fmt.Sprint(on)
		} else if !hasValue {
			return nil, true, errors.New("needs a value")
		}
		if name == "relay-threads" && v == "0" {
			v = "1" // coturn: 0 means one thread for everything
		}
		return append([]conf.Setting{{Name: target, Value: v}}, opt.also...), true, nil
	}
}

// coturnBool reads a coturn boolean: 1/on/yes/true/t or 0/off/no/false/f.
func coturnBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "1", "on", "yes", "true", "t", "y":
		return true, nil
	case "0", "off", "no", "false", "f", "n":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (yes/no, on/off, 1/0, true/false)", v)
}

func isBoolFlag(fs *flag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// loadOptions parses args, environment and the config file (turnd and
// coturn names) into fs, returning the warnings for accepted coturn options.
func loadOptions(fs *flag.FlagSet, args []string, getenv func(string) string) ([]string, error) {
	var warnings []string
	_, err := conf.LoadWith(fs, args, getenv, envPrefix, "config", coturnTranslator(fs, &warnings))
	return warnings, err
}

// coturnTable renders the option table for docs/turnd.md.
func coturnTable() string {
	names := make([]string, 0, len(coturnOptions))
	for n := range coturnOptions {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := strings.ToLower(names[i]), strings.ToLower(names[j])
		if a == b {
			return names[i] < names[j]
		}
		return a < b
	})
	var b strings.Builder
	b.WriteString("| coturn option | outcome | in turnd |\n|---|---|---|\n")
	for _, n := range names {
		o := coturnOptions[n]
		how := o.note
		if o.outcome == implemented {
			switch {
			case o.flag == "-":
			case o.flag != "" && o.value != "":
				how = strings.TrimPrefix(fmt.Sprintf("`--%s %s`; %s", o.flag, o.value, how), "; ")
			case o.flag != "":
				how = fmt.Sprintf("`--%s`; %s", o.flag, how)
			default:
				how = fmt.Sprintf("`--%s`; %s", n, how)
			}
			how = strings.TrimSuffix(how, "; ")
		}
		if len(o.same) > 0 {
			how += fmt.Sprintf("; `%s=%s` loads (that is turnd's behaviour)", n, strings.Join(o.same, "` or `"+n+"="))
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", n, o.outcome, how)
	}
	return b.String()
}

// coturnCounts counts the options per outcome.
func coturnCounts() map[outcome]int {
	c := map[outcome]int{}
	for _, o := range coturnOptions {
		c[o.outcome]++
	}
	return c
}
