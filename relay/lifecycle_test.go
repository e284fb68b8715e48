package relay

import (
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

func TestDrain(t *testing.T) {
	srv := newTestServer(t, nil)
	live := newRawClient(t, srv, "alice", "wonderland")
	if code := errorCode(t, live.do(stun.MethodAllocate, udpTransport)); code != 0 {
		t.Fatalf("allocate: %d", code)
	}

	drained := make(chan int, 1)
	go func() { drained <- srv.Drain(time.Minute) }()
	// Draining is visible at once to new clients and to the load balancer.
	for !srv.Stats().Draining {
		select {
		case n := <-drained:
			t.Fatalf("drain returned %d before the allocation ended", n)
		default:
			time.Sleep(time.Millisecond)
		}
	}
	rec := httptest.NewRecorder()
	srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 {
		t.Fatalf("readyz while draining: %d", rec.Code)
	}
	if code := errorCode(t, newRawClient(t, srv, "alice", "wonderland").do(stun.MethodAllocate, udpTransport)); code != stun.CodeInsufficientCapacity {
		t.Fatalf("allocate while draining: %d, want 508", code)
	}
	// The existing allocation keeps working.
	if code := errorCode(t, live.do(stun.MethodRefresh, lifetime(time.Minute))); code != 0 {
		t.Fatalf("refresh while draining: %d", code)
	}
	select {
	case n := <-drained:
		t.Fatalf("drain returned %d with an allocation alive", n)
	default:
	}
	// When it ends, drain completes.
	if code := errorCode(t, live.do(stun.MethodRefresh, lifetime(0))); code != 0 {
		t.Fatalf("delete allocation: %d", code)
	}
	select {
	case n := <-drained:
		if n != 0 {
			t.Fatalf("drain left %d allocations", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("drain did not finish after the last allocation ended")
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestDrainTimeout(t *testing.T) {
	srv := newTestServer(t, nil)
	r := newRawClient(t, srv, "alice", "wonderland")
	if code := errorCode(t, r.do(stun.MethodAllocate, udpTransport)); code != 0 {
		t.Fatalf("allocate: %d", code)
	}
	if left := srv.Drain(time.Millisecond); left != 1 {
		t.Fatalf("drain timeout left %d, want 1", left)
	}
}

func TestBadInput(t *testing.T) {
	srv := newTestServer(t, nil)
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	garbage := [][]byte{
		{},
		{0xff, 0xff, 0xff},
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		// STUN header with a bad magic cookie.
		{0x00, 0x01, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
		// STUN header claiming more attributes than present.
		{0x00, 0x01, 0x00, 0x40, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
		// A success response sent to the server.
		stun.MustBuild(stun.TransactionID, stun.BindingSuccess).Raw,
	}
	for _, g := range garbage {
		_, _ = c.WriteTo(g, srv.Addr("udp"))
	}
	// The server still answers, and counted the drops without state.
	r := newRawClient(t, srv, "alice", "wonderland")
	resp, err := r.roundTrip(stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint))
	if err != nil || resp.Type != stun.BindingSuccess {
		t.Fatalf("binding after garbage: %v %v", resp, err)
	}
	if got := metricValue(t, srv, `turnd_dropped_packets_total{reason="malformed"}`); got < 4 {
		t.Fatalf("malformed drops counted: %v, want >= 4", got)
	}
	if srv.Stats().ActiveAllocations != 0 {
		t.Fatal("garbage created state")
	}

	t.Run("unknown comprehension-required attribute gives 420", func(t *testing.T) {
		m := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
			udpTransport, stun.RawAttribute{Type: 0x7777, Value: []byte{1, 2, 3, 4}}, stun.Fingerprint)
		resp, err := r.roundTrip(m)
		if err != nil {
			t.Fatal(err)
		}
		if code := errorCode(t, resp); code != stun.CodeUnknownAttribute {
			t.Fatalf("code %d, want 420", code)
		}
		var unknown stun.UnknownAttributes
		if err := unknown.GetFrom(resp); err != nil || len(unknown) != 1 || unknown[0] != 0x7777 {
			t.Fatalf("UNKNOWN-ATTRIBUTES = %v, %v", unknown, err)
		}
	})
	t.Run("CHANGE-REQUEST without RFC 5780 gives 420", func(t *testing.T) {
		m := stun.MustBuild(stun.TransactionID, stun.BindingRequest,
			stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, 6}}, stun.Fingerprint)
		resp, err := r.roundTrip(m)
		if err != nil {
			t.Fatal(err)
		}
		if code := errorCode(t, resp); code != stun.CodeUnknownAttribute {
			t.Fatalf("code %d, want 420", code)
		}
	})
}

func TestUnauthRateLimit(t *testing.T) {
	srv := newTestServer(t, func(c *Config) { c.UnauthRate = 1 })
	r := newRawClient(t, srv, "alice", "wonderland")
	// Burst is 2x rate + 1: the rest of a quick volley is dropped, counted.
	for i := 0; i < 20; i++ {
		_, _ = r.conn.WriteTo(stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw, srv.Addr("udp"))
	}
	deadline := time.Now().Add(5 * time.Second)
	for metricValue(t, srv, `turnd_dropped_packets_total{reason="rate_limited"}`) < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("rate-limited drops: %v", metricValue(t, srv, `turnd_dropped_packets_total{reason="rate_limited"}`))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStreamRequestsOwnLimit: a flood of unauthenticated UDP from the
// address a TCP client shares (UDP sources can be forged) drains that
// address's UDP allowance and not its TCP one: the client's requests over
// TCP are still answered (over a stream nothing retransmits a dropped
// one), and requests over TCP are limited per source in the same way,
// across connections.
func TestStreamRequestsOwnLimit(t *testing.T) {
	clock := newTestClock(time.Now()) // frozen: no bucket refills
	srv := newTestServer(t, func(c *Config) {
		c.now = clock.Now
		c.UnauthRate = 1 // burst 3
	})
	limited := func(want float64) {
		t.Helper()
		awaitMetric(t, srv, "turnd_dropped_packets_total", dropRateLimited, want)
		if got := metricLabel(t, srv, "turnd_dropped_packets_total", dropRateLimited); got != want {
			t.Fatalf("rate-limited drops: %v, want %v", got, want)
		}
	}
	binding := func() *stun.Message { return stun.MustBuild(stun.TransactionID, stun.BindingRequest) }

	flood := newRawClient(t, srv, "alice", "wonderland")
	for range 10 {
		if _, err := flood.conn.WriteTo(binding().Raw, srv.Addr("udp")); err != nil {
			t.Fatal(err)
		}
	}
	limited(7)

	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", srv.Addr("tcp").String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := dial()
	alloc := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), udpTransport, stun.Fingerprint)
	resp, err := streamRoundTrip(c, alloc)
	if err != nil {
		t.Fatalf("first request over TCP after the UDP flood: %v", err)
	}
	if code := errorCode(t, resp); code != stun.CodeUnauthorized {
		t.Fatalf("unauthenticated Allocate over TCP: %v, want 401", code)
	}
	if _, err := streamRoundTrip(c, binding()); err != nil {
		t.Fatalf("second request over TCP: %v", err)
	}
	c2 := dial()
	if _, err := streamRoundTrip(c2, binding()); err != nil {
		t.Fatalf("third request over TCP, on another connection: %v", err)
	}
	if _, err := c2.Write(binding().Raw); err != nil {
		t.Fatal(err)
	}
	limited(8) // the fourth: the TCP bucket's burst is spent
}

func TestConfigValidationReportsAll(t *testing.T) {
	err := Config{
		Listeners: []Listener{{Network: "sctp", Addr: "nope"}, {Network: "tls", Addr: "127.0.0.1:5349"}},
		MinPort:   5000, MaxPort: 4000,
		UserQuota: -1,
		RFC5780:   &RFC5780Config{},
		RawWait:   time.Second,
	}.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"sctp", "certificate", "no authentication", "port range", "user quota", "rfc5780", "raw wait"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}
