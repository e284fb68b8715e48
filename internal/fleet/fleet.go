// Package fleet is the Redis key layout through which turnd relays announce
// themselves and a signaling hub picks relays for its peers. turnd runs a
// Registration; cmd/signal asks a Selector. Neither relay nor signaling
// imports this package: only the commands do.
//
// Keys under the prefix P (default "rtcsuite:"):
//
//	P turn:relays       ZSET relay id -> last heartbeat (ms, Redis clock)
//	P turn:relay:<id>   HASH urls (space-separated ICE URLs), load
//
// A relay's hash expires TTL after its last heartbeat and selectors drop
// relays whose heartbeat is older than TTL, so a relay that stops
// heartbeating leaves the fleet within TTL. A relay that stops cleanly
// removes itself at once.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Relay is one healthy relay as the fleet sees it.
type Relay struct {
	ID   string
	URLs []string // turn:, turns: or stun: URLs clients use
	Load int      // live allocations at its last heartbeat
}

// DefaultPrefix is the key prefix shared with the signaling hub's store.
const DefaultPrefix = "rtcsuite:"

var registerScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local set, key, id, ttl = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])
redis.call('ZADD', set, now, id)
redis.call('PEXPIRE', set, ttl * 10)
redis.call('HSET', key, 'urls', ARGV[3], 'load', ARGV[4])
redis.call('PEXPIRE', key, ttl)
return 1
`)

var selectScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local set, prefix, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', set, '-inf', now - ttl)
local out = {}
for _, id in ipairs(redis.call('ZRANGE', set, 0, -1)) do
  local h = redis.call('HMGET', prefix .. 'turn:relay:' .. id, 'urls', 'load')
  if h[1] then
    out[#out + 1] = id
    out[#out + 1] = h[1]
    out[#out + 1] = h[2] or '0'
  end
end
return out
`)

func setKey(prefix string) string       { return prefix + "turn:relays" }
func relayKey(prefix, id string) string { return prefix + "turn:relay:" + id }
func validID(id string) bool            { return id != "" && !strings.ContainsAny(id, ": \t\n") }
func ttlMS(d time.Duration) string      { return strconv.FormatInt(d.Milliseconds(), 10) }
func orDefault(prefix string) string {
	if prefix == "" {
		return DefaultPrefix
	}
	return prefix
}

// Registration announces one relay until its context ends.
type Registration struct {
	Client *redis.Client // required
	Prefix string        // default DefaultPrefix
	ID     string        // unique in the fleet, no colons or spaces (required)
	URLs   []string      // what clients use to reach this relay (required)
	// Load returns the live allocation count (required).
	Load func() int
	// TTL is how long the relay stays in the fleet without a heartbeat;
	// it heartbeats every TTL/3. Default 10s.
	TTL    time.Duration
	Logger *slog.Logger
}

func (r *Registration) validate() error {
	var errs []error
	if r.Client == nil || r.Load == nil {
		errs = append(errs, errors.New("fleet: Client and Load are required"))
	}
	if !validID(r.ID) {
		errs = append(errs, fmt.Errorf("fleet: relay id %q: want a non-empty id without colons or spaces", r.ID))
	}
	if len(r.URLs) == 0 {
		errs = append(errs, errors.New("fleet: the relay needs at least one URL"))
	}
	if r.TTL < 0 || (r.TTL > 0 && r.TTL < 300*time.Millisecond) {
		errs = append(errs, fmt.Errorf("fleet: TTL %v: at least 300ms", r.TTL))
	}
	return errors.Join(errs...)
}

// Run heartbeats until ctx ends, then removes the relay from the fleet. A
// failed heartbeat is logged and retried at the next one; Run only returns
// an error for an invalid Registration.
func (r Registration) Run(ctx context.Context) error {
	if err := r.validate(); err != nil {
		return err
	}
	r.Prefix = orDefault(r.Prefix)
	if r.TTL == 0 {
		r.TTL = 10 * time.Second
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	urls := strings.Join(r.URLs, " ")
	beat := func() error {
		bctx, cancel := context.WithTimeout(ctx, r.TTL/3)
		defer cancel()
		return registerScript.Run(bctx, r.Client, []string{setKey(r.Prefix), relayKey(r.Prefix, r.ID)},
			r.ID, ttlMS(r.TTL), urls, strconv.Itoa(r.Load())).Err()
	}
	failing := false
	report := func(err error) {
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			r.Logger.Warn("fleet: heartbeat to redis failed; the hub stops handing out this relay after the TTL", "err", err, "ttl", r.TTL)
		case err == nil && failing:
			r.Logger.Info("fleet: heartbeat to redis works again")
		}
		failing = err != nil
	}
	report(beat())
	t := time.NewTicker(r.TTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			pipe := r.Client.TxPipeline()
			pipe.ZRem(dctx, setKey(r.Prefix), r.ID)
			pipe.Del(dctx, relayKey(r.Prefix, r.ID))
			if _, err := pipe.Exec(dctx); err != nil {
				r.Logger.Warn("fleet: leaving the fleet failed; the hub drops this relay after the TTL", "err", err)
			}
			return nil
		case <-t.C:
			report(beat())
		}
	}
}

// Healthy returns the relays that heartbeat within ttl.
func Healthy(ctx context.Context, c *redis.Client, prefix string, ttl time.Duration) ([]Relay, error) {
	prefix = orDefault(prefix)
	res, err := selectScript.Run(ctx, c, []string{setKey(prefix)}, prefix, ttlMS(ttl)).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("fleet: listing relays: %w", err)
	}
	out := make([]Relay, 0, len(res)/3)
	for i := 0; i+2 < len(res); i += 3 {
		load, _ := strconv.Atoi(res[i+2])
		out = append(out, Relay{ID: res[i], URLs: strings.Fields(res[i+1]), Load: load})
	}
	return out, nil
}

// Least returns the n relays with the least load, ties broken by id so
// every hub node picks alike.
func Least(relays []Relay, n int) []Relay {
	s := append([]Relay(nil), relays...)
	sort.Slice(s, func(i, j int) bool {
		if s[i].Load != s[j].Load {
			return s[i].Load < s[j].Load
		}
		return s[i].ID < s[j].ID
	})
	return s[:min(n, len(s))]
}

// Selector picks relays for a hub. Run keeps a snapshot of the fleet
// fresh in the background, so Pick never waits on Redis: the hub calls it
// while it holds a peer's session, and a Redis outage must not stall
// signaling.
type Selector struct {
	Client *redis.Client
	Prefix string
	TTL    time.Duration // must match the relays' TTL; default 10s
	N      int           // relays per peer; default 2
	// Refresh is how often Run lists the fleet. Default 500ms.
	Refresh time.Duration
	Logger  *slog.Logger

	mu     sync.Mutex
	at     time.Time // when cached was listed
	cached []Relay
}

func (s *Selector) defaults() (ttl, refresh time.Duration, n int) {
	ttl, refresh, n = s.TTL, s.Refresh, s.N
	if ttl == 0 {
		ttl = 10 * time.Second
	}
	if refresh == 0 {
		refresh = 500 * time.Millisecond
	}
	if n == 0 {
		n = 2
	}
	return ttl, refresh, n
}

// Run refreshes the snapshot until ctx ends.
func (s *Selector) Run(ctx context.Context) {
	_, refresh, _ := s.defaults()
	t := time.NewTicker(refresh)
	defer t.Stop()
	failing := false
	for {
		err := s.refresh(ctx)
		if err != nil && !failing && ctx.Err() == nil && s.Logger != nil {
			s.Logger.Warn("fleet: cannot list relays; handing out the last known ones until their TTL", "err", err)
		}
		failing = err != nil
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Selector) refresh(ctx context.Context) error {
	ttl, _, n := s.defaults()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	all, err := Healthy(ctx, s.Client, s.Prefix, ttl)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.cached, s.at = Least(all, n), time.Now()
	s.mu.Unlock()
	return nil
}

// Pick returns the N least-loaded healthy relays of the last snapshot, or
// nil when there is none younger than the relays' TTL.
func (s *Selector) Pick() []Relay {
	ttl, _, _ := s.defaults()
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.at) > ttl {
		return nil
	}
	return s.cached
}
