package relay

import (
	"sync"
	"time"
)

// bandwidth holds the limiters one relay socket answers to: its
// allocation's (MaxBPS, each direction) and its user's (UserMaxBPS, shared
// by all of that user's allocations). A nil *bandwidth allows everything.
type bandwidth struct {
	in, out  *byteLimiter
	user     *userLimit
	total    *userLimit // the server-wide capacity (Config.BPSCapacity)
	registry *userLimits
	released sync.Once
}

func (b *bandwidth) allowIn(n int, now time.Time) bool {
	if b == nil {
		return true
	}
	return b.in.allow(n, now) && (b.user == nil || b.user.in.allow(n, now)) &&
		(b.total == nil || b.total.in.allow(n, now))
}

func (b *bandwidth) allowOut(n int, now time.Time) bool {
	if b == nil {
		return true
	}
	return b.out.allow(n, now) && (b.user == nil || b.user.out.allow(n, now)) &&
		(b.total == nil || b.total.out.allow(n, now))
}

func (b *bandwidth) waitIn(n int) {
	if b == nil {
		return
	}
	wait(b.in, n)
	if b.user != nil {
		wait(b.user.in, n)
	}
	if b.total != nil {
		wait(b.total.in, n)
	}
}

func (b *bandwidth) waitOut(n int) {
	if b == nil {
		return
	}
	wait(b.out, n)
	if b.user != nil {
		wait(b.user.out, n)
	}
	if b.total != nil {
		wait(b.total.out, n)
	}
}

func wait(l *byteLimiter, n int) {
	if l == nil {
		return
	}
	if r := l.lim.ReserveN(time.Now(), n); r.OK() {
		time.Sleep(r.Delay())
	}
}

// share returns a bandwidth for another socket of the same allocation (a
// TCP peer connection): same limiters, one more reference on the user.
func (b *bandwidth) share() *bandwidth {
	if b == nil {
		return nil
	}
	if b.user != nil {
		b.registry.ref(b.user)
	}
	return &bandwidth{in: b.in, out: b.out, user: b.user, total: b.total, registry: b.registry}
}

func (b *bandwidth) release() {
	if b == nil || b.user == nil {
		return
	}
	b.released.Do(func() { b.registry.unref(b.user) })
}

// userLimits shares one pair of limiters among a user's live sockets.
type userLimits struct {
	bps   int64
	total *userLimit // nil: no server-wide capacity
	mu    sync.Mutex
	m     map[string]*userLimit
}

type userLimit struct {
	id      string
	in, out *byteLimiter
	refs    int
}

func newUserLimits(bps int64) *userLimits {
	return &userLimits{bps: bps, m: map[string]*userLimit{}}
}

// forAllocation builds the limiters of a new relay socket, or nil when no
// limit is configured.
func (u *userLimits) forAllocation(userID string, allocBPS int64) *bandwidth {
	if allocBPS <= 0 && u.bps <= 0 && u.total == nil {
		return nil
	}
	b := &bandwidth{in: newByteLimiter(allocBPS), out: newByteLimiter(allocBPS), total: u.total, registry: u}
	if u.bps > 0 {
		u.mu.Lock()
		ul := u.m[userID]
		if ul == nil {
			ul = &userLimit{id: userID, in: newByteLimiter(u.bps), out: newByteLimiter(u.bps)}
			u.m[userID] = ul
		}
		ul.refs++
		u.mu.Unlock()
		b.user = ul
	}
	return b
}

func (u *userLimits) ref(ul *userLimit) {
	u.mu.Lock()
	ul.refs++
	u.mu.Unlock()
}

func (u *userLimits) unref(ul *userLimit) {
	u.mu.Lock()
	if ul.refs--; ul.refs <= 0 {
		delete(u.m, ul.id)
	}
	u.mu.Unlock()
}

// setCapacity caps the bytes per second all relay sockets together carry
// in each direction (coturn bps-capacity); 0 means no cap. Call it before
// the first allocation.
func (u *userLimits) setCapacity(bps int64) {
	if bps > 0 {
		u.total = &userLimit{id: "(server)", in: newByteLimiter(bps), out: newByteLimiter(bps)}
	}
}
