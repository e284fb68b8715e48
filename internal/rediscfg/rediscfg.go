// Package rediscfg turns a --redis URL into a go-redis client with the
// settings every rtcsuite command uses, so cmd/signal and cmd/turnd (and
// tests) talk to Redis the same way.
package rediscfg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// NewClient parses rawURL (redis://[user:password@]host:port[/db] or
// rediss:// for TLS; go-redis's URL options such as dial_timeout apply) and
// returns a client. It does not connect. Commands fail fast (2 s timeouts,
// no retries): the callers have their own recovery, and a signaling hub
// must answer "unavailable" promptly rather than hang.
func NewClient(rawURL string) (*redis.Client, error) {
	o, err := Parse(rawURL)
	if err != nil {
		return nil, err
	}
	return redis.NewClient(o), nil
}

// Parse validates rawURL and returns the options NewClient uses.
func Parse(rawURL string) (*redis.Options, error) {
	if rawURL == "" {
		return nil, errors.New("empty redis URL")
	}
	o, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis URL: %w", err)
	}
	Apply(o)
	return o, nil
}

// Apply sets rtcsuite's defaults on o where the URL left them unset.
func Apply(o *redis.Options) {
	if o.DialTimeout == 0 {
		o.DialTimeout = 2 * time.Second
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = 2 * time.Second
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 2 * time.Second
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = -1
	}
	// Redis 7.0 (Debian 12) knows neither CLIENT SETINFO (7.2) nor
	// maintenance notifications: skip both handshakes instead of failing
	// them on every new connection.
	o.DisableIdentity = true
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
}

// SetLogger sends go-redis's own log lines (pool dial failures, repeated
// for every attempt during an outage) to log at debug level: the callers
// report outages once, in their own words.
func SetLogger(log *slog.Logger) { redis.SetLogger(slogLogger{log}) }

type slogLogger struct{ log *slog.Logger }

func (l slogLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}
