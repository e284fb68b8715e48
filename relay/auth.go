package relay

import (
	"net"
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
			return verdict{userID: username, key: key}
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
			return verdict{userID: user, key: key, rest: true, expires: expiry}
		}
	}
	return verdict{reason: authBadPassword}
}

// authStash hands the verdict of the socket wrapper to pion's auth hook.
// Both run on the goroutine that read the packet, one after the other, so
// an entry lives for microseconds; the sweep only guards against requests
// pion rejects before asking (a stale nonce).
type authStash struct {
	mu sync.Mutex
	m  map[stashKey]stashEntry
}

type stashKey struct {
	src, username string
}

type stashEntry struct {
	userID string
	key    []byte
	at     time.Time
}

func newAuthStash() *authStash { return &authStash{m: map[stashKey]stashEntry{}} }

func (a *authStash) put(src net.Addr, username string, v verdict, now time.Time) {
	a.mu.Lock()
	a.m[stashKey{src.String(), username}] = stashEntry{userID: v.userID, key: v.key, at: now}
	a.mu.Unlock()
}

func (a *authStash) take(src net.Addr, username string) (stashEntry, bool) {
	k := stashKey{src.String(), username}
	a.mu.Lock()
	e, ok := a.m[k]
	delete(a.m, k)
	a.mu.Unlock()
	return e, ok
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

// authHandler is the hook pion calls; it only accepts what the socket
// wrapper already verified for this source and username.
func (s *Server) authHandler(ra *turn.RequestAttributes) (string, []byte, bool) {
	e, ok := s.stash.take(ra.SrcAddr, ra.Username)
	if !ok {
		return "", nil, false
	}
	return e.userID, e.key, true
}
