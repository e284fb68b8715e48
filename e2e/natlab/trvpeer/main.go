// Command trvpeer is one peer of a traversal-matrix cell (issue 12): it
// joins a room on the signaling hub, takes the hub's ICE servers filtered
// to one mode, negotiates with the other peer over the hub (the later
// joiner offers), opens a data channel, exchanges one message each way,
// and prints one JSON line: whether it worked, the selected candidate
// pair's types and addresses, and the time from sending "join" to the
// open data channel. It runs inside a lab namespace (`ip netns exec`),
// which in-process pion cannot be pinned to.
//
//	trvpeer -hub ws://203.0.113.10:8080/ws -room r1 -mode stun -timeout 15s
//
// Modes: stun (stun: URLs only), udp (stun: and turn: over UDP), tcp (turn:
// over TCP and turns: only, no STUN). Exit status 0 whenever a result line
// was printed, failed cells included.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/rtcsuite/rtcsuite/signaling"
)

// Result is the JSON line trvpeer prints.
type Result struct {
	OK         bool    `json:"ok"`
	Mode       string  `json:"mode"`
	Family     string  `json:"family"`
	MS         float64 `json:"ms,omitempty"` // join sent -> data channel open
	Local      string  `json:"local,omitempty"`
	Remote     string  `json:"remote,omitempty"`
	LocalAddr  string  `json:"local_addr,omitempty"`
	RemoteAddr string  `json:"remote_addr,omitempty"`
	ICEState   string  `json:"ice_state"`
	Error      string  `json:"error,omitempty"`

	reported bool
}

type config struct {
	hub, room, mode, family string
	timeout                 time.Duration
}

func main() {
	var cfg config
	fs := flag.NewFlagSet("trvpeer", flag.ExitOnError)
	fs.StringVar(&cfg.hub, "hub", "", "hub WebSocket URL")
	fs.StringVar(&cfg.room, "room", "", "room")
	fs.StringVar(&cfg.mode, "mode", "stun", "stun, udp or tcp")
	fs.StringVar(&cfg.family, "family", "ipv4", "ipv4 or ipv6")
	fs.DurationVar(&cfg.timeout, "timeout", 15*time.Second, "give up after this long")
	_ = fs.Parse(os.Args[1:])
	var problems []string
	if cfg.hub == "" || cfg.room == "" {
		problems = append(problems, "-hub and -room are required")
	}
	if cfg.mode != "stun" && cfg.mode != "udp" && cfg.mode != "tcp" {
		problems = append(problems, fmt.Sprintf("-mode %q is not stun, udp or tcp", cfg.mode))
	}
	if cfg.family != "ipv4" && cfg.family != "ipv6" {
		problems = append(problems, fmt.Sprintf("-family %q is not ipv4 or ipv6", cfg.family))
	}
	if len(problems) > 0 {
		fmt.Fprintln(os.Stderr, "trvpeer:", strings.Join(problems, "; "))
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	run(ctx, cfg, func(res Result) { _ = json.NewEncoder(os.Stdout).Encode(res) })
}

// filterServers keeps the URLs of mode from the hub's ICE servers.
func filterServers(in []signaling.ICEServer, mode string) []webrtc.ICEServer {
	var out []webrtc.ICEServer
	for _, s := range in {
		var urls []string
		for _, u := range s.URLs {
			stunURL := strings.HasPrefix(u, "stun:")
			turnUDP := strings.HasPrefix(u, "turn:") && !strings.Contains(u, "transport=tcp")
			turnTCP := strings.HasPrefix(u, "turn:") && strings.Contains(u, "transport=tcp") || strings.HasPrefix(u, "turns:")
			if mode == "stun" && stunURL || mode == "udp" && (stunURL || turnUDP) || mode == "tcp" && turnTCP {
				urls = append(urls, u)
			}
		}
		if len(urls) > 0 {
			out = append(out, webrtc.ICEServer{URLs: urls, Username: s.Username, Credential: s.Credential})
		}
	}
	return out
}

type signalData struct {
	Description *webrtc.SessionDescription `json:"description,omitempty"`
	Candidate   *webrtc.ICECandidateInit   `json:"candidate,omitempty"`
}

// run plays one cell and calls report once with the result; on success it
// then stays (so the other side's last packets still find it) until the
// other peer leaves, the process is told to stop, or twice the timeout.
func run(parent context.Context, cfg config, report func(Result)) {
	if res := do(parent, cfg, report); !res.reported {
		report(res)
	}
}

func do(parent context.Context, cfg config, report func(Result)) (res Result) {
	res = Result{Mode: cfg.mode, Family: cfg.family, ICEState: "new"}
	ctx, cancel := context.WithTimeout(parent, cfg.timeout)
	defer cancel()
	start := time.Now()
	c, err := signaling.Dial(ctx, cfg.hub)
	if err != nil {
		res.Error = "hub: " + err.Error()
		return res
	}
	defer c.Close()
	w, err := c.Join(ctx, cfg.room, "")
	if err != nil {
		res.Error = "join: " + err.Error()
		return res
	}
	// The later joiner offers; the first waits for it.
	remote, offerer := "", len(w.Peers) > 0
	if offerer {
		remote = w.Peers[0]
	}

	var se webrtc.SettingEngine
	nt := webrtc.NetworkTypeUDP4
	if cfg.family == "ipv6" {
		nt = webrtc.NetworkTypeUDP6
	}
	se.SetNetworkTypes([]webrtc.NetworkType{nt})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetInterfaceFilter(func(name string) bool { return name != "lo" })
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{
		ICEServers: filterServers(w.ICEServers, cfg.mode),
	})
	if err != nil {
		res.Error = "peer connection: " + err.Error()
		return res
	}
	defer pc.Close()
	var stateMu sync.Mutex
	iceState := "new"
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		stateMu.Lock()
		iceState = s.String()
		stateMu.Unlock()
	})
	state := func() string { stateMu.Lock(); defer stateMu.Unlock(); return iceState }

	var remoteMu sync.Mutex
	send := func(d signalData) {
		remoteMu.Lock()
		to := remote
		remoteMu.Unlock()
		if to != "" {
			_ = c.Signal(to, d)
		}
	}
	var early []webrtc.ICECandidateInit // gathered before the remote is known
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand == nil {
			return
		}
		init := cand.ToJSON()
		remoteMu.Lock()
		if remote == "" {
			early = append(early, init)
			remoteMu.Unlock()
			return
		}
		remoteMu.Unlock()
		send(signalData{Candidate: &init})
	})
	opened := make(chan time.Time, 1)
	got := make(chan string, 1)
	watch := func(dc *webrtc.DataChannel) {
		dc.OnOpen(func() {
			select {
			case opened <- time.Now():
			default:
			}
			_ = dc.SendText("hello from " + w.ID)
		})
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			select {
			case got <- string(m.Data):
			default:
			}
		})
	}
	pc.OnDataChannel(watch)
	if offerer {
		dc, err := pc.CreateDataChannel("cell", nil)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		watch(dc)
		o, err := pc.CreateOffer(nil)
		if err == nil {
			err = pc.SetLocalDescription(o)
		}
		if err != nil {
			res.Error = "offer: " + err.Error()
			return res
		}
		send(signalData{Description: pc.LocalDescription()})
	}

	errc := make(chan error, 1)
	left := make(chan struct{})
	lingerCtx, stopLinger := context.WithTimeout(parent, 2*cfg.timeout)
	defer stopLinger()
	go func() { errc <- negotiate(lingerCtx, c, pc, &remoteMu, &remote, &early, send, left) }()

	var openAt time.Time
	select {
	case openAt = <-opened:
	case err := <-errc:
		if err == nil {
			err = errors.New("hub connection ended")
		}
		res.Error = err.Error()
		res.ICEState = state()
		return res
	case <-ctx.Done():
		res.Error = "no open data channel within " + cfg.timeout.String()
		res.ICEState = state()
		return res
	}
	select {
	case <-got:
	case <-ctx.Done():
		res.Error = "data channel open but no message arrived"
		res.ICEState = state()
		return res
	}
	res.OK = true
	res.MS = float64(openAt.Sub(start).Microseconds()) / 1000
	res.ICEState = state()
	if pair, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair(); err == nil && pair != nil {
		res.Local, res.Remote = pair.Local.Typ.String(), pair.Remote.Typ.String()
		res.LocalAddr = net.JoinHostPort(pair.Local.Address, fmt.Sprint(pair.Local.Port))
		res.RemoteAddr = net.JoinHostPort(pair.Remote.Address, fmt.Sprint(pair.Remote.Port))
	}
	report(res)
	res.reported = true
	select {
	case <-left:
	case err := <-errc:
		_ = err // the cell's result is already reported; the hub connection ended
	case <-lingerCtx.Done():
	}
	return res
}

// negotiate applies the other peer's descriptions and candidates until the
// hub connection ends or ctx does; it learns the remote id from
// peer-joined when this side joined first.
func negotiate(ctx context.Context, c *signaling.Client, pc *webrtc.PeerConnection, mu *sync.Mutex, remote *string,
	early *[]webrtc.ICECandidateInit, send func(signalData), left chan<- struct{}) error {
	var pending []webrtc.ICECandidateInit
	for {
		var m signaling.ServerMessage
		var ok bool
		select {
		case m, ok = <-c.Messages():
			if !ok {
				return c.Err()
			}
		case <-ctx.Done():
			return ctx.Err()
		}
		switch m.Type {
		case signaling.TypePeerLeft:
			close(left)
			return nil
		case signaling.TypePeerJoined:
			mu.Lock()
			first := *remote == ""
			if first {
				*remote = m.ID
			}
			queued := *early
			*early = nil
			mu.Unlock()
			for i := range queued {
				send(signalData{Candidate: &queued[i]})
			}
		case signaling.TypeSignal:
			var d signalData
			if err := json.Unmarshal(m.Data, &d); err != nil {
				return fmt.Errorf("signal from %s: %w", m.From, err)
			}
			switch {
			case d.Description != nil:
				if err := pc.SetRemoteDescription(*d.Description); err != nil {
					return fmt.Errorf("set remote %s: %w", d.Description.Type, err)
				}
				for _, cand := range pending {
					if err := pc.AddICECandidate(cand); err != nil {
						return err
					}
				}
				pending = nil
				if d.Description.Type == webrtc.SDPTypeOffer {
					a, err := pc.CreateAnswer(nil)
					if err == nil {
						err = pc.SetLocalDescription(a)
					}
					if err != nil {
						return fmt.Errorf("answer: %w", err)
					}
					send(signalData{Description: pc.LocalDescription()})
				}
			case d.Candidate != nil:
				if pc.RemoteDescription() == nil {
					pending = append(pending, *d.Candidate)
					continue
				}
				if err := pc.AddICECandidate(*d.Candidate); err != nil {
					return err
				}
			}
		}
	}
}
