package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/buildinfo"
	"github.com/rtcsuite/rtcsuite/internal/conf"
	"github.com/rtcsuite/rtcsuite/relay"
)

// runEnv is what run needs from the process, so tests can supply their own.
type runEnv struct {
	getenv         func(string) string
	stdout, stderr io.Writer
	reload         <-chan os.Signal // SIGHUP
	// ready, when set, receives the server once it serves (tests).
	ready func(*relay.Server, net.Addr)
}

// Exit codes.
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2
)

func run(ctx context.Context, args []string, env runEnv) int {
	if len(args) > 0 && args[0] == "creds" {
		return runCreds(args[1:], env)
	}
	var o options
	fs := newFlagSet(&o)
	warnings, err := loadOptions(fs, args, env.getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(fs, env.stdout)
			return exitOK
		}
		fmt.Fprintf(env.stderr, "turnd: configuration:\n%s\n", indent(err))
		return exitConfig
	}
	if o.ext.version {
		fmt.Fprintln(env.stdout, buildinfo.Line("turnd"))
		return exitOK
	}
	logOut, err := openLogOutput(o.ext, env.stderr)
	if err != nil {
		fmt.Fprintf(env.stderr, "turnd: configuration:\n  %v\n", err)
		return exitConfig
	}
	defer logOut.Close()
	l, err := o.build(logOut)
	if rerr := l.relay.Validate(); rerr != nil {
		err = errors.Join(err, rerr)
	}
	if err != nil {
		fmt.Fprintf(env.stderr, "turnd: configuration:\n%s\n", indent(err))
		return exitConfig
	}
	log := l.logger
	logWarnings(log, append(warnings, l.warnings...))

	srv, err := relay.New(l.relay)
	if err != nil {
		log.Error("start failed", "err", err)
		return exitFail
	}
	removePID, err := writePIDFile(o.ext.pidFile)
	if err != nil {
		log.Error("start failed", "err", err)
		srv.Close()
		return exitFail
	}
	defer removePID()
	logEffective(log, l, srv, o.ext.serverName)

	var adminAddr net.Addr
	var admin *http.Server
	if l.admin != "" {
		ln, err := new(net.ListenConfig).Listen(ctx, "tcp", l.admin)
		if err != nil {
			log.Error("start failed: the admin listener (--admin-listen, /metrics) cannot bind; choose another address with --admin-listen, or turn it off with --admin-listen ''",
				"addr", l.admin, "err", err)
			srv.Close()
			return exitFail
		}
		adminAddr = ln.Addr()
		admin = &http.Server{Handler: srv.AdminHandler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = admin.Serve(ln) }() // ends with Shutdown below
		log.Info("admin listening", "addr", ln.Addr().String(), "endpoints", "/metrics /healthz /readyz")
	}
	if env.ready != nil {
		env.ready(srv, adminAddr)
	}

	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	stopFleet := startFleet(ctx, o.fleet, srv, l.relay, log)
	defer stopFleet()
	for {
		select {
		case <-env.reload:
			if err := logOut.Reopen(); err != nil {
				log.Error("reload: log file", "err", err)
			}
			reload(args, env, srv, log)
		case err := <-done:
			if admin != nil {
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_ = admin.Shutdown(sctx)
				cancel()
			}
			if err != nil && !errors.Is(err, relay.ErrClosed) {
				log.Error("stopped", "err", err)
				return exitFail
			}
			log.Info("stopped")
			return exitOK
		}
	}
}

// reload re-reads flags, environment, config file, users, secrets and
// certificates, and applies what can change live.
func reload(args []string, env runEnv, srv *relay.Server, log *slog.Logger) {
	var o options
	fs := newFlagSet(&o)
	if _, err := loadOptions(fs, args, env.getenv); err != nil {
		log.Error("reload: configuration rejected, keeping the running one", "err", err)
		return
	}
	l, err := o.build(io.Discard)
	if err != nil {
		log.Error("reload: configuration rejected, keeping the running one", "err", err)
		return
	}
	logWarnings(log, l.warnings)
	l.relay.Logger = log
	if err := srv.Reload(l.relay); err != nil {
		if errors.Is(err, relay.ErrNeedsRestart) {
			log.Warn("reload applied partly", "note", err.Error())
			return
		}
		log.Error("reload failed", "err", err)
	}
}

// logEffective prints the configuration in force (secrets redacted) and
// the ICE server entry clients should use.
func logEffective(log *slog.Logger, l loaded, srv *relay.Server, serverName string) {
	c := l.relay
	var listeners []string
	for _, a := range srv.Addrs() {
		listeners = append(listeners, a.Network()+"://"+a.String())
	}
	log.Info("turnd serving",
		"realm", c.Realm,
		"listeners", strings.Join(listeners, " "),
		"relay_ports", fmt.Sprintf("%d-%d", c.MinPort, c.MaxPort),
		"external_ipv4", c.ExternalIPv4, "external_ipv6", c.ExternalIPv6,
		"static_users", len(c.Users),
		"rest_secrets", fmt.Sprintf("%d (redacted)", len(c.Secrets)),
		"allow_loopback_peers", c.Peers.AllowLoopback, "allow_private_peers", c.Peers.AllowPrivate,
		"allowed_peers", fmt.Sprint(c.Peers.Allowed), "denied_peers", fmt.Sprint(c.Peers.Denied),
		"user_quota", c.UserQuota, "source_quota", c.SourceQuota, "total_quota", c.TotalQuota,
		"max_bps", c.MaxBPS, "user_max_bps", c.UserMaxBPS,
		"rfc5780", c.RFC5780 != nil,
	)
	if c.Peers.AllowLoopback || c.Peers.AllowPrivate {
		log.Warn("peer policy opened: this relay can reach loopback or private addresses; never run it so on the internet")
	}
	host := ""
	if c.ExternalIPv4.IsValid() {
		host = c.ExternalIPv4.String()
	}
	if serverName != "" {
		host = serverName
	}
	entry := map[string]any{
		"urls":       srv.ICEServerURLs(host),
		"username":   "<from `turnd creds`, or a static user>",
		"credential": "<password>",
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(entry)
	log.Info("ICE server for clients (replace 0.0.0.0 with this host's public name)", "iceServer", strings.TrimSpace(b.String()))
}

func usage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, "turnd: a STUN/TURN relay.\n\nUsage:\n  turnd [flags]\n  turnd -c /etc/turnserver.conf   (coturn config files load: docs/turnd.md)\n"+
		"  turnd creds --secret S --user U [--ttl 1h] [--url turn:host:3478]\n\n"+
		"Every flag can also be set as an environment variable (TURND_MAX_PORT for --max-port)\n"+
		"or in the --config file (max-port=65535). Precedence: flag > environment > file > default.\n\nFlags:\n")
	conf.PrintDefaults(w, fs)
}

func indent(err error) string {
	return "  " + strings.ReplaceAll(err.Error(), "\n", "\n  ")
}
