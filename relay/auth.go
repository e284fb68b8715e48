package relay

import (
	"bytes"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/rtcsuite/rtcsuite/internal/turnrest"
)

// Auth failure reasons; they label the auth-failure metric.
const (
	authUnknownUser  = "unknown_user"
	authBadPassword  = "bad_password"
	authExpired      = "expired"
	authSessionLimit = "session_limit"
	authMalformed    = "malformed"
	authWrongUser    = "wrong_credentials"
)

// credentials is one immutable snapshot of what authenticates; reload
// swaps the whole snapshot.
type credentials struct {
	realm      string
	users      map[string][]byte
	secrets    [][]byte
	maxSession time.Duration
}

// Quota and ownership identities keep the two credential kinds apart: the
// REST user "alice" and the static user "alice" are different people.
func staticUserID(name string) string { return "static:" + name }
func restUserID(name string) string   { return "rest:" + name }

// verdict is what authenticate learned about one request.
type verdict struct {
	userID  string // quota and ownership identity: the REST user part, or the static name
	key     []byte
	rest    bool
	expires time.Time // REST credential expiry
	reason  string    // non-empty when the request must be refused
}

// authenticate checks a request's MESSAGE-INTEGRITY against every key the
// username could hold. pion's auth hook returns a single key and checks it
// itself, which cannot tell which of several rotating secrets signed a
// request, and answers a wrong password with 400; doing the check here first
// gives rotation and the 401 RFC 8489 section 9.2.4 asks for.
func (c *credentials) authenticate(msg *stun.Message, username, realm string) verdict {
	if realm != c.realm {
		return verdict{reason: authUnknownUser}
	}
	if key, ok := c.users[username]; ok {
		if stun.MessageIntegrity(key).Check(msg) == nil {
			return verdict{userID: staticUserID(username), key: key}
		}
		if len(c.secrets) == 0 {
			return verdict{reason: authBadPassword}
		}
	}
	if len(c.secrets) == 0 {
		return verdict{reason: authUnknownUser}
	}
	expiry, user, err := turnrest.Parse(username)
	if err != nil {
		if _, static := c.users[username]; static {
			return verdict{reason: authBadPassword}
		}
		return verdict{reason: authUnknownUser}
	}
	for _, key := range turnrest.Keys(c.secrets, username, realm) {
		if stun.MessageIntegrity(key).Check(msg) == nil {
			if user == "" {
				user = username // bare-timestamp form: the whole name identifies it
			}
			return verdict{userID: restUserID(user), key: key, rest: true, expires: expiry}
		}
	}
	return verdict{reason: authBadPassword}
}

// authStash hands the verdict of the front door to pion's auth hook. pion
// calls the hook on the goroutine that read the request, before it reads
// the next one, so each reader has at most one entry in flight: the front
// door takes back its previous entry at its next packet. Entries are keyed
// by client address; the transaction ID is recorded but pion v5.1.1's hook
// cannot see the message, so it cannot be compared.
type authStash struct {
	mu sync.Mutex
	m  map[netip.AddrPort]stashEntry

	// checkGoroutine (tests) records the putting goroutine and counts hook
	// calls from any other goroutine in misses.
	checkGoroutine bool
	takes, misses  int
}

// maxStashEntries bounds the hand-off table; with one entry per reader in
// flight it is never reached in practice.
const maxStashEntries = 65536

type stashEntry struct {
	username string
	txid     [stun.TransactionIDSize]byte
	userID   string
	key      []byte
	at       time.Time
	gid      uint64
}

func newAuthStash() *authStash { return &authStash{m: map[netip.AddrPort]stashEntry{}} }

func (a *authStash) put(src netip.AddrPort, username string, txid [stun.TransactionIDSize]byte, v verdict, now time.Time) bool {
	e := stashEntry{username: username, txid: txid, userID: v.userID, key: v.key, at: now}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.checkGoroutine {
		e.gid = goroutineID()
	}
	if _, ok := a.m[src]; !ok && len(a.m) >= maxStashEntries {
		return false
	}
	a.m[src] = e
	return true
}

// forget drops src's entry if the hook never took it (pion refused the
// request before asking, e.g. a stale nonce).
func (a *authStash) forget(src netip.AddrPort, txid [stun.TransactionIDSize]byte) {
	a.mu.Lock()
	if e, ok := a.m[src]; ok && e.txid == txid {
		delete(a.m, src)
	}
	a.mu.Unlock()
}

func (a *authStash) take(src netip.AddrPort, username string) (stashEntry, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.m[src]
	if !ok || e.username != username {
		return stashEntry{}, false
	}
	delete(a.m, src)
	if a.checkGoroutine {
		a.takes++
		if goroutineID() != e.gid {
			a.misses++
		}
	}
	return e, true
}

func (a *authStash) sweep(olderThan time.Time) {
	a.mu.Lock()
	for k, e := range a.m {
		if e.at.Before(olderThan) {
			delete(a.m, k)
		}
	}
	a.mu.Unlock()
}

// goroutineID parses the current goroutine's number from its stack header
// ("goroutine 42 [running]:"); tests only.
func goroutineID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	var id uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + uint64(c-'0')
	}
	return id
}

// authHandler is the hook pion calls; it only accepts what the front door
// already verified for this client address and username.
func (s *Server) authHandler(ra *turn.RequestAttributes) (string, []byte, bool) {
	e, ok := s.stash.take(unmapAP(toAddrPort(ra.SrcAddr)), ra.Username)
	if !ok {
		return "", nil, false
	}
	return e.userID, e.key, true
}
