//go:build linux

package e2e

import (
	"fmt"
	"testing"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/rtcsuite/rtcsuite/internal/netlab"
)

// webrtcCase opens data channels through the lab's turnd between an
// in-process pion peer in the client namespace that may only use relay
// candidates and one in the peer namespace, and echoes messages; once with
// offload tc, then, after SIGHUP, with offload off. Two shapes:
//
//   - relay-to-host: the answerer has host candidates only, so the path is
//     client -> turnd -> peer, which the kernel path must carry with tc
//     and must not touch with off;
//   - relay-to-relay: both peers are relay-only (the answerer reaches
//     turnd's listener across the peer-side veth), so the path runs
//     between two of turnd's own relay addresses, which stays in user
//     space in both modes.
func (l *turnd_offloadLab) webrtcCase(t *testing.T) {
	// The answerer's way to the listener: the relay namespace delivers
	// packets to any of its own addresses locally, whatever the interface.
	if _, err := netlab.Run(l.topo.Peer, "ip", "route", "add", netlab.ListenAddr.String()+"/32", "via", netlab.RelayAddr.String()); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"tc", "off"} {
		t.Run("offload-"+mode, func(t *testing.T) {
			if mode == "off" {
				l.switchOffload(t, "off")
				t.Cleanup(func() { l.switchOffload(t, "tc") })
			}
			for _, bothRelay := range []bool{false, true} {
				name := "relay-to-host"
				if bothRelay {
					name = "relay-to-relay"
				}
				t.Run(name, func(t *testing.T) {
					k0 := turnd_kernelTotals(l.settledTotals(t))
					l.dataChannelExchange(t, bothRelay)
					d := turnd_kernelTotals(l.settledTotals(t)).sub(k0)
					t.Logf("kernel carried %v packets to the peer, %v to the client", d.toPeerPkts, d.toClientPkts)
					switch {
					case mode == "tc" && !bothRelay && (d.toPeerPkts == 0 || d.toClientPkts == 0):
						t.Errorf("the kernel carried %v/%v packets, want some each way", d.toPeerPkts, d.toClientPkts)
					case (mode == "off" || bothRelay) && (d.toPeerPkts != 0 || d.toClientPkts != 0):
						t.Errorf("the kernel carried %v/%v packets, want none", d.toPeerPkts, d.toClientPkts)
					}
				})
			}
		})
	}
}

// dataChannelExchange opens one data channel (the offerer relay-only; the
// answerer too when bothRelay) and echoes messages over it, in order.
func (l *turnd_offloadLab) dataChannelExchange(t *testing.T, bothRelay bool) {
	newPeer := func(ns, dev string, servers []webrtc.ICEServer, policy webrtc.ICETransportPolicy) *webrtc.PeerConnection {
		t.Helper()
		n, err := turnd_newNSNet(ns)
		must(t, err)
		var se webrtc.SettingEngine
		se.SetNet(n)
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetInterfaceFilter(func(name string) bool { return name == dev })
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
		pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{
			ICEServers: servers, ICETransportPolicy: policy,
		})
		if err != nil {
			t.Fatalf("NewPeerConnection: %v", err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc
	}
	url := fmt.Sprintf("turn:%s:%d?transport=udp", netlab.ListenAddr, turnd_labPort)
	offerer := newPeer(l.topo.Client, l.topo.ClientDev,
		[]webrtc.ICEServer{{URLs: []string{url}, Username: turnd_labUser, Credential: turnd_labPass}},
		webrtc.ICETransportPolicyRelay)
	var answerer *webrtc.PeerConnection
	if bothRelay {
		answerer = newPeer(l.topo.Peer, l.topo.PeerDev,
			[]webrtc.ICEServer{{URLs: []string{url}, Username: turnd_labUser, Credential: turnd_labPass}},
			webrtc.ICETransportPolicyRelay)
	} else {
		answerer = newPeer(l.topo.Peer, l.topo.PeerDev, nil, webrtc.ICETransportPolicyAll)
	}

	turnd_echoOverDataChannel(t, offerer, answerer, 50)
	pair, err := offerer.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("offerer: no selected candidate pair (%v)", err)
	}
	if pair.Local.Typ != webrtc.ICECandidateTypeRelay || pair.Local.Address != netlab.RelayAddr.String() {
		t.Errorf("offerer's selected local candidate %s, want a relay candidate on %s", pair.Local, netlab.RelayAddr)
	}
	wantRemote := webrtc.ICECandidateTypeHost
	if bothRelay {
		wantRemote = webrtc.ICECandidateTypeRelay
	}
	if pair.Remote.Typ != wantRemote {
		t.Errorf("offerer's selected remote candidate %s, want type %s", pair.Remote, wantRemote)
	}
	// Close before the counters are read, so they settle.
	offerer.Close()
	answerer.Close()
}
