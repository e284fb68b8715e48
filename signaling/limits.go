package signaling

import (
	"container/list"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// keyedLimiter is a token bucket per key (client address, token) with a
// bounded table: when it is full the least recently seen key is evicted,
// so newcomers never share one bucket.
type keyedLimiter struct {
	rate  rate.Limit
	burst int
	max   int

	mu  sync.Mutex
	m   map[string]*list.Element
	lru list.List // of *keyedEntry, most recent first
}

type keyedEntry struct {
	key string
	lim *rate.Limiter
}

func newKeyedLimiter(r float64, burst, maxKeys int) *keyedLimiter {
	return &keyedLimiter{rate: rate.Limit(r), burst: burst, max: maxKeys, m: make(map[string]*list.Element)}
}

// allow takes one token of key's bucket at now.
func (k *keyedLimiter) allow(key string, now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	var e *keyedEntry
	if el, ok := k.m[key]; ok {
		k.lru.MoveToFront(el)
		e = el.Value.(*keyedEntry)
	} else {
		if len(k.m) >= k.max {
			old := k.lru.Back()
			k.lru.Remove(old)
			delete(k.m, old.Value.(*keyedEntry).key)
		}
		e = &keyedEntry{key: key, lim: rate.NewLimiter(k.rate, k.burst)}
		k.m[key] = k.lru.PushFront(e)
	}
	return e.lim.AllowN(now, 1)
}

// recentSet remembers recently added keys in two bounded generations: a
// key stays known for at least one generation (size adds or maxAge).
type recentSet struct {
	size   int
	maxAge time.Duration

	mu        sync.Mutex
	cur, prev map[string]struct{}
	started   time.Time
}

func newRecentSet(size int, maxAge time.Duration) *recentSet {
	return &recentSet{size: size, maxAge: maxAge, cur: make(map[string]struct{})}
}

func (r *recentSet) add(key string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cur) >= r.size || now.Sub(r.started) > r.maxAge {
		r.prev, r.cur, r.started = r.cur, make(map[string]struct{}), now
	}
	r.cur[key] = struct{}{}
}

func (r *recentSet) has(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, a := r.cur[key]
	_, b := r.prev[key]
	return a || b
}

// logLimiter lets through a bounded rate of log lines of one kind and
// counts what it suppressed.
type logLimiter struct {
	mu         sync.Mutex
	lim        *rate.Limiter
	suppressed int
}

func newLogLimiter() *logLimiter { return &logLimiter{lim: rate.NewLimiter(1, 10)} }

// allow reports whether to log now, and how many lines were suppressed
// since the last one logged.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.lim.AllowN(now, 1) {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.suppressed = 0
	return true, n
}

// bucket is a token bucket on the hub's clock, small enough to live inside
// conn (rate.Limiter is a separate allocation of 80 bytes, two per
// connection). Not safe for concurrent use.
type bucket struct {
	rate   float64 // tokens per second
	burst  int
	tokens float64
	last   int64 // UnixNano of the last take; 0: never (full)
}

func (b *bucket) allow(now time.Time) bool {
	n := now.UnixNano()
	if b.last == 0 {
		b.tokens = float64(b.burst)
	} else if el := n - b.last; el > 0 {
		b.tokens = min(float64(b.burst), b.tokens+b.rate*float64(el)/1e9)
	}
	b.last = n
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
