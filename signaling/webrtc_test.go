package signaling

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
)

// signalData is the signal payload convention the tests and the web page
// use (docs/protocol.md): one description or one candidate per signal, as
// in the W3C perfect negotiation example.
type signalData struct {
	Description *webrtc.SessionDescription `json:"description,omitempty"`
	Candidate   *webrtc.ICECandidateInit   `json:"candidate,omitempty"`
}

// pnPeer is a pion/webrtc peer doing perfect negotiation over the hub.
// One goroutine (run) owns the negotiation state; pion's callbacks only
// send.
type pnPeer struct {
	t      testing.TB
	name   string
	c      *Client
	id     string
	remote string
	polite bool
	pcp    atomic.Pointer[webrtc.PeerConnection]
	// newPC makes a fresh, wired PeerConnection: the polite peer's stand-in
	// for rollback, which pion v4.2 does not implement (see
	// TestPionHasNoRollback).
	newPC func() (*webrtc.PeerConnection, error)

	mu      sync.Mutex // serializes negotiation steps
	pending []webrtc.ICECandidateInit

	ignored, rollbacks          atomic.Int32
	candidatesOut, candidatesIn atomic.Int32
	errs                        chan error
	dc                          chan *webrtc.DataChannel
	messages                    chan string
}

// loopbackAPI keeps ICE on 127.0.0.1 (UDP4, loopback host candidates, no
// mDNS), so the test's traffic stays on loopback.
func loopbackAPI() *webrtc.API {
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// Quiet: the glare test's replaced connection makes pion log dropped
	// candidates, which is expected.
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	se.LoggerFactory = lf
	return webrtc.NewAPI(webrtc.WithSettingEngine(se))
}

// newPNPeer makes a peer; setup, when set, runs on every PeerConnection
// it creates (negotiated data channels must be created on each).
func newPNPeer(t testing.TB, name string, api *webrtc.API, cfg webrtc.Configuration, c *Client, id, remote string, polite bool,
	setup func(p *pnPeer, pc *webrtc.PeerConnection) error) *pnPeer {
	t.Helper()
	p := &pnPeer{
		t: t, name: name, c: c, id: id, remote: remote, polite: polite,
		errs: make(chan error, 16), dc: make(chan *webrtc.DataChannel, 4), messages: make(chan string, 16),
	}
	p.newPC = func() (*webrtc.PeerConnection, error) {
		pc, err := api.NewPeerConnection(cfg)
		if err != nil {
			return nil, err
		}
		pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
			if cand == nil || p.pcp.Load() != pc {
				return // end of candidates, or a replaced connection
			}
			init := cand.ToJSON()
			p.candidatesOut.Add(1)
			p.send(signalData{Candidate: &init})
		})
		pc.OnDataChannel(func(dc *webrtc.DataChannel) { p.watch(dc) })
		if setup != nil {
			if err := setup(p, pc); err != nil {
				pc.Close()
				return nil, err
			}
		}
		return pc, nil
	}
	pc, err := p.newPC()
	if err != nil {
		t.Fatal(err)
	}
	p.pcp.Store(pc)
	t.Cleanup(func() { p.pc().Close() })
	return p
}

// pc is the current PeerConnection.
func (p *pnPeer) pc() *webrtc.PeerConnection { return p.pcp.Load() }

func (p *pnPeer) fail(err error) {
	select {
	case p.errs <- fmt.Errorf("%s: %w", p.name, err):
	default:
	}
}

func (p *pnPeer) send(d signalData) {
	if err := p.c.Signal(p.remote, d); err != nil {
		p.fail(err)
	}
}

// watch reports dc once open and collects its messages.
func (p *pnPeer) watch(dc *webrtc.DataChannel) {
	dc.OnOpen(func() { p.dc <- dc })
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		select {
		case p.messages <- string(m.Data):
		default:
		}
	})
}

// createOffer sets a local offer without sending it (tests use it to
// build glare).
func (p *pnPeer) createOffer() *webrtc.SessionDescription {
	p.mu.Lock()
	defer p.mu.Unlock()
	offer, err := p.pc().CreateOffer(nil)
	if err == nil {
		err = p.pc().SetLocalDescription(offer)
	}
	if err != nil {
		p.fail(err)
		return nil
	}
	return p.pc().LocalDescription()
}

// offer starts a negotiation: create, set and send an offer.
func (p *pnPeer) offer() {
	if d := p.createOffer(); d != nil {
		p.send(signalData{Description: d})
	}
}

// run handles signals from the hub until the connection ends.
func (p *pnPeer) run() {
	for m := range p.c.Messages() {
		if m.Type != TypeSignal || m.From != p.remote {
			continue
		}
		var d signalData
		if err := json.Unmarshal(m.Data, &d); err != nil {
			p.fail(err)
			continue
		}
		if err := p.handle(d); err != nil {
			p.fail(err)
		}
	}
}

// handle is the perfect negotiation algorithm. pion has no implicit
// rollback, so the polite peer rolls back its own offer explicitly.
func (p *pnPeer) handle(d signalData) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case d.Description != nil:
		desc := *d.Description
		collision := desc.Type == webrtc.SDPTypeOffer && p.pc().SignalingState() != webrtc.SignalingStateStable
		if collision && !p.polite {
			p.ignored.Add(1)
			return nil // the polite peer will answer ours
		}
		if collision {
			// Rollback. The W3C algorithm calls setLocalDescription({type:
			// "rollback"}); pion v4.2's state machine refuses it, so the
			// polite peer drops the connection that made the losing offer
			// and answers on a fresh one. Candidates it already trickled
			// point at closed sockets and fail harmlessly.
			fresh, err := p.newPC()
			if err != nil {
				return fmt.Errorf("rollback: %w", err)
			}
			old := p.pcp.Swap(fresh)
			old.Close()
			p.rollbacks.Add(1)
		}
		if err := p.pc().SetRemoteDescription(desc); err != nil {
			return fmt.Errorf("set remote %s: %w", desc.Type, err)
		}
		for _, c := range p.pending {
			if err := p.pc().AddICECandidate(c); err != nil {
				return fmt.Errorf("queued candidate: %w", err)
			}
		}
		p.pending = nil
		if desc.Type == webrtc.SDPTypeOffer {
			answer, err := p.pc().CreateAnswer(nil)
			if err != nil {
				return err
			}
			if err := p.pc().SetLocalDescription(answer); err != nil {
				return err
			}
			p.send(signalData{Description: p.pc().LocalDescription()})
		}
	case d.Candidate != nil:
		p.candidatesIn.Add(1)
		if p.pc().RemoteDescription() == nil {
			p.pending = append(p.pending, *d.Candidate) // arrived before the description
			return nil
		}
		if err := p.pc().AddICECandidate(*d.Candidate); err != nil {
			return fmt.Errorf("add candidate: %w", err)
		}
	default:
		return errors.New("signal without description or candidate")
	}
	return nil
}

// awaitOpen waits for an open data channel on p, failing on errors of p
// or its partner q.
func awaitOpen(t testing.TB, p, q *pnPeer) *webrtc.DataChannel {
	t.Helper()
	select {
	case dc := <-p.dc:
		return dc
	case err := <-p.errs:
		t.Fatal(err)
	case err := <-q.errs:
		t.Fatal(err)
	case <-ctxT(t).Done():
		t.Fatalf("%s: no data channel opened (ICE state %s, signaling %s)", p.name, p.pc().ICEConnectionState(), p.pc().SignalingState())
	}
	return nil
}

func (p *pnPeer) awaitMessage(t testing.TB) string {
	t.Helper()
	select {
	case m := <-p.messages:
		return m
	case err := <-p.errs:
		t.Fatal(err)
	case <-ctxT(t).Done():
		t.Fatalf("%s: no data channel message", p.name)
	}
	return ""
}

// exchange checks that messages flow both ways over the open channels.
func exchange(t testing.TB, a, b *pnPeer, dca, dcb *webrtc.DataChannel) {
	t.Helper()
	if err := dca.SendText("hello from " + a.name); err != nil {
		t.Fatal(err)
	}
	if err := dcb.SendText("hello from " + b.name); err != nil {
		t.Fatal(err)
	}
	if got := b.awaitMessage(t); got != "hello from "+a.name {
		t.Fatalf("%s got %q", b.name, got)
	}
	if got := a.awaitMessage(t); got != "hello from "+b.name {
		t.Fatalf("%s got %q", a.name, got)
	}
}

// joinPair joins two clients to room; the second is polite.
func joinPair(t testing.TB, th *testHub, room string) (a, b *Client, wa, wb ServerMessage) {
	t.Helper()
	a, wa = th.join(t, room)
	b, wb = th.join(t, room)
	if m := expect(t, a, TypePeerJoined); m.ID != wb.ID {
		t.Fatalf("peer-joined = %+v", m)
	}
	if wa.Polite || !wb.Polite {
		t.Fatalf("roles: first polite=%v, second polite=%v; want the later joiner polite", wa.Polite, wb.Polite)
	}
	return a, b, wa, wb
}

func TestWebRTCPeersConnectThroughHub(t *testing.T) {
	th := newTestHub(t, Config{})
	a, b, wa, wb := joinPair(t, th, "pion")
	api := loopbackAPI()
	pa := newPNPeer(t, "A", api, webrtc.Configuration{}, a, wa.ID, wb.ID, wa.Polite, nil)
	pb := newPNPeer(t, "B", api, webrtc.Configuration{}, b, wb.ID, wa.ID, wb.Polite, nil)
	go pa.run()
	go pb.run()

	// The joiner, who learnt of A from welcome, opens a channel and offers.
	dc, err := pb.pc().CreateDataChannel("chat", nil)
	if err != nil {
		t.Fatal(err)
	}
	pb.watch(dc)
	pb.offer()

	dcb := awaitOpen(t, pb, pa)
	dca := awaitOpen(t, pa, pb)
	exchange(t, pa, pb, dca, dcb)
	if pa.candidatesIn.Load() == 0 || pb.candidatesIn.Load() == 0 {
		t.Fatalf("no trickled candidates crossed the hub (A got %d, B got %d)", pa.candidatesIn.Load(), pb.candidatesIn.Load())
	}
	if pa.rollbacks.Load()+pb.rollbacks.Load()+pa.ignored.Load()+pb.ignored.Load() != 0 {
		t.Fatal("collision handling ran without glare")
	}
}

func TestWebRTCGlare(t *testing.T) {
	th := newTestHub(t, Config{})
	a, b, wa, wb := joinPair(t, th, "glare")
	api := loopbackAPI()
	// Both sides open the same negotiated channel and both set a local
	// offer before either hears from the other: certain glare.
	chat := func(p *pnPeer, pc *webrtc.PeerConnection) error {
		negotiated, id := true, uint16(0)
		dc, err := pc.CreateDataChannel("chat", &webrtc.DataChannelInit{Negotiated: &negotiated, ID: &id})
		if err == nil {
			p.watch(dc)
		}
		return err
	}
	pa := newPNPeer(t, "A", api, webrtc.Configuration{}, a, wa.ID, wb.ID, wa.Polite, chat)
	pb := newPNPeer(t, "B", api, webrtc.Configuration{}, b, wb.ID, wa.ID, wb.Polite, chat)
	oa, ob := pa.createOffer(), pb.createOffer()
	if oa == nil || ob == nil {
		t.Fatal("creating offers failed")
	}
	// Both offers leave before either peer handles anything.
	pa.send(signalData{Description: oa})
	pb.send(signalData{Description: ob})
	go pa.run()
	go pb.run()

	dca := awaitOpen(t, pa, pb)
	dcb := awaitOpen(t, pb, pa)
	exchange(t, pa, pb, dca, dcb)
	// The impolite peer (A, the earlier joiner) ignored B's offer; the
	// polite one rolled back its own and answered A's.
	if pa.ignored.Load() != 1 || pb.rollbacks.Load() != 1 || pa.rollbacks.Load() != 0 || pb.ignored.Load() != 0 {
		t.Fatalf("A ignored %d, rolled back %d; B ignored %d, rolled back %d; want A 1/0, B 0/1",
			pa.ignored.Load(), pa.rollbacks.Load(), pb.ignored.Load(), pb.rollbacks.Load())
	}
}

// TestPionHasNoRollback pins the reason the polite pion peer above replaces
// its PeerConnection instead of rolling back: pion/webrtc v4.2.20's
// signaling state machine has no rollback transition. When an upgrade makes
// this test fail, switch pnPeer.handle to SetLocalDescription(rollback).
func TestPionHasNoRollback(t *testing.T) {
	pc, err := loopbackAPI().NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.CreateDataChannel("x", nil); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	err = pc.SetLocalDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeRollback, SDP: offer.SDP})
	if err == nil {
		t.Fatal("pion accepted a rollback: use it in pnPeer.handle instead of replacing the PeerConnection")
	}
	if pc.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		t.Fatalf("signaling state %s after the refused rollback", pc.SignalingState())
	}
}
