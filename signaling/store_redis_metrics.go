package signaling

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// redisMetrics counts the store's Redis round trips (a go-redis hook) and
// the cluster events the hub's own metrics cannot see.
type redisMetrics struct {
	roundTrips       prometheus.Counter
	errors           prometheus.Counter
	latency          prometheus.Histogram
	up               prometheus.Gauge
	reapedSessions   prometheus.Counter
	handoverTimeouts prometheus.Counter
}

func newRedisMetrics() *redisMetrics {
	return &redisMetrics{
		roundTrips: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signal_redis_round_trips_total", Help: "Round trips to Redis (a pipeline counts once).",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signal_redis_errors_total", Help: "Round trips to Redis that failed (not counting empty answers).",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "signal_redis_round_trip_seconds", Help: "Redis round-trip time, excluding blocking stream reads.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .1, 1},
		}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "signal_redis_up", Help: "1 when the last heartbeat reached Redis.",
		}),
		reapedSessions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signal_cluster_reaped_sessions_total", Help: "Parked sessions this node reported left after their grace window.",
		}),
		handoverTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signal_cluster_handover_timeouts_total", Help: "Resumes that gave up waiting for the previous node's held frames.",
		}),
	}
}

func (m *redisMetrics) collectors() []prometheus.Collector {
	m.up.Set(1)
	return []prometheus.Collector{m.roundTrips, m.errors, m.latency, m.up, m.reapedSessions, m.handoverTimeouts}
}

func (m *redisMetrics) observe(start time.Time, err error, blocking bool) {
	m.roundTrips.Inc()
	// NOSCRIPT is the EVALSHA miss go-redis answers with EVAL: no failure.
	if err != nil && !errors.Is(err, redis.Nil) && !strings.HasPrefix(err.Error(), "NOSCRIPT") {
		m.errors.Inc()
	}
	if !blocking {
		m.latency.Observe(time.Since(start).Seconds())
	}
}

// DialHook implements redis.Hook.
func (m *redisMetrics) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

// ProcessHook implements redis.Hook.
func (m *redisMetrics) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		m.observe(start, err, cmd.Name() == "xread")
		return err
	}
}

// ProcessPipelineHook implements redis.Hook.
func (m *redisMetrics) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		m.observe(start, err, false)
		return err
	}
}
