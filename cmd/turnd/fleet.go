package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/conf"
	"github.com/rtcsuite/rtcsuite/internal/fleet"
	"github.com/rtcsuite/rtcsuite/internal/rediscfg"
	"github.com/rtcsuite/rtcsuite/relay"
)

// fleetOptions make turnd announce itself in Redis, where signal hands
// the least-loaded healthy relays to its peers (internal/fleet).
type fleetOptions struct {
	redisURL string
	prefix   string
	id       string
	urls     conf.Strings
	ttl      time.Duration
}

func addFleetFlags(fs *flag.FlagSet, o *fleetOptions) {
	fs.StringVar(&o.redisURL, "redis", "", "join a relay fleet: redis:// or rediss:// URL (password in the URL) of the hub's Redis")
	fs.StringVar(&o.prefix, "redis-prefix", fleet.DefaultPrefix, "Redis key prefix, the same as the hub's")
	fs.StringVar(&o.id, "fleet-id", "", "this relay's id in the fleet (default: hostname-port)")
	fs.Var(&o.urls, "fleet-url", "ICE URL clients use to reach this relay (repeatable; default: the listeners with --external-ip)")
	fs.DurationVar(&o.ttl, "fleet-ttl", 10*time.Second, "a relay silent this long leaves the fleet; heartbeats every third of it")
}

func (o *fleetOptions) validate() error {
	if o.redisURL == "" {
		if o.id != "" || len(o.urls) > 0 {
			return errors.New("fleet-id and fleet-url need --redis")
		}
		return nil
	}
	var errs []error
	if _, err := rediscfg.Parse(o.redisURL); err != nil {
		errs = append(errs, fmt.Errorf("redis: %w", err))
	}
	if o.ttl < time.Second {
		errs = append(errs, fmt.Errorf("fleet-ttl %v: at least 1s", o.ttl))
	}
	if strings.ContainsAny(o.id, ": \t") {
		errs = append(errs, fmt.Errorf("fleet-id %q: no colons or spaces", o.id))
	}
	return errors.Join(errs...)
}

// startFleet registers srv in the fleet until ctx ends (turnd drains):
// then it leaves the fleet at once. The returned func waits for that.
func startFleet(ctx context.Context, o fleetOptions, srv *relay.Server, cfg relay.Config, log *slog.Logger) func() {
	if o.redisURL == "" {
		return func() {}
	}
	rediscfg.SetLogger(log)
	client, _ := rediscfg.NewClient(o.redisURL) // validated
	urls := []string(o.urls)
	if len(urls) == 0 {
		host := ""
		if cfg.ExternalIPv4.IsValid() {
			host = cfg.ExternalIPv4.String()
		}
		urls = srv.ICEServerURLs(host)
	}
	id := o.id
	if id == "" {
		h, _ := os.Hostname()
		id = strings.NewReplacer(":", "_", " ", "_").Replace(h) + "-" + strconv.Itoa(firstPort(srv))
	}
	reg := fleet.Registration{
		Client: client, Prefix: o.prefix, ID: id, URLs: urls, TTL: o.ttl, Logger: log,
		Load: func() int { return srv.Stats().ActiveAllocations },
	}
	log.Info("fleet: registering in redis", "id", id, "urls", strings.Join(urls, " "), "ttl", o.ttl)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := reg.Run(ctx); err != nil {
			log.Error("fleet registration", "err", err)
		}
	}()
	return func() { <-done; client.Close() }
}

func firstPort(srv *relay.Server) int {
	for _, a := range srv.Addrs() {
		if _, p, err := net.SplitHostPort(a.String()); err == nil {
			n, _ := strconv.Atoi(p)
			return n
		}
	}
	return 0
}
