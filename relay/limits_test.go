package relay

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

func TestBandwidthLimitDrops(t *testing.T) {
	srv := newTestServer(t, func(c *Config) { c.MaxBPS = 70_000 })
	peer, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	cl := pionClient(t, srv, "udp", "alice", "wonderland")
	relayConn, err := cl.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relayConn.Close()
	// 500 KB offered at once against a 70 KB/s limit with a 64 KiB burst:
	// most must be dropped however slow the machine is (all would pass only
	// if sending took over six seconds).
	payload := make([]byte, 1000)
	const sent = 500
	for i := 0; i < sent; i++ {
		if _, err := relayConn.WriteTo(payload, peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for metricValue(t, srv, `turnd_dropped_packets_total{reason="bandwidth"}`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no datagram dropped by the bandwidth limit")
		}
		time.Sleep(10 * time.Millisecond)
	}
	relayed := metricValue(t, srv, `turnd_relayed_packets_total{direction="client_to_peer"}`)
	if relayed == 0 || relayed >= sent {
		t.Fatalf("relayed %v of %d datagrams; want some but not all", relayed, sent)
	}
}

func TestCertificateReload(t *testing.T) {
	first, second := selfSigned(t), selfSigned(t)
	var cfg Config
	srv := newTestServer(t, func(c *Config) {
		c.Listeners = append(c.Listeners, Listener{Network: "tls", Addr: "127.0.0.1:0"})
		c.Certificate = first
		cfg = *c
	})
	served := func() []byte {
		conn, err := tls.Dial("tcp", srv.Addr("tls").String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Raw
	}
	if string(served()) != string(first.Certificate[0]) {
		t.Fatal("first certificate not served")
	}
	cfg.Certificate = second
	if err := srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if string(served()) != string(second.Certificate[0]) {
		t.Fatal("reloaded certificate not served")
	}
}

// TestExternalIPAdvertised: behind 1:1 NAT the relay binds its private
// address but advertises the public one, and a peer addressing that public
// relay address is recognised as one of ours.
func TestExternalIPAdvertised(t *testing.T) {
	srv := newTestServer(t, func(c *Config) { c.ExternalIPv4 = mustAddrPort("203.0.113.5:1").Addr() })
	r := newRawClient(t, srv, "alice", "wonderland")
	resp := r.do(stun.MethodAllocate, udpTransport)
	if code := errorCode(t, resp); code != 0 {
		t.Fatalf("allocate: %d", code)
	}
	relayed := relayedAddr(t, resp)
	if !relayed.IP.Equal(net.IPv4(203, 0, 113, 5)) || relayed.Port == 0 {
		t.Fatalf("XOR-RELAYED-ADDRESS = %v, want 203.0.113.5:<port>", relayed)
	}
	if reason := srv.policy.Load().checkAddrPort(mustAddrPort(relayed.String()), protoUDP); reason != "" {
		t.Fatalf("advertised relay address denied as a peer: %s", reason)
	}
}
