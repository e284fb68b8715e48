package relay

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// allocTable mirrors pion's allocations from its lifecycle events: who owns
// each one, from which source, since when. pion keeps one allocation manager
// per socket, so quotas across sockets, the REST session limit and draining
// need this server-wide view.
type allocTable struct {
	mu      sync.Mutex
	byTuple map[tupleKey]allocInfo
	byUser  map[string]int
	bySrc   map[netip.Addr]int
	total   int
	created int64
	changed chan struct{} // closed and replaced on every change, for drain waits
}

type tupleKey struct{ src, dst string }

type allocInfo struct {
	userID  string
	src     netip.Addr
	created time.Time
}

func newAllocTable() *allocTable {
	return &allocTable{
		byTuple: map[tupleKey]allocInfo{},
		byUser:  map[string]int{},
		bySrc:   map[netip.Addr]int{},
		changed: make(chan struct{}),
	}
}

func addrIP(a net.Addr) netip.Addr {
	return toAddrPort(a).Addr().Unmap()
}

func (t *allocTable) add(src, dst net.Addr, userID string, now time.Time) {
	k := tupleKey{src.String(), dst.String()}
	ip := addrIP(src)
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.byTuple[k]; dup {
		return
	}
	t.byTuple[k] = allocInfo{userID: userID, src: ip, created: now}
	t.byUser[userID]++
	t.bySrc[ip]++
	t.total++
	t.created++
	t.notifyLocked()
}

func (t *allocTable) remove(src, dst net.Addr) {
	k := tupleKey{src.String(), dst.String()}
	t.mu.Lock()
	defer t.mu.Unlock()
	info, ok := t.byTuple[k]
	if !ok {
		return
	}
	delete(t.byTuple, k)
	if t.byUser[info.userID]--; t.byUser[info.userID] <= 0 {
		delete(t.byUser, info.userID)
	}
	if t.bySrc[info.src]--; t.bySrc[info.src] <= 0 {
		delete(t.bySrc, info.src)
	}
	t.total--
	t.notifyLocked()
}

func (t *allocTable) notifyLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// lookup returns the allocation on a five-tuple, if any.
func (t *allocTable) lookup(src, dst net.Addr) (allocInfo, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	info, ok := t.byTuple[tupleKey{src.String(), dst.String()}]
	return info, ok
}

// quotaExceeded names the quota a new allocation would exceed, or "".
func (t *allocTable) quotaExceeded(userID string, src netip.Addr, userQ, srcQ, totalQ int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case totalQ > 0 && t.total >= totalQ:
		return "total"
	case userQ > 0 && t.byUser[userID] >= userQ:
		return "user"
	case srcQ > 0 && t.bySrc[src] >= srcQ:
		return "source"
	}
	return ""
}

// snapshot returns the live count, the number ever created, and a channel
// closed at the next change.
func (t *allocTable) snapshot() (active int, created int64, changed <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total, t.created, t.changed
}
