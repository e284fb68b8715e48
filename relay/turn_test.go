package relay

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// Raw TURN attributes for hand-built requests.
var udpTransport = stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}

func lifetime(d time.Duration) stun.RawAttribute {
	v := make([]byte, 4)
	binary.BigEndian.PutUint32(v, uint32(d/time.Second))
	return stun.RawAttribute{Type: stun.AttrLifetime, Value: v}
}

type peerAddr struct{ addr *net.UDPAddr }

func (p peerAddr) AddTo(m *stun.Message) error {
	return stun.XORMappedAddress{IP: p.addr.IP, Port: p.addr.Port}.AddToAs(m, stun.AttrXORPeerAddress)
}

func relayedAddr(t *testing.T, m *stun.Message) *net.UDPAddr {
	t.Helper()
	var a stun.XORMappedAddress
	if err := a.GetFromAs(m, stun.AttrXORRelayedAddress); err != nil {
		t.Fatalf("no XOR-RELAYED-ADDRESS in %v", m)
	}
	return &net.UDPAddr{IP: a.IP, Port: a.Port}
}

// echoPeer is a UDP peer that answers every datagram with "echo:"+payload.
func echoPeer(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(mustAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteTo(append([]byte("echo:"), buf[:n]...), from)
		}
	}()
	return c
}

// relayRoundTrips sends n messages through relayConn to peer and expects
// each echo back, with retransmission for loopback UDP loss.
func relayRoundTrips(t *testing.T, relayConn net.PacketConn, peer net.Addr, n int) {
	t.Helper()
	buf := make([]byte, 2048)
	for i := 0; i < n; i++ {
		msg := []byte(fmt.Sprintf("msg-%d", i))
		got := false
		for try := 0; try < 10 && !got; try++ {
			if _, err := relayConn.WriteTo(msg, peer); err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
			relayConn.SetReadDeadline(time.Now().Add(time.Second))
			for {
				k, from, err := relayConn.ReadFrom(buf)
				if err != nil {
					break
				}
				if from.String() == peer.String() && bytes.Equal(buf[:k], append([]byte("echo:"), msg...)) {
					got = true
					break
				}
			}
		}
		if !got {
			t.Fatalf("message %d never came back through the relay", i)
		}
	}
	relayConn.SetReadDeadline(time.Time{})
}

func TestRelayUDPTCPTLS(t *testing.T) {
	cert := selfSigned(t)
	srv := newTestServer(t, func(c *Config) {
		c.Listeners = append(c.Listeners, Listener{Network: "tls", Addr: "127.0.0.1:0"})
		c.Certificate = cert
	})
	peer := echoPeer(t, "127.0.0.1:0")
	for _, network := range []string{"udp", "tcp", "tls"} {
		t.Run(network, func(t *testing.T) {
			cl := pionClient(t, srv, network, "alice", "wonderland")
			relayConn, err := cl.Allocate()
			if err != nil {
				t.Fatalf("allocate: %v", err)
			}
			defer relayConn.Close()
			// Enough messages that pion's client moves from Send
			// indications to a bound channel while we relay.
			relayRoundTrips(t, relayConn, peer.LocalAddr(), 20)
		})
	}
	if got := srv.Stats().TotalAllocations; got < 3 {
		t.Fatalf("server saw %d allocations, want 3", got)
	}
	// The label is the client's transport, not the relay's (always UDP here).
	for _, network := range []string{"udp", "tcp", "tls"} {
		key := fmt.Sprintf("turnd_allocations_created_total{transport=%q}", network)
		if got := metricValue(t, srv, key); got != 1 {
			t.Errorf("%s = %v, want 1", key, got)
		}
	}
}

func TestRelayIPv6(t *testing.T) {
	if !HostHasIPv6() {
		t.Skip("no IPv6 loopback on this host")
	}
	srv := newTestServer(t, func(c *Config) {
		c.Listeners = []Listener{{Network: "udp", Addr: "[::1]:0"}, {Network: "tcp", Addr: "[::1]:0"}}
	})
	peer := echoPeer(t, "[::1]:0")
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			cl := pionClient(t, srv, network, "alice", "wonderland")
			relayConn, err := cl.Allocate()
			if err != nil {
				t.Fatalf("allocate: %v", err)
			}
			defer relayConn.Close()
			if ip := relayConn.LocalAddr().(*net.UDPAddr).IP; ip.To4() != nil {
				t.Fatalf("relay address %v is not IPv6", ip)
			}
			relayRoundTrips(t, relayConn, peer.LocalAddr(), 5)
		})
	}
}

func TestTCPRelayRFC6062(t *testing.T) {
	srv := newTestServer(t, func(c *Config) {
		c.Peers.Denied = append(c.Peers.Denied, netip.MustParsePrefix("127.0.0.2/32"))
	})
	// A TCP peer that echoes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 1024)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					_, _ = c.Write(buf[:n])
				}
			}()
		}
	}()
	denied, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { denied.Close() })

	cl := pionClient(t, srv, "tcp", "alice", "wonderland")
	alloc, err := cl.AllocateTCP()
	if err != nil {
		t.Fatalf("allocate tcp: %v", err)
	}
	defer alloc.Close()
	conn, err := alloc.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("connect to allowed peer: %v", err)
	}
	defer conn.Close()
	want := []byte("hello over an RFC 6062 relay")
	if _, err := conn.Write(want); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(conn, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("echo through TCP relay: %q, %v", got, err)
	}

	if c, err := alloc.Dial("tcp", denied.Addr().String()); err == nil {
		c.Close()
		t.Fatal("TCP Connect to a denied peer succeeded")
	}
}

func TestAuthErrors(t *testing.T) {
	srv := newTestServer(t, nil)
	t.Run("wrong password gives 401", func(t *testing.T) {
		r := newRawClient(t, srv, "alice", "not-the-password")
		if code := errorCode(t, r.do(stun.MethodAllocate, udpTransport)); code != stun.CodeUnauthorized {
			t.Fatalf("code %d, want 401", code)
		}
	})
	t.Run("unknown user gives 401", func(t *testing.T) {
		r := newRawClient(t, srv, "mallory", "x")
		if code := errorCode(t, r.do(stun.MethodAllocate, udpTransport)); code != stun.CodeUnauthorized {
			t.Fatalf("code %d, want 401", code)
		}
	})
	t.Run("REST credential from an unknown secret gives 401", func(t *testing.T) {
		c := restCred([]byte("other"), "bob", time.Hour)
		r := newRawClient(t, srv, c.Username, c.Password)
		if code := errorCode(t, r.do(stun.MethodAllocate, udpTransport)); code != stun.CodeUnauthorized {
			t.Fatalf("code %d, want 401", code)
		}
	})
	t.Run("expired REST credential cannot allocate", func(t *testing.T) {
		c := restCred(testSecret, "bob", -time.Minute)
		r := newRawClient(t, srv, c.Username, c.Password)
		if code := errorCode(t, r.do(stun.MethodAllocate, udpTransport)); code != stun.CodeUnauthorized {
			t.Fatalf("code %d, want 401", code)
		}
	})
	if got := metricValue(t, srv, "turnd_auth_failures_total"); got < 4 {
		t.Fatalf("auth failures counted %v, want >= 4", got)
	}
}

func TestRESTExpiryAndSessionLimit(t *testing.T) {
	clock := newTestClock(time.Now())
	srv := newTestServer(t, func(c *Config) {
		c.MaxSessionLength = time.Hour
		c.now = clock.Now
	})

	c := restCred(testSecret, "carol", time.Minute)
	r := newRawClient(t, srv, c.Username, c.Password)
	if code := errorCode(t, r.do(stun.MethodAllocate, udpTransport)); code != 0 {
		t.Fatalf("allocate with a valid REST credential: %d", code)
	}
	// The credential ages past its expiry: the live allocation refreshes.
	clock.Advance(10 * time.Minute)
	if code := errorCode(t, r.do(stun.MethodRefresh, lifetime(10*time.Minute))); code != 0 {
		t.Fatalf("refresh after credential expiry: %d, want success", code)
	}
	// Past the maximum session length it may not.
	clock.Advance(2 * time.Hour)
	if code := errorCode(t, r.do(stun.MethodRefresh, lifetime(10*time.Minute))); code != stun.CodeUnauthorized {
		t.Fatalf("refresh past session limit: %d, want 401", code)
	}
	// And the expired credential never creates a new allocation.
	r2 := newRawClient(t, srv, c.Username, c.Password)
	if code := errorCode(t, r2.do(stun.MethodAllocate, udpTransport)); code != stun.CodeUnauthorized {
		t.Fatalf("allocate with expired credential: %d, want 401", code)
	}
}

func TestSecretRotationAndReload(t *testing.T) {
	oldSecret, newSecret := []byte("old-secret"), []byte("new-secret")
	var cfg Config
	srv := newTestServer(t, func(c *Config) {
		c.Secrets = [][]byte{newSecret, oldSecret}
		cfg = *c
	})
	peer := echoPeer(t, "127.0.0.1:0")
	for _, sec := range [][]byte{oldSecret, newSecret} {
		c := restCred(sec, "dave", time.Hour)
		r := newRawClient(t, srv, c.Username, c.Password)
		if code := errorCode(t, r.do(stun.MethodAllocate, udpTransport)); code != 0 {
			t.Fatalf("allocate with secret %q: %d", sec, code)
		}
	}
	// A live allocation made with the old secret keeps relaying after the
	// old secret is removed by a reload.
	c := restCred(oldSecret, "erin", time.Hour)
	cl := pionClient(t, srv, "udp", c.Username, c.Password)
	relayConn, err := cl.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relayConn.Close()
	relayRoundTrips(t, relayConn, peer.LocalAddr(), 2)

	cfg.Secrets = [][]byte{newSecret}
	if err := srv.Reload(cfg); err != nil {
		t.Fatalf("reload: %v", err)
	}
	relayRoundTrips(t, relayConn, peer.LocalAddr(), 2)
	if srv.Stats().ActiveAllocations != 3 {
		t.Fatalf("reload changed allocations: %+v", srv.Stats())
	}
	oc := restCred(oldSecret, "frank", time.Hour)
	r := newRawClient(t, srv, oc.Username, oc.Password)
	if code := errorCode(t, r.do(stun.MethodAllocate, udpTransport)); code != stun.CodeUnauthorized {
		t.Fatalf("old secret after reload: %d, want 401", code)
	}
	nc := restCred(newSecret, "frank", time.Hour)
	r = newRawClient(t, srv, nc.Username, nc.Password)
	if code := errorCode(t, r.do(stun.MethodAllocate, udpTransport)); code != 0 {
		t.Fatalf("new secret after reload: %d", code)
	}
}

func TestQuotas(t *testing.T) {
	t.Run("user quota 486", func(t *testing.T) {
		srv := newTestServer(t, func(c *Config) { c.UserQuota = 1 })
		// Two REST credentials of the same user (different expiry) count together.
		a := restCred(testSecret, "gina", time.Hour)
		b := restCred(testSecret, "gina", 2*time.Hour)
		if code := errorCode(t, newRawClient(t, srv, a.Username, a.Password).do(stun.MethodAllocate, udpTransport)); code != 0 {
			t.Fatalf("first: %d", code)
		}
		if code := errorCode(t, newRawClient(t, srv, b.Username, b.Password).do(stun.MethodAllocate, udpTransport)); code != stun.CodeAllocQuotaReached {
			t.Fatalf("second: %d, want 486", code)
		}
		o := restCred(testSecret, "hank", time.Hour)
		if code := errorCode(t, newRawClient(t, srv, o.Username, o.Password).do(stun.MethodAllocate, udpTransport)); code != 0 {
			t.Fatalf("other user: %d", code)
		}
	})
	t.Run("total quota 508", func(t *testing.T) {
		srv := newTestServer(t, func(c *Config) { c.TotalQuota = 1 })
		if code := errorCode(t, newRawClient(t, srv, "alice", "wonderland").do(stun.MethodAllocate, udpTransport)); code != 0 {
			t.Fatalf("first: %d", code)
		}
		if code := errorCode(t, newRawClient(t, srv, "alice", "wonderland").do(stun.MethodAllocate, udpTransport)); code != stun.CodeInsufficientCapacity {
			t.Fatalf("second: %d, want 508", code)
		}
	})
	t.Run("source quota 486", func(t *testing.T) {
		srv := newTestServer(t, func(c *Config) { c.SourceQuota = 1 })
		a := restCred(testSecret, "ivy", time.Hour)
		b := restCred(testSecret, "jack", time.Hour)
		if code := errorCode(t, newRawClient(t, srv, a.Username, a.Password).do(stun.MethodAllocate, udpTransport)); code != 0 {
			t.Fatalf("first: %d", code)
		}
		if code := errorCode(t, newRawClient(t, srv, b.Username, b.Password).do(stun.MethodAllocate, udpTransport)); code != stun.CodeAllocQuotaReached {
			t.Fatalf("second from the same IP: %d, want 486", code)
		}
	})
}

func TestOwnership(t *testing.T) {
	srv := newTestServer(t, nil)
	a := restCred(testSecret, "kate", time.Hour)
	r := newRawClient(t, srv, a.Username, a.Password)
	if code := errorCode(t, r.do(stun.MethodAllocate, udpTransport)); code != 0 {
		t.Fatalf("allocate: %d", code)
	}
	// Another user on the same five-tuple may not touch the allocation.
	r.user, r.key = "alice", keyFor(srv, "alice", "wonderland")
	if code := errorCode(t, r.do(stun.MethodRefresh, lifetime(time.Minute))); code != stun.CodeWrongCredentials {
		t.Fatalf("another user refreshing kate's allocation: %d, want 441", code)
	}
	if code := errorCode(t, r.do(stun.MethodCreatePermission, peerAddr{&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}})); code != stun.CodeWrongCredentials {
		t.Fatalf("another user creating a permission on kate's allocation: %d, want 441", code)
	}
	// The owner still can.
	r.user, r.key = a.Username, keyFor(srv, a.Username, a.Password)
	if code := errorCode(t, r.do(stun.MethodRefresh, lifetime(time.Minute))); code != 0 {
		t.Fatalf("owner refresh: %d", code)
	}
}

func TestPeerPolicyEnforced(t *testing.T) {
	srv := newTestServer(t, func(c *Config) { c.Peers = PeerPolicy{} }) // the default: deny loopback
	r := newRawClient(t, srv, "alice", "wonderland")
	if code := errorCode(t, r.do(stun.MethodAllocate, udpTransport)); code != 0 {
		t.Fatalf("allocate: %d", code)
	}
	for _, ip := range []string{"10.0.0.1", "::ffff:10.0.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1"} {
		resp := r.do(stun.MethodCreatePermission, peerAddr{&net.UDPAddr{IP: net.ParseIP(ip), Port: 5000}})
		if code := errorCode(t, resp); code != stun.CodeForbidden {
			t.Errorf("CreatePermission %s: %d, want 403", ip, code)
		}
	}
	if got := metricValue(t, srv, "turnd_policy_denials_total"); got < 5 {
		t.Fatalf("denials counted %v, want 5", got)
	}

	// Here the relay itself sits on 127.0.0.1, so a permission for that IP
	// is granted (relay-to-relay needs it), but no datagram may leave for a
	// loopback port that is not a live relay: the per-datagram check holds.
	loopPeer := echoPeer(t, "127.0.0.1:0")
	cl := pionClient(t, srv, "udp", "alice", "wonderland")
	relayConn, err := cl.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relayConn.Close()
	before := metricValue(t, srv, "turnd_policy_denials_total")
	for i := 0; i < 3; i++ {
		_, _ = relayConn.WriteTo([]byte("must not arrive"), loopPeer.LocalAddr())
	}
	// The denial is counted when the server handles the datagram; wait for
	// it (bounded) rather than for the absence of a packet.
	deadline := time.Now().Add(5 * time.Second)
	for metricValue(t, srv, "turnd_policy_denials_total") == before {
		if time.Now().After(deadline) {
			t.Fatal("datagram to a loopback peer was not denied")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := metricValue(t, srv, "turnd_relayed_packets_total{direction=\"client_to_peer\"}"); got != 0 {
		t.Fatalf("%v datagrams relayed to a denied peer", got)
	}
}

// TestRelayToRelay: two relay-only peers on one turnd reach each other
// through their relay addresses even though those are loopback here and
// the default policy denies loopback.
func TestRelayToRelay(t *testing.T) {
	srv := newTestServer(t, func(c *Config) { c.Peers = PeerPolicy{} })
	a := pionClient(t, srv, "udp", "alice", "wonderland")
	b := pionClient(t, srv, "udp", "alice", "wonderland")
	ra, err := a.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	rb, err := b.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	// Both sides grant permissions (as ICE does) and then exchange.
	if err := a.CreatePermission(rb.LocalAddr()); err != nil {
		t.Fatalf("permission a->b relay: %v", err)
	}
	if err := b.CreatePermission(ra.LocalAddr()); err != nil {
		t.Fatalf("permission b->a relay: %v", err)
	}
	buf := make([]byte, 100)
	for try := 0; ; try++ {
		if try == 20 {
			t.Fatal("no datagram from relay A reached relay B")
		}
		_, _ = ra.WriteTo([]byte("ping"), rb.LocalAddr())
		rb.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, from, err := rb.ReadFrom(buf)
		if err == nil && string(buf[:n]) == "ping" && from.String() == ra.LocalAddr().String() {
			break
		}
	}
}
