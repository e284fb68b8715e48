package relay

import (
	"container/list"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxLimiterEntries bounds the memory a flood of spoofed sources can take.
// Past it the least recently seen source is forgotten to make room: every
// newcomer still gets a bucket of its own (a forgotten source starts again
// with a full bucket, which only ever errs towards allowing).
const maxLimiterEntries = 100_000

// ipLimiter is a token bucket per source key, in least-recently-seen
// order. A nil *ipLimiter allows all.
type ipLimiter struct {
	limit rate.Limit
	burst int
	max   int

	mu  sync.Mutex
	m   map[netip.Addr]*list.Element // of *limiterEntry
	lru list.List                    // front: most recently seen
}

type limiterEntry struct {
	ip   netip.Addr
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
		limit: rate.Limit(perSecond),
		burst: burst,
		max:   maxLimiterEntries,
		m:     map[netip.Addr]*list.Element{},
	}
}

// allow reports whether ip may spend one token now.
func (l *ipLimiter) allow(ip netip.Addr, now time.Time) bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.m[ip]
	if ok {
		l.lru.MoveToFront(el)
	} else {
		if len(l.m) >= l.max {
			oldest := l.lru.Back()
			delete(l.m, oldest.Value.(*limiterEntry).ip)
			l.lru.Remove(oldest)
		}
		el = l.lru.PushFront(&limiterEntry{ip: ip, lim: rate.NewLimiter(l.limit, l.burst)})
		l.m[ip] = el
	}
	e := el.Value.(*limiterEntry)
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
	for el := l.lru.Back(); el != nil; {
		e := el.Value.(*limiterEntry)
		if !e.seen.Before(cutoff) {
			break
		}
		prev := el.Prev()
		delete(l.m, e.ip)
		l.lru.Remove(el)
		el = prev
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
