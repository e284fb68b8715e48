package e2e

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/rtcsuite/rtcsuite/internal/turnrest"
	"github.com/rtcsuite/rtcsuite/relay"
)

// Two pion/webrtc peers that may only use relay candidates open a data
// channel through one in-process turnd and exchange messages both ways.
// The relay-to-relay path (both peers' relay addresses on the same turnd)
// is the common one when both ends are relay-only.
func TestTurndWebRTCRelayOnly(t *testing.T) {
	secret := []byte("webrtc-e2e-secret")
	srv, err := relay.New(relay.Config{
		Realm:      "webrtc.test",
		Listeners:  []relay.Listener{{Network: "udp", Addr: "127.0.0.1:0"}},
		UDPSockets: 2,
		Secrets:    [][]byte{secret},
		// Relay sockets bind 127.0.0.1 here; opening loopback is explicit.
		Peers:  relay.PeerPolicy{AllowLoopback: true},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	url := "turn:" + srv.Addr("udp").String() + "?transport=udp"

	newPeer := func(user string) *webrtc.PeerConnection {
		t.Helper()
		var se webrtc.SettingEngine
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		// Keep ICE (and the TURN client socket) on loopback.
		se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
		se.SetIncludeLoopbackCandidate(true)
		api := webrtc.NewAPI(webrtc.WithSettingEngine(se))
		cred := turnrest.Mint(secret, user, time.Now().Add(time.Hour))
		pc, err := api.NewPeerConnection(webrtc.Configuration{
			ICEServers: []webrtc.ICEServer{{
				URLs: []string{url}, Username: cred.Username, Credential: cred.Password,
			}},
			ICETransportPolicy: webrtc.ICETransportPolicyRelay,
		})
		if err != nil {
			t.Fatalf("NewPeerConnection: %v", err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc
	}
	offerer, answerer := newPeer("alice"), newPeer("bob")

	turnd_echoOverDataChannel(t, offerer, answerer, 20)

	for name, pc := range map[string]*webrtc.PeerConnection{"offerer": offerer, "answerer": answerer} {
		pair, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
		if err != nil || pair == nil {
			t.Fatalf("%s: no selected candidate pair (%v)", name, err)
		}
		if pair.Local.Typ != webrtc.ICECandidateTypeRelay || pair.Remote.Typ != webrtc.ICECandidateTypeRelay {
			t.Errorf("%s: selected pair %s -> %s, want relay on both ends", name, pair.Local, pair.Remote)
		}
	}
	st := srv.Stats()
	if st.ActiveAllocations < 2 || st.TotalAllocations < 2 {
		t.Errorf("turnd stats %+v, want at least 2 allocations (one per peer)", st)
	}
}

// turnd_echoOverDataChannel negotiates offerer and answerer, opens a data
// channel, sends messages from the offerer, and requires each echoed back
// by the answerer, in order (data channels are reliable and ordered by
// default), within 30 s in all.
func turnd_echoOverDataChannel(t *testing.T, offerer, answerer *webrtc.PeerConnection, messages int) {
	t.Helper()
	answerer.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			_ = dc.SendText("echo:" + string(m.Data)) // a lost echo fails the test below
		})
	})
	dc, err := offerer.CreateDataChannel("e2e", nil)
	if err != nil {
		t.Fatal(err)
	}
	opened := make(chan struct{})
	dc.OnOpen(func() { close(opened) })
	echoes := make(chan string, messages)
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		select {
		case echoes <- string(m.Data):
		default:
		}
	})

	turnd_negotiate(t, offerer, answerer)

	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	select {
	case <-opened:
	case <-timeout.C:
		t.Fatalf("data channel did not open (offerer ICE %s, answerer ICE %s)",
			offerer.ICEConnectionState(), answerer.ICEConnectionState())
	}
	for i := 0; i < messages; i++ {
		if err := dc.SendText(fmt.Sprintf("msg-%d", i)); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	for i := 0; i < messages; i++ {
		select {
		case got := <-echoes:
			if want := fmt.Sprintf("echo:msg-%d", i); got != want {
				t.Fatalf("echo %d = %q, want %q", i, got, want)
			}
		case <-timeout.C:
			t.Fatalf("got %d of %d echoes", i, messages)
		}
	}
}

// turnd_negotiate exchanges offer and answer in-process, without trickle:
// each description is passed on once its ICE gathering is complete.
func turnd_negotiate(t *testing.T, offerer, answerer *webrtc.PeerConnection) {
	t.Helper()
	gathered := func(pc *webrtc.PeerConnection, sd webrtc.SessionDescription) webrtc.SessionDescription {
		t.Helper()
		done := webrtc.GatheringCompletePromise(pc)
		if err := pc.SetLocalDescription(sd); err != nil {
			t.Fatalf("SetLocalDescription: %v", err)
		}
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("ICE gathering did not complete")
		}
		return *pc.LocalDescription()
	}
	offer, err := offerer.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	offer = gathered(offerer, offer)
	if err := answerer.SetRemoteDescription(offer); err != nil {
		t.Fatalf("answerer SetRemoteDescription: %v", err)
	}
	answer, err := answerer.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	answer = gathered(answerer, answer)
	if err := offerer.SetRemoteDescription(answer); err != nil {
		t.Fatalf("offerer SetRemoteDescription: %v", err)
	}
}
