package e2e

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/rtcsuite/rtcsuite/relay"
	"github.com/rtcsuite/rtcsuite/signaling"
)

// Two pion peers join a room on the hub, take the ICE servers from their
// welcome messages (TURN REST credentials minted with the secret the
// in-process relay verifies), and connect with relay-only ICE: offer,
// answer and trickled relay candidates cross the hub, the data channel
// opens through the relay, and messages flow both ways.
func TestSignalRelayOnly(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	secret := []byte("signal-relay-e2e-secret")
	rs, err := relay.New(relay.Config{
		Realm:     "rtcsuite",
		Listeners: []relay.Listener{{Network: "udp", Addr: "127.0.0.1:0"}},
		Secrets:   [][]byte{secret},
		// Relay sockets bind 127.0.0.1 here; opening loopback is explicit.
		Peers:  relay.PeerPolicy{AllowLoopback: true},
		Logger: quiet,
	})
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	t.Cleanup(func() { rs.Close() })
	turnURL := "turn:" + rs.Addr("udp").String() + "?transport=udp"

	srv := signal_startHub(t, secret, turnURL)

	ctx, cancel := context.WithTimeout(context.Background(), signal_wait)
	defer cancel()
	join := func() (*signaling.Client, signaling.ServerMessage) {
		c, err := signaling.Dial(ctx, srv.URL+"/ws")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		w, err := c.Join(ctx, "relay-only", "")
		if err != nil {
			t.Fatal(err)
		}
		if len(w.ICEServers) != 1 || !strings.HasSuffix(w.ICEServers[0].Username, ":"+w.ID) {
			t.Fatalf("welcome iceServers = %+v", w.ICEServers)
		}
		return c, w
	}
	ca, wa := join()
	cb, wb := join()
	if m, err := ca.Recv(ctx); err != nil || m.Type != signaling.TypePeerJoined || m.ID != wb.ID {
		t.Fatalf("peer-joined = %+v, %v", m, err)
	}

	cfg := func(w signaling.ServerMessage) webrtc.Configuration {
		return webrtc.Configuration{ICEServers: signal_toPion(w.ICEServers), ICETransportPolicy: webrtc.ICETransportPolicyRelay}
	}
	pa := signal_newPeer(t, "A", cfg(wa), ca, wb.ID)
	pb := signal_newPeer(t, "B", cfg(wb), cb, wa.ID)
	pb.offer() // the later joiner starts

	dcb := signal_awaitOpen(t, pb, pa)
	dca := signal_awaitOpen(t, pa, pb)
	if err := dca.SendText("via relay from A"); err != nil {
		t.Fatal(err)
	}
	if err := dcb.SendText("via relay from B"); err != nil {
		t.Fatal(err)
	}
	if got := pb.awaitMessage(t); got != "via relay from A" {
		t.Fatalf("B got %q", got)
	}
	if got := pa.awaitMessage(t); got != "via relay from B" {
		t.Fatalf("A got %q", got)
	}
	for _, p := range []*signal_peer{pa, pb} {
		if typ := p.selectedLocalType(t); typ != webrtc.ICECandidateTypeRelay {
			t.Fatalf("%s: selected local candidate is %s, want relay", p.name, typ)
		}
	}
	if st := rs.Stats(); st.TotalAllocations < 2 {
		t.Fatalf("relay made %d allocations, want one per peer", st.TotalAllocations)
	}
}
