package relay

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxLimiterEntries bounds the memory a flood of spoofed sources can take.
// Past it, unknown sources share one limiter, which degrades fairness but
// never memory or correctness for known clients.
const maxLimiterEntries = 100_000

// ipLimiter is a token bucket per source IP. A nil *ipLimiter allows all.
type ipLimiter struct {
	limit rate.Limit
	burst int

	mu       sync.Mutex
	m        map[netip.Addr]*limiterEntry
	overflow *rate.Limiter
}

type limiterEntry struct {
	lim  *rate.Limiter
	seen time.Time
}

func newIPLimiter(perSecond float64, burst int) *ipLimiter {
	if perSecond <= 0 {
		return nil
	}
	if burst < 1 {
		burst = 1
	}
	return &ipLimiter{
		limit:    rate.Limit(perSecond),
		burst:    burst,
		m:        map[netip.Addr]*limiterEntry{},
		overflow: rate.NewLimiter(rate.Limit(perSecond), burst),
	}
}

// allow reports whether ip may spend one token now.
func (l *ipLimiter) allow(ip netip.Addr, now time.Time) bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.m[ip]
	if !ok {
		if len(l.m) >= maxLimiterEntries {
			return l.overflow.AllowN(now, 1)
		}
		e = &limiterEntry{lim: rate.NewLimiter(l.limit, l.burst)}
		l.m[ip] = e
	}
	e.seen = now
	return e.lim.AllowN(now, 1)
}

// sweep forgets sources idle since before cutoff: their buckets are full
// again by then, so forgetting them changes no decision.
func (l *ipLimiter) sweep(cutoff time.Time) {
	if l == nil {
		return
	}
	l.mu.Lock()
	for ip, e := range l.m {
		if e.seen.Before(cutoff) {
			delete(l.m, ip)
		}
	}
	l.mu.Unlock()
}

// byteLimiter drops what exceeds a byte rate. A nil *byteLimiter allows all.
type byteLimiter struct {
	lim *rate.Limiter
}

func newByteLimiter(bps int64) *byteLimiter {
	if bps <= 0 {
		return nil
	}
	// One second of burst, and at least one maximum-size datagram so a
	// low limit still passes packets rather than starving.
	burst := int(bps)
	if burst < 65536 {
		burst = 65536
	}
	return &byteLimiter{lim: rate.NewLimiter(rate.Limit(bps), burst)}
}

func (b *byteLimiter) allow(n int, now time.Time) bool {
	if b == nil {
		return true
	}
	return b.lim.AllowN(now, n)
}
