package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/rtcsuite/rtcsuite/internal/conf"
	"github.com/rtcsuite/rtcsuite/relay"
)

// extOptions are the settings added for coturn drop-in use: log
// destinations, the pid file, the userdb's extra tables and --version.
type extOptions struct {
	version        bool
	auxServers     conf.Strings
	useAuthSecret  bool
	noDynamicIPs   bool
	noDynamicRealm bool
	logFile        string
	noStdoutLog    bool
	syslog         bool
	syslogFacility string
	pidFile        string
	serverName     string
}

func addExtFlags(fs *flag.FlagSet, o *options) {
	e := &o.ext
	fs.StringVar(&o.configFile, "c", "", "same as --config (coturn's turnserver -c)")
	fs.BoolVar(&e.version, "version", false, "print the version and VCS revision, then exit")
	fs.Var(&e.auxServers, "aux-server", "extra UDP and TCP listener IP:PORT (repeatable; coturn aux-server)")
	fs.BoolVar(&e.useAuthSecret, "use-auth-secret", false, "also accept TURN REST secrets from the SQLite userdb's turn_secret table (coturn use-auth-secret)")
	fs.BoolVar(&e.noDynamicIPs, "no-dynamic-ip-list", false, "ignore the SQLite userdb's allowed_peer_ip and denied_peer_ip tables")
	fs.BoolVar(&e.noDynamicRealm, "no-dynamic-realms", false, "ignore the SQLite userdb's turn_realm_option table")
	fs.StringVar(&e.logFile, "log-file", "", "also log to this file (exact path; reopened on SIGHUP for logrotate), or stdout, stderr, syslog")
	fs.BoolVar(&e.noStdoutLog, "no-stdout-log", false, "with --log-file or --syslog, do not also log to stderr")
	fs.BoolVar(&e.syslog, "syslog", false, "also log to the local syslog (/dev/log)")
	fs.StringVar(&e.syslogFacility, "syslog-facility", "daemon", "syslog facility: daemon, user, local0 ... local7")
	fs.StringVar(&e.pidFile, "pidfile", "", "write the process id here after binding; removed on exit")
	fs.StringVar(&e.serverName, "server-name", "", "public host name of this relay, used in the iceServers entry turnd prints")
}

// validate checks the extension settings, adding listeners to cfg.
func (e *extOptions) validate(cfg *relay.Config, noUDP, noTCP bool, add func(error)) {
	for _, a := range e.auxServers {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			add(fmt.Errorf("aux-server %q: want IP:PORT ([IPv6]:PORT)", a))
			continue
		}
		if !noUDP {
			cfg.Listeners = append(cfg.Listeners, relay.Listener{Network: "udp", Addr: ap.String()})
		}
		if !noTCP {
			cfg.Listeners = append(cfg.Listeners, relay.Listener{Network: "tcp", Addr: ap.String()})
		}
	}
	if _, ok := syslogFacilities[e.syslogFacility]; !ok {
		add(fmt.Errorf("syslog-facility %q: want one of daemon, user, auth, local0 ... local7", e.syslogFacility))
	}
	if e.noStdoutLog && e.logFile == "" && !e.syslog {
		add(errors.New("no-stdout-log needs --log-file or --syslog (else nothing is logged)"))
	}
	if h := e.serverName; h != "" && (strings.ContainsAny(h, " /:@?#") || net.ParseIP(h) == nil && !validHostName(h)) {
		add(fmt.Errorf("server-name %q is not a host name", h))
	}
}

func validHostName(h string) bool {
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !isNameChar(c) {
				return false
			}
		}
	}
	return len(h) <= 253
}

func isNameChar(c rune) bool {
	return c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// logOutput is where turnd's log goes: stderr, a file, syslog, or several.
// The file is reopened by Reopen (SIGHUP), so logrotate can move it away.
type logOutput struct {
	mu     sync.Mutex
	stderr io.Writer
	path   string
	file   *os.File
	syslog io.WriteCloser
}

// openLogOutput opens the destinations e names.
func openLogOutput(e extOptions, stderr io.Writer) (*logOutput, error) {
	out := &logOutput{}
	useSyslog := e.syslog
	switch e.logFile {
	case "", "stderr", "-":
	case "stdout":
		out.stderr = os.Stdout
	case "syslog":
		useSyslog = true
	default:
		out.path = e.logFile
		if err := out.Reopen(); err != nil {
			return nil, err
		}
	}
	if useSyslog {
		w, err := syslogDial(syslogFacilities[e.syslogFacility])
		if err != nil {
			out.Close()
			return nil, fmt.Errorf("syslog: %w", err)
		}
		out.syslog = w
	}
	if out.stderr == nil && (!e.noStdoutLog || out.path == "" && out.syslog == nil) {
		out.stderr = stderr
	}
	return out, nil
}

// Write sends one log record (slog writes each in one call) everywhere.
func (l *logOutput) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	if l.stderr != nil {
		_, err := l.stderr.Write(p)
		errs = append(errs, err)
	}
	if l.file != nil {
		_, err := l.file.Write(p)
		errs = append(errs, err)
	}
	if l.syslog != nil {
		_, err := l.syslog.Write(p)
		errs = append(errs, err)
	}
	return len(p), errors.Join(errs...)
}

// Reopen (re)opens the log file, for logrotate's move-then-SIGHUP.
func (l *logOutput) Reopen() error {
	if l.path == "" {
		return nil
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640) //nolint:gosec // group read for log shippers, as coturn's log files
	if err != nil {
		return fmt.Errorf("log-file: %w", err)
	}
	l.mu.Lock()
	old := l.file
	l.file = f
	l.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

// Close closes the file and the syslog connection.
func (l *logOutput) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file != nil {
		l.file.Close()
		l.file = nil
	}
	if l.syslog != nil {
		l.syslog.Close()
		l.syslog = nil
	}
}

// writePIDFile writes the process id; the returned func removes the file.
func writePIDFile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("pidfile: %w", err)
	}
	return func() { _ = os.Remove(path) }, nil
}

// vetSecrets refuses placeholder secrets and warns about short ones.
func vetSecrets(secrets [][]byte, add func(error)) (warnings []string) {
	for i, s := range secrets {
		w, err := conf.CheckSecret(fmt.Sprintf("static-auth-secret #%d", i+1), s)
		if err != nil {
			add(err)
		}
		if w != "" {
			warnings = append(warnings, w)
		}
	}
	return warnings
}

// logWarnings writes the configuration warnings, one line each.
func logWarnings(log *slog.Logger, warnings []string) {
	for _, w := range warnings {
		log.Warn("configuration: " + w)
	}
}
