package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"github.com/pion/webrtc/v4"

	"github.com/rtcsuite/rtcsuite/internal/turnrest"
	"github.com/rtcsuite/rtcsuite/signaling"
)

func cred(user string) turnrest.Credential {
	return turnrest.Mint([]byte(secret), user, time.Now().Add(3*time.Hour))
}

// turnFlow keeps one pion/turn allocation sending numbered messages to the
// echo peer, ten a second; each must come back (retransmitted up to five
// times), else it counts as lost.
func turnFlow(ctx context.Context, st *stats, network, server string, peer *net.UDPAddr, id int) {
	for ctx.Err() == nil {
		if err := turnFlowOnce(ctx, st, network, server, peer, id); err != nil && ctx.Err() == nil {
			st.fail(&st.flowErrs, fmt.Errorf("flow %d (%s): %w", id, network, err))
			sleepCtx(ctx, time.Second)
		}
	}
}

func turnFlowOnce(ctx context.Context, st *stats, network, server string, peer *net.UDPAddr, id int) error {
	var conn net.PacketConn
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		conn = c
	default:
		c, err := net.Dial("tcp", server)
		if err != nil {
			return err
		}
		conn = turn.NewSTUNConn(c)
	}
	defer conn.Close()
	c := cred(fmt.Sprintf("flow%d", id))
	cl, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: c.Username, Password: c.Password, Realm: "rtcsuite"})
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.Listen(); err != nil {
		return err
	}
	relayConn, err := cl.Allocate()
	if err != nil {
		return fmt.Errorf("allocate: %w", err)
	}
	defer relayConn.Close()
	msg := make([]byte, 200)
	buf := make([]byte, 1500)
	for seq := uint64(1); ; seq++ {
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return nil
		}
		binary.BigEndian.PutUint64(msg, seq)
		got := false
		for try := 0; try < 5 && !got; try++ {
			if _, err := relayConn.WriteTo(msg, peer); err != nil {
				return fmt.Errorf("send: %w", err)
			}
			_ = relayConn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			for {
				n, _, err := relayConn.ReadFrom(buf)
				if err != nil {
					break // timeout: retransmit
				}
				if n == len(msg) && binary.BigEndian.Uint64(buf) == seq {
					got = true
					break
				}
			}
		}
		if !got {
			if ctx.Err() != nil {
				return nil
			}
			st.fail(&st.flowLost, fmt.Errorf("flow %d (%s): message %d never came back", id, network, seq))
			continue
		}
		st.flowMsgs.Add(1)
	}
}

// dataChannelPair connects two pion/webrtc peers through turnd with
// relay-only ICE and sends numbered messages on an ordered, reliable
// channel: every message must arrive, in order.
func dataChannelPair(ctx context.Context, st *stats, server string, id int) {
	for ctx.Err() == nil {
		if err := dataChannelOnce(ctx, st, server, id); err != nil && ctx.Err() == nil {
			st.fail(&st.dcErrs, fmt.Errorf("data channel pair %d: %w", id, err))
			sleepCtx(ctx, time.Second)
		}
	}
}

func dataChannelOnce(ctx context.Context, st *stats, server string, id int) error {
	newPC := func(user string) (*webrtc.PeerConnection, error) {
		c := cred(user)
		var se webrtc.SettingEngine
		se.SetIncludeLoopbackCandidate(true)
		api := webrtc.NewAPI(webrtc.WithSettingEngine(se))
		return api.NewPeerConnection(webrtc.Configuration{
			ICEServers:         []webrtc.ICEServer{{URLs: []string{"turn:" + server + "?transport=udp"}, Username: c.Username, Credential: c.Password}},
			ICETransportPolicy: webrtc.ICETransportPolicyRelay,
		})
	}
	a, err := newPC(fmt.Sprintf("dc%da", id))
	if err != nil {
		return err
	}
	defer a.Close()
	b, err := newPC(fmt.Sprintf("dc%db", id))
	if err != nil {
		return err
	}
	defer b.Close()
	dc, err := a.CreateDataChannel("soak", nil)
	if err != nil {
		return err
	}
	received := make(chan uint64, 1024)
	b.OnDataChannel(func(d *webrtc.DataChannel) {
		d.OnMessage(func(m webrtc.DataChannelMessage) {
			if len(m.Data) >= 8 {
				received <- binary.BigEndian.Uint64(m.Data)
			}
		})
	})
	opened := make(chan struct{})
	dc.OnOpen(func() { close(opened) })
	if err := exchange(a, b); err != nil {
		return err
	}
	select {
	case <-opened:
	case <-time.After(30 * time.Second):
		return errors.New("data channel did not open through the relay")
	case <-ctx.Done():
		return nil
	}
	var sent, next uint64 = 0, 1
	msg := make([]byte, 500)
	check := func(seq uint64) {
		if seq != next {
			st.fail(&st.dcLost, fmt.Errorf("pair %d: message %d arrived, expected %d", id, seq, next))
		}
		next = seq + 1
		st.dcMsgs.Add(1)
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case seq := <-received:
			check(seq)
		case <-t.C:
			sent++
			binary.BigEndian.PutUint64(msg, sent)
			if err := dc.Send(msg); err != nil {
				return fmt.Errorf("send: %w", err)
			}
		}
	}
	// Drain what is in flight, then everything sent must have arrived.
	deadline := time.After(10 * time.Second)
	for next <= sent {
		select {
		case seq := <-received:
			check(seq)
		case <-deadline:
			st.fail(&st.dcLost, fmt.Errorf("pair %d: %d of %d messages never arrived", id, sent-next+1, sent))
			return nil
		}
	}
	return nil
}

// exchange runs offer/answer between a and b with complete gathering.
func exchange(a, b *webrtc.PeerConnection) error {
	offer, err := a.CreateOffer(nil)
	if err != nil {
		return err
	}
	ga := webrtc.GatheringCompletePromise(a)
	if err := a.SetLocalDescription(offer); err != nil {
		return err
	}
	<-ga
	if err := b.SetRemoteDescription(*a.LocalDescription()); err != nil {
		return err
	}
	answer, err := b.CreateAnswer(nil)
	if err != nil {
		return err
	}
	gb := webrtc.GatheringCompletePromise(b)
	if err := b.SetLocalDescription(answer); err != nil {
		return err
	}
	<-gb
	return a.SetRemoteDescription(*b.LocalDescription())
}

// hubChurn joins two clients to a fresh room, passes one signal from one to
// the other, and leaves, about five times a second.
func hubChurn(ctx context.Context, st *stats, hubURL string) {
	wsURL := "ws" + strings.TrimPrefix(hubURL, "http") + "/ws"
	for i := 0; ctx.Err() == nil; i++ {
		if err := churnOnce(ctx, wsURL, fmt.Sprintf("soak-%d", i)); err != nil && ctx.Err() == nil {
			st.fail(&st.churnErrs, fmt.Errorf("hub churn: %w", err))
		} else if err == nil {
			st.churn.Add(1)
		}
		sleepCtx(ctx, jitter(200*time.Millisecond))
	}
}

func churnOnce(ctx context.Context, wsURL, room string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	a, err := signaling.Dial(ctx, wsURL)
	if err != nil {
		return err
	}
	defer a.Close()
	if _, err := a.Join(ctx, room, ""); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	b, err := signaling.Dial(ctx, wsURL)
	if err != nil {
		return err
	}
	defer b.Close()
	wb, err := b.Join(ctx, room, "")
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	if err := a.Signal(wb.ID, map[string]any{"soak": room}); err != nil {
		return err
	}
	for {
		m, err := b.Recv(ctx)
		if err != nil {
			return fmt.Errorf("signal never arrived: %w", err)
		}
		if m.Type == signaling.TypeSignal {
			return nil
		}
	}
}

var (
	reSent = regexp.MustCompile(`start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`)
	reLost = regexp.MustCompile(`Total lost packets (\d+) \(`)
)

// uclientRuns runs coturn's turnutils_uclient over TCP (two allocations,
// channels, 20 packets a second for 5 s), with a pause of every between
// runs: no packet may be lost. A failed run's whole output is kept in
// logDir.
func uclientRuns(ctx context.Context, st *stats, bin string, port int, peer *net.UDPAddr, every time.Duration, logDir string) {
	for run := 1; ctx.Err() == nil; run++ {
		c := cred("uclient")
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		cmd := exec.CommandContext(rctx, bin, "-t", "-c", "-m", "2", "-n", "100", "-l", "400", "-z", "50",
			"-u", c.Username, "-w", c.Password, "-e", peer.IP.String(), "-r", strconv.Itoa(peer.Port),
			"-p", strconv.Itoa(port), "127.0.0.1")
		out, err := cmd.CombinedOutput()
		cancel()
		if ctx.Err() != nil {
			return // cut short by the end of the soak
		}
		switch lost := reLost.FindSubmatch(out); {
		case err != nil || lost == nil || reSent.Find(out) == nil:
			kept := filepath.Join(logDir, fmt.Sprintf("uclient-%d-%s.log", run, time.Now().UTC().Format("150405.000")))
			_ = os.WriteFile(kept, out, 0o644)
			st.fail(&st.uclientErrs, fmt.Errorf("uclient: %v: %s (whole output: %s)", err, lastLines(out, 12), kept))
		default:
			st.uclientRuns.Add(1)
			if n, _ := strconv.Atoi(string(lost[1])); n > 0 {
				st.uclientLost.Add(int64(n))
				st.fail(&st.uclientErrs, fmt.Errorf("uclient lost %d packets", n))
			}
		}
		sleepCtx(ctx, every)
	}
}

func lastLines(b []byte, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// attacks sends one attack every 1/rate seconds, round robin; each opens
// at most one connection with a deadline.
//
// Every attack comes from attackerIP, not from the legitimate clients'
// 127.0.0.1: turnd limits unauthenticated requests per source address, and
// an attacker sharing the clients' address would drain their allowance
// too. Over UDP a client retransmits what the limiter dropped; over TCP it
// does not, so a turnutils_uclient -t run that began just after the
// unauthenticated flood had its first Allocate dropped and was closed by
// the first-frame deadline ("recv: Success"). The soak checks that an
// attacker does not hurt other clients, so the attacker is another host.
func attacks(ctx context.Context, st *stats, rate float64, turnAddr, hubURL string) {
	if rate <= 0 {
		return
	}
	kinds := []func(context.Context, string, string) error{
		attackOversize(0xFFFF), attackOversize(0xFFEC), attackTrickle, attackChannelDataIdle,
		attackUnauthFlood, attackWrongPassword, attackConnectOverUDP, attackHubOversize,
	}
	period := time.Duration(float64(time.Second) / rate)
	for i := 0; ; i++ {
		if !sleepCtx(ctx, period) {
			return
		}
		actx, cancel := context.WithTimeout(ctx, 15*time.Second)
		go func(k func(context.Context, string, string) error) {
			defer cancel()
			_ = k(actx, turnAddr, hubURL) // attacks are expected to fail
		}(kinds[i%len(kinds)])
		st.attacks.Add(1)
	}
}

// attackerIP is the attacks' source address: on Linux all of 127.0.0.0/8
// reaches the loopback listeners.
var attackerIP = net.IPv4(127, 0, 0, 2)

func dialTurn(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: attackerIP}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	return c, nil
}

// dialAttackUDP is a UDP socket from attackerIP connected to addr.
func dialAttackUDP(addr string) (*net.UDPConn, error) {
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	return net.DialUDP("udp", &net.UDPAddr{IP: attackerIP}, ra)
}

// attackOversize sends a STUN header announcing length plus a 64 KiB body
// of Binding requests, with no login.
func attackOversize(length uint16) func(context.Context, string, string) error {
	return func(ctx context.Context, addr, _ string) error {
		c, err := dialTurn(ctx, addr)
		if err != nil {
			return err
		}
		defer c.Close()
		b := []byte{0x00, 0x01, byte(length >> 8), byte(length), 0x21, 0x12, 0xA4, 0x42}
		b = append(b, make([]byte, 12)...)
		for len(b) < 66000 {
			b = append(b, stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw...)
		}
		_, _ = c.Write(b)
		_, _ = c.Read(make([]byte, 1)) // until the server closes it
		return nil
	}
}

// attackTrickle sends a large frame a byte at a time.
func attackTrickle(ctx context.Context, addr, _ string) error {
	c, err := dialTurn(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	frame := append([]byte{0x40, 0x00, 0x05, 0xF0}, make([]byte, 0x5F0)...)
	for _, x := range frame {
		if _, err := c.Write([]byte{x}); err != nil {
			return err
		}
		if !sleepCtx(ctx, 5*time.Millisecond) {
			return nil
		}
	}
	return nil
}

// attackChannelDataIdle sends one empty ChannelData frame and holds the
// connection until the server closes it (or the attack's deadline).
func attackChannelDataIdle(ctx context.Context, addr, _ string) error {
	c, err := dialTurn(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_, _ = c.Write([]byte{0x40, 0x00, 0x00, 0x00})
	_, _ = c.Read(make([]byte, 1)) // until the server closes it
	return nil
}

// attackUnauthFlood sends 200 unauthenticated Allocates over UDP.
func attackUnauthFlood(_ context.Context, addr, _ string) error {
	c, err := dialAttackUDP(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	for range 200 {
		m := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
			stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}})
		_, _ = c.Write(m.Raw)
	}
	return nil
}

// attackWrongPassword tries a REST username with a wrong password.
func attackWrongPassword(_ context.Context, addr, _ string) error {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: attackerIP})
	if err != nil {
		return err
	}
	defer c.Close()
	cl, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: addr, TURNServerAddr: addr, Conn: c,
		Username: cred("mallory").Username, Password: "wrong", Realm: "rtcsuite"})
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.Listen(); err != nil {
		return err
	}
	_, err = cl.Allocate()
	return err
}

// attackConnectOverUDP allocates over UDP with a valid credential and
// asks for an RFC 6062 Connect (answered 403 at once, never dialled inside
// the UDP read loop).
func attackConnectOverUDP(_ context.Context, addr, _ string) error {
	c, err := dialAttackUDP(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	cr := cred("connector")
	var realm stun.Realm
	var nonce stun.Nonce
	do := func(method stun.Method, attrs ...stun.Setter) (*stun.Message, error) {
		setters := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, attrs...)
		if nonce != nil {
			setters = append(setters, stun.NewUsername(cr.Username), realm, nonce,
				stun.NewLongTermIntegrity(cr.Username, realm.String(), cr.Password))
		}
		m := stun.MustBuild(append(setters, stun.Fingerprint)...)
		if _, err := c.Write(m.Raw); err != nil {
			return nil, err
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 1500)
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		resp := &stun.Message{Raw: buf[:n]}
		return resp, resp.Decode()
	}
	transport := stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}
	resp, err := do(stun.MethodAllocate, transport)
	if err != nil {
		return err
	}
	if realm.GetFrom(resp) != nil || nonce.GetFrom(resp) != nil {
		return errors.New("no realm/nonce")
	}
	if _, err := do(stun.MethodAllocate, transport); err != nil {
		return err
	}
	peer := &stun.XORMappedAddress{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	_, err = do(stun.MethodConnect, peerAttr{peer})
	// Leave like a client would, so the soak's allocation count stays flat.
	_, _ = do(stun.MethodRefresh, stun.RawAttribute{Type: stun.AttrLifetime, Value: []byte{0, 0, 0, 0}})
	return err
}

type peerAttr struct{ a *stun.XORMappedAddress }

func (p peerAttr) AddTo(m *stun.Message) error { return p.a.AddToAs(m, stun.AttrXORPeerAddress) }

// attackHubOversize sends the hub a message over its size limit.
func attackHubOversize(ctx context.Context, _, hubURL string) error {
	d := *websocket.DefaultDialer
	d.NetDialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: attackerIP}}).DialContext
	cl, err := signaling.Dial(ctx, "ws"+strings.TrimPrefix(hubURL, "http")+"/ws", signaling.WithDialer(&d))
	if err != nil {
		return err
	}
	defer cl.Close()
	_ = cl.SendRaw([]byte(`{"type":"join","room":"` + strings.Repeat("x", 200<<10) + `"}`))
	select {
	case <-cl.Done():
	case <-ctx.Done():
	}
	return nil
}
