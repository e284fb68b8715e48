package relay

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

var tcpTransport = stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{6, 0, 0, 0}}

func channelNumber(n uint16) stun.RawAttribute {
	return stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{byte(n >> 8), byte(n), 0, 0}}
}

func peerAt(s string) peerAddr { return peerAddr{net.UDPAddrFromAddrPort(mustAddrPort(s))} }

// TestNoAllocationGets437: requests that need an allocation, from a client
// address without one, get 437 rather than silence.
func TestNoAllocationGets437(t *testing.T) {
	srv := newTestServer(t, nil)
	r := newRawClient(t, srv, "alice", "wonderland")
	for _, tc := range []struct {
		method stun.Method
		attrs  []stun.Setter
	}{
		{stun.MethodRefresh, []stun.Setter{lifetime(time.Minute)}},
		{stun.MethodCreatePermission, []stun.Setter{peerAt("127.0.0.1:9")}},
		{stun.MethodChannelBind, []stun.Setter{channelNumber(0x4000), peerAt("127.0.0.1:9")}},
	} {
		if code := errorCode(t, r.do(tc.method, tc.attrs...)); code != stun.CodeAllocMismatch {
			t.Errorf("%v without allocation: %d, want 437", tc.method, code)
		}
	}
}

// TestUnauthorizedGetsFreshNonce: a wrong password is answered 401 with a
// new nonce (not the client's own echoed back), and that nonce works.
func TestUnauthorizedGetsFreshNonce(t *testing.T) {
	srv := newTestServer(t, nil)
	bad := newRawClient(t, srv, "alice", "wrong")
	bad.realm = stun.NewRealm(srv.cfg.Realm)
	bad.nonce = stun.NewNonce("a-nonce-the-client-made-up")
	resp := bad.do(stun.MethodAllocate, udpTransport)
	if code := errorCode(t, resp); code != stun.CodeUnauthorized {
		t.Fatalf("wrong password: %d, want 401", code)
	}
	var fresh stun.Nonce
	if err := fresh.GetFrom(resp); err != nil {
		t.Fatal("401 without a nonce")
	}
	if string(fresh) == string(bad.nonce) {
		t.Fatal("401 echoed the client's nonce instead of issuing a fresh one")
	}
	good := newRawClient(t, srv, "alice", "wonderland")
	good.nonce, good.realm = fresh, bad.realm
	if code := errorCode(t, good.do(stun.MethodAllocate, udpTransport)); code != 0 {
		t.Fatalf("allocate with the fresh nonce: %d", code)
	}
}

// TestRESTAndStaticUsersCountApart: the REST user "alice" and the static
// user "alice" are different users for quotas.
func TestRESTAndStaticUsersCountApart(t *testing.T) {
	srv := newTestServer(t, func(c *Config) { c.UserQuota = 1 })
	if code := errorCode(t, newRawClient(t, srv, "alice", "wonderland").do(stun.MethodAllocate, udpTransport)); code != 0 {
		t.Fatalf("static alice: %d", code)
	}
	c := restCred(testSecret, "alice", time.Hour)
	if code := errorCode(t, newRawClient(t, srv, c.Username, c.Password).do(stun.MethodAllocate, udpTransport)); code != 0 {
		t.Fatalf("REST alice refused (%d): counted as the static user", code)
	}
	if code := errorCode(t, newRawClient(t, srv, "alice", "wonderland").do(stun.MethodAllocate, udpTransport)); code != stun.CodeAllocQuotaReached {
		t.Fatalf("second static alice: %d, want 486", code)
	}
}

// TestAllocateRetransmission: an Allocate whose answer was lost, sent
// again with the same transaction ID from the same address, gets the first
// answer again even though it filled the user's quota.
func TestAllocateRetransmission(t *testing.T) {
	srv := newTestServer(t, func(c *Config) { c.UserQuota = 1 })
	r := newRawClient(t, srv, "alice", "wonderland")
	r.do(stun.MethodBinding) // nothing learnt; prime the nonce below
	first := r.do(stun.MethodAllocate, udpTransport)
	if code := errorCode(t, first); code != 0 {
		t.Fatalf("allocate: %d", code)
	}
	// Rebuild the exact request of the first Allocate (same transaction ID).
	again := stun.MustBuild(&stun.Message{TransactionID: first.TransactionID}, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		udpTransport, stun.NewUsername(r.user), r.realm, r.nonce, stun.MessageIntegrity(r.key), stun.Fingerprint)
	resp, err := r.roundTrip(again)
	if err != nil {
		t.Fatal(err)
	}
	if code := errorCode(t, resp); code != 0 {
		t.Fatalf("retransmitted allocate: %d, want the first (successful) answer", code)
	}
	if string(resp.Raw) != string(first.Raw) {
		t.Fatal("retransmission answered differently from the first answer")
	}
	// A new transaction on the same 5-tuple is a different request: 437.
	if code := errorCode(t, r.do(stun.MethodAllocate, udpTransport)); code != stun.CodeAllocMismatch {
		t.Fatalf("second allocate on the same 5-tuple: %d, want 437", code)
	}
}

// TestQuotaReservationReleased: an Allocate pion refuses (unsupported
// transport) does not keep the quota slot it reserved.
func TestQuotaReservationReleased(t *testing.T) {
	srv := newTestServer(t, func(c *Config) { c.UserQuota = 1 })
	r := newRawClient(t, srv, "alice", "wonderland")
	badTransport := stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{99, 0, 0, 0}}
	if code := errorCode(t, r.do(stun.MethodAllocate, badTransport)); code == 0 {
		t.Fatal("allocate with transport 99 succeeded")
	}
	if code := errorCode(t, r.do(stun.MethodAllocate, udpTransport)); code != 0 {
		t.Fatalf("allocate after a refused one: %d (reservation leaked)", code)
	}
}

// TestQuotaReservationTable: reservations count against quotas until
// confirmed or released.
func TestQuotaReservationTable(t *testing.T) {
	tb := newAllocTable()
	now := time.Now()
	q := quotas{user: 1}
	a := tupleKey{mustAddrPort("192.0.2.1:1000"), mustAddrPort("127.0.0.1:3478")}
	b := tupleKey{mustAddrPort("192.0.2.1:1001"), mustAddrPort("127.0.0.1:3479")}
	src := a.src.Addr()
	if why := tb.reserve(a, "u", src, [12]byte{1}, q, now); why != "" {
		t.Fatalf("first reservation: %s", why)
	}
	if why := tb.reserve(b, "u", src, [12]byte{2}, q, now); why != "user" {
		t.Fatalf("racing reservation on another socket: %q, want user quota", why)
	}
	tb.release(a)
	if why := tb.reserve(b, "u", src, [12]byte{2}, q, now); why != "" {
		t.Fatalf("after release: %s", why)
	}
	tb.add(b, "u", src, false, now)
	if why := tb.reserve(a, "u", src, [12]byte{3}, q, now); why != "user" {
		t.Fatalf("after confirmation: %q, want user quota", why)
	}
	tb.remove(b)
	if why := tb.reserve(a, "u", src, [12]byte{3}, q, now); why != "" {
		t.Fatalf("after delete: %s", why)
	}
}

// TestPermissionAndChannelBounds: past MaxPermissions peers or MaxChannels
// channels an allocation gets 508; refreshing existing ones still works.
func TestPermissionAndChannelBounds(t *testing.T) {
	srv := newTestServer(t, func(c *Config) { c.MaxPermissions, c.MaxChannels = 3, 2 })
	r := newRawClient(t, srv, "alice", "wonderland")
	if code := errorCode(t, r.do(stun.MethodAllocate, udpTransport)); code != 0 {
		t.Fatal(code)
	}
	for i, want := range []stun.ErrorCode{0, 0, 0, stun.CodeInsufficientCapacity} {
		p := peerAt("127.0.0." + string(rune('1'+i)) + ":9")
		if code := errorCode(t, r.do(stun.MethodCreatePermission, p)); code != want {
			t.Fatalf("permission %d: %d, want %d", i+1, code, want)
		}
	}
	if code := errorCode(t, r.do(stun.MethodCreatePermission, peerAt("127.0.0.1:9"))); code != 0 {
		t.Fatalf("refreshing an existing permission: %d", code)
	}
	for i, want := range []stun.ErrorCode{0, 0, stun.CodeInsufficientCapacity} {
		code := errorCode(t, r.do(stun.MethodChannelBind, channelNumber(0x4000+uint16(i)), peerAt("127.0.0.1:"+string(rune('1'+i)))))
		if code != want {
			t.Fatalf("channel %d: %d, want %d", i+1, code, want)
		}
	}
	if code := errorCode(t, r.do(stun.MethodChannelBind, channelNumber(0x4000), peerAt("127.0.0.1:1"))); code != 0 {
		t.Fatalf("refreshing a channel: %d", code)
	}
}

// TestConnectRefusedOutsideTCPAllocations: Connect over UDP, or on a UDP
// allocation, is answered 403 at once (pion would dial inside the UDP
// listener's read loop); over TCP on a TCP allocation, a denied peer gets
// 403 too (not 447).
func TestConnectRefusedOutsideTCPAllocations(t *testing.T) {
	srv := newTestServer(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := peerAt(ln.Addr().String())

	u := newRawClient(t, srv, "alice", "wonderland")
	if code := errorCode(t, u.do(stun.MethodAllocate, udpTransport)); code != 0 {
		t.Fatal(code)
	}
	if code := errorCode(t, u.do(stun.MethodConnect, peer)); code != stun.CodeForbidden {
		t.Fatalf("Connect over UDP: %d, want 403", code)
	}

	c := newRawStreamClient(t, srv, "alice", "wonderland")
	if code := errorCode(t, c.do(stun.MethodAllocate, udpTransport)); code != 0 {
		t.Fatal(code)
	}
	if code := errorCode(t, c.do(stun.MethodConnect, peer)); code != stun.CodeForbidden {
		t.Fatalf("Connect over TCP on a UDP allocation: %d, want 403", code)
	}

	tc := newRawStreamClient(t, srv, "alice", "wonderland")
	if code := errorCode(t, tc.do(stun.MethodAllocate, tcpTransport)); code != 0 {
		t.Fatal(code)
	}
	own := peerAt(srv.Addr("tcp").String()) // turnd's own listener: denied
	if code := errorCode(t, tc.do(stun.MethodConnect, own)); code != stun.CodeForbidden {
		t.Fatalf("Connect to a denied peer: %d, want 403", code)
	}
	if code := errorCode(t, tc.do(stun.MethodConnect, peer)); code != 0 {
		t.Fatalf("Connect over TCP on a TCP allocation: %d, want success", code)
	}
}

// TestAuthHookOnReadingGoroutine: pion calls the auth hook on the
// goroutine that read the request (the hand-off depends on it).
func TestAuthHookOnReadingGoroutine(t *testing.T) {
	srv := newTestServer(t, func(c *Config) { c.checkHookGoroutine = true })
	for _, network := range []string{"udp", "tcp"} {
		cl := pionClient(t, srv, network, "alice", "wonderland")
		rc, err := cl.Allocate()
		if err != nil {
			t.Fatalf("%s: %v", network, err)
		}
		if err := cl.CreatePermission(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); err != nil {
			t.Fatalf("%s: %v", network, err)
		}
		rc.Close()
	}
	srv.stash.mu.Lock()
	takes, misses := srv.stash.takes, srv.stash.misses
	srv.stash.mu.Unlock()
	if takes < 4 || misses != 0 {
		t.Fatalf("hook calls %d, from another goroutine %d; want >= 4 and 0", takes, misses)
	}
}

// TestRateLimitTableEvictsLeastRecent: a full source table forgets its
// least recently seen source; newcomers each get a bucket of their own.
func TestRateLimitTableEvictsLeastRecent(t *testing.T) {
	l := newIPLimiter(1, 1)
	l.max = 3
	now := time.Unix(1000, 0)
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}) }
	for i := 1; i <= 3; i++ {
		if !l.allow(ip(i), now) {
			t.Fatal("first token refused")
		}
	}
	l.allow(ip(1), now) // 1 is now the most recent; 2 the least
	for i := 10; i < 20; i++ {
		if !l.allow(ip(i), now) {
			t.Fatalf("newcomer %d refused: sharing a bucket", i)
		}
	}
	if len(l.m) != 3 || l.lru.Len() != 3 {
		t.Fatalf("table holds %d/%d entries, want 3", len(l.m), l.lru.Len())
	}
}

// TestIPv6SourcesPerPrefix: rotating addresses inside one /64 does not
// escape the per-source rate limit.
func TestIPv6SourcesPerPrefix(t *testing.T) {
	s := newFuzzServer(t)
	s.cfg.IPv6SourcePrefix = 64
	s.unauth = newIPLimiter(1, 3)
	fr := &front{s: s, transport: "udp", local: &net.UDPAddr{IP: net.IPv6loopback, Port: 3478},
		reply: func([]byte, net.Addr) error { return nil }}
	allowed := 0
	for i := 1; i <= 200; i++ {
		src := &net.UDPAddr{IP: netip.MustParseAddr("2001:db8:1:2::").Next().AsSlice(), Port: 5000}
		src.IP[15] = byte(i)
		src.IP[14] = byte(i * 7)
		req := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), udpTransport)
		if _, ok := fr.pass(req.Raw, src); ok {
			allowed++
		}
	}
	if allowed > 3 {
		t.Fatalf("%d of 200 requests from one /64 passed, want the burst of 3", allowed)
	}
	if s.sourceKey(netip.MustParseAddr("2001:db8:1:2:aaaa::1")) != s.sourceKey(netip.MustParseAddr("2001:db8:1:2::ffff")) ||
		s.sourceKey(netip.MustParseAddr("2001:db8:1:3::1")) == s.sourceKey(netip.MustParseAddr("2001:db8:1:2::1")) {
		t.Fatal("source keys do not follow the /64")
	}
}
