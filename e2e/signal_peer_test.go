package e2e

// Helpers for the signaling tests: a pion/webrtc peer doing perfect
// negotiation through the hub's Go client. Every name starts with signal_.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/rtcsuite/rtcsuite/signaling"
)

// signal_wait bounds every wait: a safety net, not a performance check.
const signal_wait = 30 * time.Second

// signal_data is the payload convention of docs/protocol.md: one
// description or one candidate per signal.
type signal_data struct {
	Description *webrtc.SessionDescription `json:"description,omitempty"`
	Candidate   *webrtc.ICECandidateInit   `json:"candidate,omitempty"`
}

// signal_peer is a pion peer negotiating over the hub. Its run goroutine
// owns the negotiation; glare is not exercised here (see the signaling
// package's tests), so a collision is an error.
type signal_peer struct {
	name   string
	c      *signaling.Client
	remote string
	pc     *webrtc.PeerConnection

	mu      sync.Mutex
	pending []webrtc.ICECandidateInit

	errs     chan error
	open     chan *webrtc.DataChannel
	messages chan string
}

// signal_loopbackAPI keeps ICE and the TURN client socket on loopback.
func signal_loopbackAPI() *webrtc.API {
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return webrtc.NewAPI(webrtc.WithSettingEngine(se))
}

// signal_toPion converts the hub's RTCIceServer JSON shape for pion.
func signal_toPion(servers []signaling.ICEServer) []webrtc.ICEServer {
	out := make([]webrtc.ICEServer, 0, len(servers))
	for _, s := range servers {
		out = append(out, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return out
}

func signal_newPeer(t *testing.T, name string, cfg webrtc.Configuration, c *signaling.Client, remote string) *signal_peer {
	t.Helper()
	pc, err := signal_loopbackAPI().NewPeerConnection(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	p := &signal_peer{
		name: name, c: c, remote: remote, pc: pc,
		errs: make(chan error, 8), open: make(chan *webrtc.DataChannel, 2), messages: make(chan string, 8),
	}
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand != nil {
			init := cand.ToJSON()
			p.send(signal_data{Candidate: &init})
		}
	})
	pc.OnDataChannel(p.watch)
	go p.run()
	return p
}

func (p *signal_peer) fail(err error) {
	select {
	case p.errs <- fmt.Errorf("%s: %w", p.name, err):
	default:
	}
}

func (p *signal_peer) send(d signal_data) {
	if err := p.c.Signal(p.remote, d); err != nil {
		p.fail(err)
	}
}

func (p *signal_peer) watch(dc *webrtc.DataChannel) {
	dc.OnOpen(func() { p.open <- dc })
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		select {
		case p.messages <- string(m.Data):
		default:
		}
	})
}

// offer opens a data channel and sends an offer.
func (p *signal_peer) offer() {
	dc, err := p.pc.CreateDataChannel("chat", nil)
	if err != nil {
		p.fail(err)
		return
	}
	p.watch(dc)
	p.mu.Lock()
	defer p.mu.Unlock()
	o, err := p.pc.CreateOffer(nil)
	if err == nil {
		err = p.pc.SetLocalDescription(o)
	}
	if err != nil {
		p.fail(err)
		return
	}
	p.send(signal_data{Description: p.pc.LocalDescription()})
}

func (p *signal_peer) run() {
	for m := range p.c.Messages() {
		if m.Type != signaling.TypeSignal || m.From != p.remote {
			continue
		}
		var d signal_data
		if err := json.Unmarshal(m.Data, &d); err != nil {
			p.fail(err)
			continue
		}
		if err := p.handle(d); err != nil {
			p.fail(err)
		}
	}
}

func (p *signal_peer) handle(d signal_data) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case d.Description != nil:
		if err := p.pc.SetRemoteDescription(*d.Description); err != nil {
			return fmt.Errorf("set remote %s: %w", d.Description.Type, err)
		}
		for _, c := range p.pending {
			if err := p.pc.AddICECandidate(c); err != nil {
				return err
			}
		}
		p.pending = nil
		if d.Description.Type == webrtc.SDPTypeOffer {
			a, err := p.pc.CreateAnswer(nil)
			if err != nil {
				return err
			}
			if err := p.pc.SetLocalDescription(a); err != nil {
				return err
			}
			p.send(signal_data{Description: p.pc.LocalDescription()})
		}
	case d.Candidate != nil:
		if p.pc.RemoteDescription() == nil {
			p.pending = append(p.pending, *d.Candidate)
			return nil
		}
		return p.pc.AddICECandidate(*d.Candidate)
	}
	return nil
}

// awaitOpen waits for p's data channel, failing on errors of p or q.
func signal_awaitOpen(t *testing.T, p, q *signal_peer) *webrtc.DataChannel {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), signal_wait)
	defer cancel()
	select {
	case dc := <-p.open:
		return dc
	case err := <-p.errs:
		t.Fatal(err)
	case err := <-q.errs:
		t.Fatal(err)
	case <-ctx.Done():
		t.Fatalf("%s: no data channel (ICE %s)", p.name, p.pc.ICEConnectionState())
	}
	return nil
}

func (p *signal_peer) awaitMessage(t *testing.T) string {
	t.Helper()
	select {
	case m := <-p.messages:
		return m
	case err := <-p.errs:
		t.Fatal(err)
	case <-time.After(signal_wait):
		t.Fatalf("%s: no message", p.name)
	}
	return ""
}

// selectedLocalType is the candidate type of p's selected local candidate.
func (p *signal_peer) selectedLocalType(t *testing.T) webrtc.ICECandidateType {
	t.Helper()
	pair, err := p.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("%s: no selected candidate pair: %v", p.name, err)
	}
	return pair.Local.Typ
}
