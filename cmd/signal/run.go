package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/buildinfo"
	"github.com/rtcsuite/rtcsuite/internal/conf"
	"github.com/rtcsuite/rtcsuite/internal/procs"
	"github.com/rtcsuite/rtcsuite/signaling"
	"github.com/rtcsuite/rtcsuite/web"
)

// runEnv is what run needs from the process, so tests can supply their own.
type runEnv struct {
	getenv         func(string) string
	stdout, stderr io.Writer
	// ready, when set, receives the bound public and admin addresses once
	// the servers accept connections (tests). admin is nil when off.
	ready func(public, admin net.Addr)
}

// Exit codes.
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2
)

func run(ctx context.Context, args []string, env runEnv) int {
	if len(args) > 0 && args[0] == "token" {
		return runToken(args[1:], env)
	}
	var o options
	fs := newFlagSet(&o)
	if _, err := conf.Load(fs, args, env.getenv, envPrefix, "config"); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(fs, env.stdout)
			return exitOK
		}
		fmt.Fprintf(env.stderr, "signal: configuration:\n%s\n", indent(err))
		return exitConfig
	}
	if o.version {
		fmt.Fprintln(env.stdout, buildinfo.Line("signal"))
		return exitOK
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.stderr, "signal: unexpected arguments %q (flags only; or `signal token`)\n", fs.Args())
		return exitConfig
	}
	l, err := o.build(env.stderr)
	if err != nil {
		fmt.Fprintf(env.stderr, "signal: configuration:\n%s\n", indent(err))
		return exitConfig
	}
	log := l.logger
	if err := procs.Apply(ctx, l.procs, env.getenv, func(from, to int) {
		log.Debug("scheduler threads", "from", from, "to", to)
	}); err != nil {
		log.Warn("procs auto unavailable; keeping the Go default", "err", err)
	}

	// Bind first: the dev relay must know the ports to protect, and tests
	// ask for port 0.
	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", l.listen)
	if err != nil {
		log.Error("listen", "addr", l.listen, "err", err)
		return exitFail
	}
	defer ln.Close()
	var adminLn net.Listener
	if l.admin != "" {
		if adminLn, err = new(net.ListenConfig).Listen(ctx, "tcp", l.admin); err != nil {
			log.Error("admin listen", "addr", l.admin, "err", err)
			return exitFail
		}
		defer adminLn.Close()
	}

	// Where browsers reach us.
	host := "127.0.0.1"
	var lanIPs []netip.Addr
	if h, _, _ := net.SplitHostPort(l.listen); h != "" && h != "0.0.0.0" && h != "::" {
		host = h
	} else if o.dev && o.devBindAll {
		if ip, ok := lanIPv4(); ok {
			host = ip.String()
			lanIPs = append(lanIPs, ip)
		}
	}

	if o.dev {
		bind := "127.0.0.1"
		if o.devBindAll {
			bind = "0.0.0.0"
		}
		protect := []int{portOf(ln.Addr())}
		if adminLn != nil {
			protect = append(protect, portOf(adminLn.Addr()))
		}
		dr, err := startDevRelay(bind, host, o.devRelayPort, protect, log)
		if err != nil {
			log.Error("dev relay", "err", err)
			return exitFail
		}
		defer dr.stop()
		l.turnURLs, l.turnSecret = dr.urls, dr.secret
		log.Warn("DEVELOPMENT MODE: the embedded TURN relay allows LOOPBACK and PRIVATE peers and rooms are open; never expose this to the internet",
			"relay", strings.Join(dr.urls, " "))
		if o.devHTTPS {
			cert, fp, err := selfSigned(lanIPs, time.Now())
			if err != nil {
				log.Error("dev certificate", "err", err)
				return exitFail
			}
			l.tls = cert
			log.Warn("serving HTTPS with a self-signed certificate: your browser will warn", "sha256", fp)
		}
	}
	l.hub.ICEServers = iceServersFunc(l.turnURLs, l.turnSecret, o.iceTTL, time.Now)
	if o.dev && !slices.Contains(l.hub.AllowedHosts, host) {
		l.hub.AllowedHosts = append(l.hub.AllowedHosts, host) // -listen 127.0.0.2:8080, or the LAN address
	}
	closeCluster, err := setupCluster(ctx, o.cluster, &l, o.iceTTL, log)
	if err != nil {
		log.Error("cluster", "err", err)
		return exitFail
	}
	defer closeCluster()

	hub, err := signaling.NewHub(l.hub)
	if err != nil {
		log.Error("hub", "err", err)
		return exitFail
	}
	mux := http.NewServeMux()
	hh := hub.Handler()
	for _, p := range signaling.Paths {
		mux.Handle(p, hh)
	}
	mux.Handle("/", web.Handler())

	scheme := "http"
	publicLn := ln
	if l.tls != nil {
		scheme = "https"
		publicLn = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*l.tls}, MinVersion: tls.VersionTLS12})
	}
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	public := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: errLog,
		ConnState: hub.ConnState}
	serveErr := make(chan error, 2)
	go func() { serveErr <- public.Serve(publicLn) }()
	var admin *http.Server
	var adminAddr net.Addr
	if adminLn != nil {
		admin = &http.Server{Handler: hub.AdminHandler(), ReadHeaderTimeout: 5 * time.Second, ErrorLog: errLog}
		adminAddr = adminLn.Addr()
		go func() { serveErr <- admin.Serve(adminLn) }()
	}

	auth := "jwt"
	if l.hub.TokenSecret == nil {
		auth = "open"
	}
	log.Info("signal serving",
		"listen", ln.Addr().String(), "tls", l.tls != nil, "admin", addrString(adminAddr),
		"auth", auth, "allowed_origins", strings.Join(l.hub.AllowedOrigins, " "),
		"ice_urls", strings.Join(l.turnURLs, " "), "ice_ttl", o.iceTTL, "room_capacity", l.hub.RoomCapacity,
		"ping_interval", l.hub.PingInterval, "resume_grace", l.hub.ResumeGrace)
	pageURL := scheme + "://" + net.JoinHostPort(host, strconv.Itoa(portOf(ln.Addr()))) + "/"
	if o.dev {
		fmt.Fprintf(env.stdout, "signal --dev: open %s, then open the share link it shows in a second tab or browser\n", pageURL)
	} else {
		fmt.Fprintf(env.stdout, "signal: serving %s\n", pageURL)
	}
	if env.ready != nil {
		env.ready(ln.Addr(), adminAddr)
	}

	code := exitOK
	select {
	case <-ctx.Done():
		log.Info("draining: asking clients to reconnect (1012)")
	case err := <-serveErr:
		log.Error("serve", "err", err)
		code = exitFail
	}
	dctx, cancel := context.WithTimeout(context.Background(), o.drain)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- hub.Shutdown(dctx) }()
	if err := public.Shutdown(dctx); err != nil {
		log.Warn("public listener shutdown", "err", err)
	}
	if err := <-done; err != nil {
		log.Warn("hub drain incomplete", "err", err)
	}
	if admin != nil {
		_ = admin.Shutdown(dctx) // nothing long-lived there
	}
	log.Info("stopped")
	return code
}

func portOf(a net.Addr) int {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.Port
	}
	_, p, _ := net.SplitHostPort(a.String())
	n, _ := strconv.Atoi(p)
	return n
}

func addrString(a net.Addr) string {
	if a == nil {
		return "off"
	}
	return a.String()
}

func indent(err error) string {
	return "  " + strings.ReplaceAll(err.Error(), "\n", "\n  ")
}

func usage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, `Usage: signal [flags]
       signal token --jwt-secret S --room R [--name N] [--ttl 1h]

The signaling hub and web page. Every flag can also be set as an environment
variable (SIGNAL_TURN_SECRET for --turn-secret) or a line in --config
("turn-url = turn:host:3478"); flags win over the environment, which wins over
the file.

  signal --dev                      hub + embedded relay + page on 127.0.0.1
  signal --jwt-secret "$JWT" --turn-secret "$TURN" --turn-url turn:turn.example.com:3478

Flags:
`)
	conf.PrintDefaults(w, fs)
}

// runToken mints a join token, as a customer's backend would.
func runToken(args []string, env runEnv) int {
	fs := flag.NewFlagSet("signal token", flag.ContinueOnError)
	secret := fs.String("jwt-secret", "", "the hub's --jwt-secret (or SIGNAL_JWT_SECRET)")
	room := fs.String("room", "", "room the token admits to (* = any)")
	name := fs.String("name", "", "display name other peers see")
	ttl := fs.Duration("ttl", time.Hour, "validity")
	if _, err := conf.Load(fs, args, env.getenv, envPrefix, ""); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(env.stdout)
			fs.PrintDefaults()
			return exitOK
		}
		fmt.Fprintf(env.stderr, "signal token: %v\n", err)
		return exitConfig
	}
	if *secret == "" || *room == "" || *ttl <= 0 {
		fmt.Fprintln(env.stderr, "signal token: --jwt-secret, --room and a positive --ttl are required")
		return exitConfig
	}
	tok, err := signaling.MintToken([]byte(*secret), signaling.TokenClaims{Room: *room, Name: *name, Expires: time.Now().Add(*ttl)})
	if err != nil {
		fmt.Fprintf(env.stderr, "signal token: %v\n", err)
		return exitConfig
	}
	fmt.Fprintln(env.stdout, tok)
	return exitOK
}
