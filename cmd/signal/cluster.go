package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/fleet"
	"github.com/rtcsuite/rtcsuite/internal/rediscfg"
	"github.com/rtcsuite/rtcsuite/internal/turnrest"
	"github.com/rtcsuite/rtcsuite/signaling"
)

// clusterOptions run the hub as one node of many sharing a Redis, and
// hand peers relays from a turnd fleet registered in the same Redis.
type clusterOptions struct {
	redisURL  string
	prefix    string
	nodeID    string
	heartbeat time.Duration
	nodeTTL   time.Duration
	turnFleet int
	fleetTTL  time.Duration
}

func addClusterFlags(fs *flag.FlagSet, o *clusterOptions) {
	fs.StringVar(&o.redisURL, "redis", "", "run as one node of a multi-node hub: redis:// or rediss:// URL (password in the URL); empty = one node, in memory")
	fs.StringVar(&o.prefix, "redis-prefix", fleet.DefaultPrefix, "Redis key prefix (one per cluster sharing a Redis)")
	fs.StringVar(&o.nodeID, "node-id", "", "this node's id in the cluster (default: random)")
	fs.DurationVar(&o.heartbeat, "node-heartbeat", time.Second, "how often the node renews its liveness in Redis")
	fs.DurationVar(&o.nodeTTL, "node-ttl", 5*time.Second, "a node silent this long is dead: its peers wait -resume-grace, then are reported left")
	fs.IntVar(&o.turnFleet, "turn-fleet", 2, "with -redis and -turn-secret: relays from the turnd fleet handed to each peer, least loaded first (0 = off)")
	fs.DurationVar(&o.fleetTTL, "fleet-ttl", 10*time.Second, "the relays' -fleet-ttl")
}

func (o *clusterOptions) validate() error {
	if o.redisURL == "" {
		return nil
	}
	var errs []error
	if _, err := rediscfg.Parse(o.redisURL); err != nil {
		errs = append(errs, fmt.Errorf("redis: %w", err))
	}
	if strings.ContainsAny(o.nodeID, ": \t") {
		errs = append(errs, fmt.Errorf("node-id %q: no colons or spaces", o.nodeID))
	}
	if o.heartbeat < 50*time.Millisecond || o.nodeTTL < 2*o.heartbeat {
		errs = append(errs, fmt.Errorf("node-ttl %v must be at least twice node-heartbeat %v (at least 50ms)", o.nodeTTL, o.heartbeat))
	}
	if o.turnFleet < 0 || o.fleetTTL < time.Second {
		errs = append(errs, fmt.Errorf("turn-fleet %d / fleet-ttl %v: need >= 0 and >= 1s", o.turnFleet, o.fleetTTL))
	}
	return errors.Join(errs...)
}

// setupCluster makes l.hub a node of the cluster: a Redis store, and
// relays from the fleet on top of the configured ICE servers. The returned
// func closes the store; call it after the hub's Shutdown.
func setupCluster(ctx context.Context, o clusterOptions, l *loaded, iceTTL time.Duration, log *slog.Logger) (func(), error) {
	if o.redisURL == "" {
		return func() {}, nil
	}
	rediscfg.SetLogger(log)
	client, err := rediscfg.NewClient(o.redisURL)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	store, err := signaling.NewRedisStore(sctx, signaling.RedisConfig{
		Client: client, Prefix: o.prefix, NodeID: o.nodeID, Heartbeat: o.heartbeat, NodeTTL: o.nodeTTL,
		ResumeGrace: l.hub.ResumeGrace, Logger: log,
	})
	if err != nil {
		client.Close()
		return nil, err
	}
	l.hub.Store = store
	fctx, stopFleet := context.WithCancel(context.Background())
	fleetDone := make(chan struct{})
	if o.turnFleet > 0 && len(l.turnSecret) > 0 {
		sel := &fleet.Selector{Client: client, Prefix: o.prefix, TTL: o.fleetTTL, N: o.turnFleet, Logger: log}
		go func() { defer close(fleetDone); sel.Run(fctx) }()
		l.hub.ICEServers = withFleet(l.hub.ICEServers, sel.Pick, l.turnSecret, iceTTL, time.Now)
	} else {
		close(fleetDone)
	}
	log.Info("cluster node", "node", store.NodeID(), "prefix", o.prefix, "turn_fleet", o.turnFleet > 0 && len(l.turnSecret) > 0)
	return func() {
		stopFleet()
		<-fleetDone
		_ = store.Close() // never fails
		client.Close()
	}, nil
}

// withFleet adds the relays pick returns to what base hands out, with a
// TURN REST credential minted for the peer (the relays share the secret).
func withFleet(base func(string) ([]signaling.ICEServer, time.Time), pick func() []fleet.Relay,
	secret []byte, ttl time.Duration, now func() time.Time,
) func(string) ([]signaling.ICEServer, time.Time) {
	return func(peerID string) ([]signaling.ICEServer, time.Time) {
		servers, exp := base(peerID)
		relays := pick()
		if len(relays) == 0 {
			return servers, exp
		}
		var urls []string
		for _, r := range relays {
			urls = append(urls, r.URLs...)
		}
		c := turnrest.Mint(secret, peerID, now().Add(ttl))
		servers = append(servers, signaling.ICEServer{URLs: urls, Username: c.Username, Credential: c.Password})
		if exp.IsZero() || c.Expires.Before(exp) {
			exp = c.Expires
		}
		return servers, exp
	}
}
