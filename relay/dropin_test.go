package relay

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// signed builds an authenticated request from r with its current nonce.
func (r *rawClient) signed(method stun.Method, attrs ...stun.Setter) *stun.Message {
	setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
	setters = append(setters, attrs...)
	setters = append(setters, stun.NewUsername(r.user), r.realm, r.nonce, stun.MessageIntegrity(r.key), stun.Fingerprint)
	return stun.MustBuild(setters...)
}

// TestStaleNonce: with StaleNonce a nonce older than the limit gets 438
// Stale Nonce with a fresh nonce (pion's own hour no longer decides), and
// the client carries on with the new one.
func TestStaleNonce(t *testing.T) {
	clock := newTestClock(time.Now())
	srv := newTestServer(t, func(c *Config) {
		c.now = clock.Now
		c.StaleNonce = 10 * time.Minute
	})
	r := newRawClient(t, srv, "alice", "wonderland")
	if code := errorCode(t, r.do(stun.MethodAllocate, udpTransport)); code != 0 {
		t.Fatalf("allocate: %d", code)
	}

	clock.Advance(9 * time.Minute) // under the limit even across a minute boundary
	resp, err := r.roundTrip(r.signed(stun.MethodRefresh, lifetime(5*time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	if code := errorCode(t, resp); code != 0 {
		t.Fatalf("refresh with a 9-minute-old nonce: %d, want success", code)
	}

	clock.Advance(2 * time.Minute)
	resp, err = r.roundTrip(r.signed(stun.MethodRefresh, lifetime(5*time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	if code := errorCode(t, resp); code != stun.CodeStaleNonce {
		t.Fatalf("refresh with an 11-minute-old nonce: %d, want 438", code)
	}
	// pion's nonce is the same for every request within one real minute,
	// so it may equal the old one here; it must be present.
	var fresh stun.Nonce
	if err := fresh.GetFrom(resp); err != nil {
		t.Fatalf("438 without a nonce: %v", resp)
	}
	// The fresh nonce is pion's, made at the real time; judge it there.
	clock.Advance(-11 * time.Minute)
	r.nonce = fresh
	if code := errorCode(t, r.do(stun.MethodRefresh, lifetime(5*time.Minute))); code != 0 {
		t.Fatalf("refresh with the fresh nonce: %d", code)
	}
}

func TestNonceMinute(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		want int64
	}{
		{"", false, 0},
		{"not base36!", false, 0},
		{"1", true, 0},
		{"ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ", false, 0}, // longer than any pion nonce
	} {
		got, ok := nonceMinute(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("nonceMinute(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestNoUDPOrTCPRelay(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		noUDP, noTCP         bool
		wantUDP, wantTCPCode stun.ErrorCode
	}{
		{"no-udp-relay", true, false, stun.CodeUnsupportedTransProto, 0},
		{"no-tcp-relay", false, true, 0, stun.CodeUnsupportedTransProto},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newTestServer(t, func(c *Config) { c.NoUDPRelay, c.NoTCPRelay = tc.noUDP, tc.noTCP })
			u := newRawStreamClient(t, srv, "alice", "wonderland")
			if code := errorCode(t, u.do(stun.MethodAllocate, udpTransport)); code != tc.wantUDP {
				t.Errorf("UDP relay: %d, want %d", code, tc.wantUDP)
			}
			c := newRawStreamClient(t, srv, "alice", "wonderland")
			if code := errorCode(t, c.do(stun.MethodAllocate, tcpTransport)); code != tc.wantTCPCode {
				t.Errorf("TCP relay: %d, want %d", code, tc.wantTCPCode)
			}
		})
	}
	if err := (Config{NoUDPRelay: true, NoTCPRelay: true}).withDefaults().validate(); err == nil {
		t.Error("no-udp-relay with no-tcp-relay accepted")
	}
}

// TestSTUNOnlyAndNoSTUN: coturn's modes ignore the other half's messages
// (no answer at all).
func TestSTUNOnlyAndNoSTUN(t *testing.T) {
	binding := func(t *testing.T, srv *Server) bool {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := &rawClient{t: t, conn: c, srv: srv.Addr("udp")}
		_, err = r.roundTrip(stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint))
		return err == nil
	}
	allocate := func(t *testing.T, srv *Server) bool {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := &rawClient{t: t, conn: c, srv: srv.Addr("udp")}
		_, err = r.roundTrip(stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), udpTransport, stun.Fingerprint))
		return err == nil
	}
	stunOnly := newTestServer(t, func(c *Config) { c.STUNOnly = true })
	if !binding(t, stunOnly) || allocate(t, stunOnly) {
		t.Error("stun-only: want Binding answered and Allocate ignored")
	}
	noSTUN := newTestServer(t, func(c *Config) { c.NoSTUN = true })
	if binding(t, noSTUN) || !allocate(t, noSTUN) {
		t.Error("no-stun: want Binding ignored and Allocate answered")
	}
	if err := (Config{STUNOnly: true, NoSTUN: true}).withDefaults().validate(); err == nil {
		t.Error("stun-only with no-stun accepted")
	}
}

// TestMaxAllocationLifetime: a client asking for more than coturn's
// max-allocate-lifetime gets the maximum, on Allocate and Refresh; the
// request turnd signs again still authenticates.
func TestMaxAllocationLifetime(t *testing.T) {
	srv := newTestServer(t, func(c *Config) { c.MaxAllocationLifetime = 2 * time.Minute })
	if srv.cfg.AllocationLifetime != 2*time.Minute {
		t.Errorf("default lifetime %v not capped to 2m", srv.cfg.AllocationLifetime)
	}
	granted := func(m *stun.Message) time.Duration {
		t.Helper()
		if code := errorCode(t, m); code != 0 {
			t.Fatalf("error %d", code)
		}
		raw, err := m.Get(stun.AttrLifetime)
		if err != nil || len(raw) != 4 {
			t.Fatalf("no LIFETIME in %v", m)
		}
		return time.Duration(binary.BigEndian.Uint32(raw)) * time.Second
	}
	r := newRawClient(t, srv, "alice", "wonderland")
	if got := granted(r.do(stun.MethodAllocate, udpTransport, lifetime(30*time.Minute))); got != 2*time.Minute {
		t.Errorf("Allocate asking 30m got %v, want 2m", got)
	}
	if got := granted(r.do(stun.MethodRefresh, lifetime(20*time.Minute))); got != 2*time.Minute {
		t.Errorf("Refresh asking 20m got %v, want 2m", got)
	}
	if got := granted(r.do(stun.MethodRefresh, lifetime(time.Minute))); got != time.Minute {
		t.Errorf("Refresh asking 1m got %v, want 1m", got)
	}
	if err := (Config{MaxAllocationLifetime: 2 * time.Hour}).withDefaults().validate(); err == nil {
		t.Error("a 2h maximum accepted (pion's is 1h)")
	}
}

// TestBPSCapacity: coturn's bps-capacity caps all allocations together:
// two allocations with no limit of their own share one 70 KB/s budget
// (64 KiB burst), so 600 KB offered at once cannot all pass.
func TestBPSCapacity(t *testing.T) {
	srv := newTestServer(t, func(c *Config) { c.BPSCapacity = 70_000 })
	peer, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	payload := make([]byte, 1000)
	const perClient = 300
	for i := 0; i < 2; i++ {
		cl := pionClient(t, srv, "udp", "alice", "wonderland")
		relayConn, err := cl.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		defer relayConn.Close()
		for j := 0; j < perClient; j++ {
			if _, err := relayConn.WriteTo(payload, peer.LocalAddr()); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for metricValue(t, srv, `turnd_dropped_packets_total{reason="bandwidth"}`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no datagram dropped by the server-wide capacity")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if relayed := metricValue(t, srv, `turnd_relayed_packets_total{direction="client_to_peer"}`); relayed >= 2*perClient {
		t.Fatalf("relayed all %v datagrams past the capacity", relayed)
	}
	if err := (Config{BPSCapacity: -1}).withDefaults().validate(); err == nil {
		t.Error("negative capacity accepted")
	}
}

// FuzzDropInParsers: the front door's readers of client bytes (the nonce's
// minute, the NONCE spoiler and the LIFETIME capper) never panic, and a
// capped request still decodes with a LIFETIME at most the cap.
func FuzzDropInParsers(f *testing.F) {
	key := []byte("0123456789abcdef")
	req := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodRefresh, stun.ClassRequest),
		lifetime(time.Hour), stun.NewUsername("u"), stun.NewNonce("ABC"), stun.MessageIntegrity(key), stun.Fingerprint)
	f.Add(req.Raw, "ABC")
	// pion reads a LIFETIME the HMAC does not cover, and the first of two.
	after := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodRefresh, stun.ClassRequest),
		stun.NewUsername("u"), stun.MessageIntegrity(key), lifetime(time.Hour), stun.Fingerprint)
	f.Add(after.Raw, "")
	twice := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodRefresh, stun.ClassRequest),
		lifetime(time.Hour), lifetime(time.Second), stun.NewUsername("u"), stun.MessageIntegrity(key))
	f.Add(twice.Raw, "")
	f.Add([]byte{0, 1, 0, 0}, "")
	f.Fuzz(func(t *testing.T, b []byte, nonce string) {
		nonceMinute(nonce)
		spoilNonce(append([]byte(nil), b...))
		c := append([]byte(nil), b...)
		authentic := func(raw []byte) bool {
			m := &stun.Message{Raw: append([]byte(nil), raw...)}
			return m.Decode() == nil && stun.MessageIntegrity(key).Check(m) == nil
		}
		before := authentic(b)
		capped := capLifetime(c, time.Minute, key)
		m := &stun.Message{Raw: c}
		if m.Decode() != nil {
			return
		}
		// What pion would grant: the first LIFETIME of a request that
		// authenticates. The capper must leave none above the cap.
		if raw, err := m.Get(stun.AttrLifetime); err == nil && len(raw) == 4 &&
			binary.BigEndian.Uint32(raw) > 60 && authentic(c) {
			t.Errorf("LIFETIME %d granted past the cap of 60 (capped=%v)", binary.BigEndian.Uint32(raw), capped)
		}
		if capped && before && !authentic(c) {
			t.Error("capped request no longer authenticates")
		}
	})
}
