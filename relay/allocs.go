package relay

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v4"
)

// allocTable mirrors pion's allocations from its lifecycle events: who owns
// each one, from which source, since when. pion keeps one allocation manager
// per socket, so quotas across sockets, the REST session limit and draining
// need this server-wide view.
//
// Quotas count reservations too: the front door reserves a slot when it
// passes an authenticated Allocate, pion's creation event confirms it, and
// the front door releases it once pion has answered without creating one.
// Two Allocates racing on different sockets therefore cannot both take
// the last slot.
type allocTable struct {
	mu       sync.Mutex
	byTuple  map[tupleKey]*allocInfo
	reserved map[tupleKey]reservation
	bySrcRes map[netip.AddrPort]int // reservations per client address, for pion's quota hook
	byUser   map[string]int
	bySrc    map[netip.Addr]int
	total    int
	created  int64
	changed  chan struct{} // closed and replaced on every change, for drain waits
	// permTTL and chanTTL are the lifetimes pion applies (set once by New;
	// zero means the RFC defaults).
	permTTL, chanTTL time.Duration
}

// tupleKey names an allocation: the client's address and the server
// address it talks to (the transport is implied by the socket).
type tupleKey struct{ src, dst netip.AddrPort }

func tupleOf(src, dst net.Addr) tupleKey {
	return tupleKey{unmapAP(toAddrPort(src)), unmapAP(toAddrPort(dst))}
}

func unmapAP(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

type allocInfo struct {
	userID  string
	src     netip.Addr // source key (IPv6 per prefix)
	created time.Time
	tcp     bool // an RFC 6062 TCP allocation

	// The Allocate that created it and pion's success answer, so a
	// retransmission gets the same answer again.
	txid   [stun.TransactionIDSize]byte
	answer []byte

	// Permissions and channels the client asked for, with their expiry,
	// to bound them per allocation (pion keeps no limit).
	perms map[netip.Addr]time.Time
	chans map[uint16]time.Time
}

type reservation struct {
	userID string
	src    netip.Addr
	txid   [stun.TransactionIDSize]byte
	at     time.Time
}

func newAllocTable() *allocTable {
	return &allocTable{
		byTuple:  map[tupleKey]*allocInfo{},
		reserved: map[tupleKey]reservation{},
		bySrcRes: map[netip.AddrPort]int{},
		byUser:   map[string]int{},
		bySrc:    map[netip.Addr]int{},
		changed:  make(chan struct{}),
	}
}

func addrIP(a net.Addr) netip.Addr {
	return toAddrPort(a).Addr().Unmap()
}

// reserve takes a quota slot for an Allocate from k, or names the quota
// it would exceed. A reservation for k replaces an older one.
func (t *allocTable) reserve(k tupleKey, userID string, src netip.Addr, txid [stun.TransactionIDSize]byte, q quotas, now time.Time) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.releaseLocked(k)
	switch {
	case q.total > 0 && t.total >= q.total:
		return "total"
	case q.user > 0 && t.byUser[userID] >= q.user:
		return "user"
	case q.source > 0 && t.bySrc[src] >= q.source:
		return "source"
	}
	t.reserved[k] = reservation{userID: userID, src: src, txid: txid, at: now}
	t.bySrcRes[k.src]++
	t.countLocked(userID, src, +1)
	return ""
}

type quotas struct{ user, source, total int }

// release drops k's unconfirmed reservation, if any.
func (t *allocTable) release(k tupleKey) {
	t.mu.Lock()
	t.releaseLocked(k)
	t.mu.Unlock()
}

func (t *allocTable) releaseLocked(k tupleKey) {
	r, ok := t.reserved[k]
	if !ok {
		return
	}
	t.dropReservationLocked(k)
	t.countLocked(r.userID, r.src, -1)
}

func (t *allocTable) dropReservationLocked(k tupleKey) {
	delete(t.reserved, k)
	if t.bySrcRes[k.src]--; t.bySrcRes[k.src] <= 0 {
		delete(t.bySrcRes, k.src)
	}
}

// hasReservation reports whether a client address holds a reservation
// (pion's quota hook sees only the source).
func (t *allocTable) hasReservation(src netip.AddrPort) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.bySrcRes[unmapAP(src)] > 0
}

// sweepReservations releases reservations older than cutoff (a reader that
// never read again after passing an Allocate).
func (t *allocTable) sweepReservations(cutoff time.Time) {
	t.mu.Lock()
	for k, r := range t.reserved {
		if r.at.Before(cutoff) {
			t.releaseLocked(k)
		}
	}
	t.mu.Unlock()
}

func (t *allocTable) countLocked(userID string, src netip.Addr, d int) {
	if t.byUser[userID] += d; t.byUser[userID] <= 0 {
		delete(t.byUser, userID)
	}
	if t.bySrc[src] += d; t.bySrc[src] <= 0 {
		delete(t.bySrc, src)
	}
	t.total += d
	t.notifyLocked()
}

// add records a created allocation, confirming its reservation.
func (t *allocTable) add(k tupleKey, userID string, src netip.Addr, tcp bool, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.byTuple[k]; dup {
		return
	}
	info := &allocInfo{userID: userID, src: src, created: now, tcp: tcp}
	if r, ok := t.reserved[k]; ok {
		t.dropReservationLocked(k)
		info.txid = r.txid
		// The slot was counted under the front door's identity.
		info.userID, info.src = r.userID, r.src
	} else {
		t.countLocked(userID, src, +1)
	}
	t.byTuple[k] = info
	t.created++
	t.notifyLocked()
}

func (t *allocTable) remove(k tupleKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	info, ok := t.byTuple[k]
	if !ok {
		return
	}
	delete(t.byTuple, k)
	t.countLocked(info.userID, info.src, -1)
}

// setAnswer keeps pion's success answer to the Allocate txid on k.
func (t *allocTable) setAnswer(k tupleKey, txid []byte, answer []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if info, ok := t.byTuple[k]; ok && string(info.txid[:]) == string(txid) && info.answer == nil {
		info.answer = append([]byte(nil), answer...)
	}
}

func (t *allocTable) notifyLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// lookup returns a copy of the allocation on a five-tuple, if any.
func (t *allocTable) lookup(k tupleKey) (allocInfo, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	info, ok := t.byTuple[k]
	if !ok {
		return allocInfo{}, false
	}
	return *info, true
}

// has reports whether k has an allocation (every stream read asks).
func (t *allocTable) has(k tupleKey) bool {
	t.mu.Lock()
	_, ok := t.byTuple[k]
	t.mu.Unlock()
	return ok
}

// Default permission and channel lifetimes (RFC 8656); the server sets
// Config.PermissionLifetime and ChannelLifetime in pion's config and in
// allocTable.permTTL/chanTTL, so this mirror stays exact.
const (
	permissionLifetime = 5 * time.Minute
	channelLifetime    = 10 * time.Minute
)

// ttls returns the permission and channel lifetimes pion applies.
func (t *allocTable) ttls() (perm, ch time.Duration) {
	perm, ch = t.permTTL, t.chanTTL
	if perm <= 0 {
		perm = permissionLifetime
	}
	if ch <= 0 {
		ch = channelLifetime
	}
	return perm, ch
}

// admitPeers records that k's client asks for permissions to ips and, for
// a ChannelBind, channel ch (0: none). It refuses, changing nothing, when
// that would take the allocation past maxPerms live permissions or
// maxChans live channels; expired entries make room first.
func (t *allocTable) admitPeers(k tupleKey, ips []netip.Addr, ch uint16, maxPerms, maxChans int, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	info, ok := t.byTuple[k]
	if !ok {
		return true // pion answers 437 itself
	}
	if info.perms == nil {
		info.perms = map[netip.Addr]time.Time{}
		info.chans = map[uint16]time.Time{}
	}
	newPerms := 0
	for _, ip := range ips {
		if exp, ok := info.perms[ip]; !ok || now.After(exp) {
			newPerms++
		}
	}
	if maxPerms > 0 && newPerms > 0 && len(info.perms)+newPerms > maxPerms {
		expire(info.perms, now)
	}
	newChan := false
	if ch != 0 {
		if exp, ok := info.chans[ch]; !ok || now.After(exp) {
			newChan = true
			if maxChans > 0 && len(info.chans)+1 > maxChans {
				expire(info.chans, now)
			}
		}
	}
	if (maxPerms > 0 && len(info.perms)+newPerms > maxPerms) || (newChan && maxChans > 0 && len(info.chans)+1 > maxChans) {
		return false
	}
	permTTL, chanTTL := t.ttls()
	for _, ip := range ips {
		info.perms[ip] = now.Add(permTTL)
	}
	if ch != 0 {
		info.chans[ch] = now.Add(chanTTL)
	}
	return true
}

func expire[K comparable](m map[K]time.Time, now time.Time) {
	for k, exp := range m {
		if now.After(exp) {
			delete(m, k)
		}
	}
}

// snapshot returns the live count, the number ever created, and a channel
// closed at the next change.
func (t *allocTable) snapshot() (active int, created int64, changed <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byTuple), t.created, t.changed
}
