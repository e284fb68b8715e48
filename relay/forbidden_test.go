package relay

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// TestForbiddenPeerAnswers: every request naming a peer the policy refuses
// is answered 403 (pion alone would answer ChannelBind 401, a false
// password problem), and a Send indication to one is dropped silently and
// counted.
func TestForbiddenPeerAnswers(t *testing.T) {
	// 198.51.100.0/24 is a documentation range, denied by default: the
	// operator opens it as the allowed peer (no traffic is sent there).
	srv := newTestServer(t, func(c *Config) {
		c.Peers = PeerPolicy{Allowed: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}
	})
	forbidden := peerAt("10.1.2.3:5000")

	u := newRawClient(t, srv, "alice", "wonderland")
	if code := errorCode(t, u.do(stun.MethodAllocate, udpTransport)); code != 0 {
		t.Fatalf("allocate: %d", code)
	}
	if code := errorCode(t, u.do(stun.MethodCreatePermission, forbidden)); code != stun.CodeForbidden {
		t.Errorf("CreatePermission to a forbidden peer: %d, want 403", code)
	}
	// One allowed and one forbidden peer in one request: all or nothing.
	if code := errorCode(t, u.do(stun.MethodCreatePermission, peerAt("198.51.100.7:9"), forbidden)); code != stun.CodeForbidden {
		t.Errorf("CreatePermission with one forbidden peer: %d, want 403", code)
	}
	if code := errorCode(t, u.do(stun.MethodChannelBind, channelNumber(0x4000), forbidden)); code != stun.CodeForbidden {
		t.Errorf("ChannelBind to a forbidden peer: %d, want 403", code)
	}
	if code := errorCode(t, u.do(stun.MethodChannelBind, channelNumber(0x4001), peerAt("198.51.100.7:9"))); code != 0 {
		t.Errorf("ChannelBind to an allowed peer: %d, want success", code)
	}

	c := newRawStreamClient(t, srv, "alice", "wonderland")
	if code := errorCode(t, c.do(stun.MethodAllocate, tcpTransport)); code != 0 {
		t.Fatalf("TCP allocate: %d", code)
	}
	if code := errorCode(t, c.do(stun.MethodConnect, forbidden)); code != stun.CodeForbidden {
		t.Errorf("Connect to a forbidden peer: %d, want 403", code)
	}
	if got := metricValue(t, srv, "turnd_policy_denials_total"); got != 4 {
		t.Errorf("policy denials %v, want 4", got)
	}

	// A Send indication gets no answer whatever happens; prove it was seen,
	// dropped and counted, then that the next answer on the socket is the
	// Binding that follows it.
	send := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		forbidden, stun.RawAttribute{Type: stun.AttrData, Value: []byte("must not leave")}, stun.Fingerprint)
	if _, err := u.conn.WriteTo(send.Raw, u.srv); err != nil {
		t.Fatal(err)
	}
	const dropped = `turnd_dropped_packets_total{reason="forbidden_peer"}`
	deadline := time.Now().Add(5 * time.Second)
	for metricValue(t, srv, dropped) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("Send indication to a forbidden peer was not counted as dropped")
		}
		time.Sleep(5 * time.Millisecond)
	}
	bind := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if _, err := u.conn.WriteTo(bind.Raw, u.srv); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	u.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := u.conn.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	got := &stun.Message{Raw: buf[:n]}
	if err := got.Decode(); err != nil || got.TransactionID != bind.TransactionID {
		t.Fatalf("first datagram after the Send indication is not the Binding answer: %v %v", got, err)
	}
	if got := metricValue(t, srv, "turnd_relayed_packets_total{direction=\"client_to_peer\"}"); got != 0 {
		t.Fatalf("%v datagrams relayed to a forbidden peer", got)
	}
}
