//go:build linux

package relay

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/rtcsuite/rtcsuite/internal/turnrest"
)

// streamFrame is one frame a stream client received: ChannelData (msg
// nil) or a STUN message.
type streamFrame struct {
	ch   uint16
	data []byte
	msg  *stun.Message
}

// streamRig is a raw TURN client over TCP or TLS whose stream is read by
// a goroutine that checks every frame's framing (padding included).
type streamRig struct {
	t      *testing.T
	srv    *Server
	conn   net.Conn
	cl     *rawClient
	frames chan streamFrame
	errc   chan error
	relay  netip.AddrPort

	data [][]byte // ChannelData payloads seen, in order
	ind  [][]byte // Data indication payloads seen, in order
}

func dialStreamRig(t *testing.T, srv *Server, network string, rcvbuf int) *streamRig {
	t.Helper()
	d := net.Dialer{}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
		}
	}
	var c net.Conn
	var err error
	if network == "tls" {
		c, err = tls.DialWithDialer(&d, "tcp", srv.Addr("tls").String(), &tls.Config{InsecureSkipVerify: true})
	} else {
		c, err = d.Dial("tcp", srv.Addr("tcp").String())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &streamRig{t: t, srv: srv, conn: c, frames: make(chan streamFrame, 8192), errc: make(chan error, 1)}
	r.cl = &rawClient{t: t, stream: c, srv: c.RemoteAddr(), user: "alice",
		key: turnrest.LongTermKey("alice", srv.cfg.Realm, "wonderland")}
	return r
}

// startReading hands the stream to the reading goroutine; requests then
// go through exchange.
func (r *streamRig) startReading() {
	r.cl.exchange = r.exchange
	go r.read()
}

func (r *streamRig) read() {
	fail := func(err error) { r.errc <- err; close(r.frames) }
	for {
		hdr := make([]byte, 4)
		if _, err := io.ReadFull(r.conn, hdr); err != nil {
			fail(err)
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[2:]))
		switch hdr[0] >> 6 {
		case 1:
			body := make([]byte, (n+3)&^3)
			if _, err := io.ReadFull(r.conn, body); err != nil {
				fail(err)
				return
			}
			if !bytes.Equal(body[n:], make([]byte, len(body)-n)) {
				fail(fmt.Errorf("ChannelData padding %x is not zero", body[n:]))
				return
			}
			r.frames <- streamFrame{ch: binary.BigEndian.Uint16(hdr), data: body[:n]}
		case 0:
			raw := make([]byte, 20+n)
			copy(raw, hdr)
			if _, err := io.ReadFull(r.conn, raw[4:]); err != nil {
				fail(err)
				return
			}
			m := &stun.Message{Raw: raw}
			if err := m.Decode(); err != nil {
				fail(fmt.Errorf("stream lost frame sync: %w", err))
				return
			}
			r.frames <- streamFrame{msg: m}
		default:
			fail(fmt.Errorf("stream lost frame sync: first byte %#x", hdr[0]))
			return
		}
	}
}

// next returns the next frame (hang guard: 10 s).
func (r *streamRig) next() streamFrame {
	r.t.Helper()
	select {
	case f, ok := <-r.frames:
		if !ok {
			r.t.Fatalf("stream: %v", <-r.errc)
		}
		return f
	case <-time.After(10 * time.Second):
		r.t.Fatal("stream: nothing arrived")
	}
	return streamFrame{}
}

// take files one frame other than an answer.
func (r *streamRig) take(f streamFrame) {
	r.t.Helper()
	switch {
	case f.msg == nil:
		r.data = append(r.data, f.data)
	case f.msg.Type == stun.NewType(stun.MethodData, stun.ClassIndication):
		var d stun.RawAttribute
		v, err := f.msg.Get(stun.AttrData)
		if err != nil {
			r.t.Fatalf("Data indication without DATA: %v", f.msg)
		}
		d.Value = v
		r.ind = append(r.ind, d.Value)
	default:
		r.t.Fatalf("unexpected message %v", f.msg)
	}
}

func (r *streamRig) exchange(m *stun.Message) (*stun.Message, error) {
	if _, err := r.conn.Write(m.Raw); err != nil {
		return nil, err
	}
	for {
		f := r.next()
		if f.msg != nil && f.msg.TransactionID == m.TransactionID {
			return f.msg, nil
		}
		r.take(f)
	}
}

// awaitData reads frames until n ChannelData payloads have arrived.
func (r *streamRig) awaitData(n int) {
	r.t.Helper()
	for len(r.data) < n {
		r.take(r.next())
	}
}

// allocate allocates and binds ch to peer.
func (r *streamRig) allocate(peer netip.AddrPort, ch uint16) {
	r.t.Helper()
	resp := r.cl.do(stun.MethodAllocate, udpTransport)
	if code := errorCode(r.t, resp); code != 0 {
		r.t.Fatalf("allocate: %d", code)
	}
	r.relay = relayedAddr(r.t, resp).AddrPort()
	if code := errorCode(r.t, r.cl.do(stun.MethodChannelBind, channelNumber(ch),
		peerAddr{net.UDPAddrFromAddrPort(peer)})); code != 0 {
		r.t.Fatalf("channel bind: %d", code)
	}
}

// liveBinding waits until the data plane forwards on the rig's channel
// (hang guard: 10 s).
func (r *streamRig) liveBinding(obs *recObserver, ch uint16) *binding {
	r.t.Helper()
	e := obs.await(r.t, "live binding", func(e fpEvent) bool {
		return e.snap.Channel == ch && e.snap.Relay.Port() == r.relay.Port() && e.snap.Enabled && !e.snap.Removed
	})
	return e.snap.ref
}

func udpPeer(t *testing.T) (*net.UDPConn, netip.AddrPort) {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func newStreamServer(t *testing.T) (*Server, *recObserver) {
	return newStreamServerLoops(t, true)
}

// newStreamServerLoops: loops false reads every relay socket with a
// goroutine of its own, as when the relay loops cannot start.
func newStreamServerLoops(t *testing.T, loops bool) (*Server, *recObserver) {
	t.Helper()
	noRelayLoops.Store(!loops)
	defer noRelayLoops.Store(false)
	srv := newTestServer(t, func(c *Config) {
		c.Listeners = append(c.Listeners, Listener{Network: "tls", Addr: "127.0.0.1:0"})
		c.Certificate = selfSigned(t)
	})
	obs := &recObserver{ch: make(chan fpEvent, 4096)}
	srv.fast.setObserver(obs)
	return srv, obs
}

// seqPayload is datagram i of a test flow: its number, then filler whose
// length varies so every padding length occurs.
func seqPayload(i, size int) []byte {
	b := bytes.Repeat([]byte{byte(i), byte(i >> 8), 0xa5}, size/3+2)[:size]
	binary.BigEndian.PutUint32(b, uint32(i))
	return b
}

// TestStreamPeerDataThroughFastPath: a TCP and a TLS client get peer data
// on a channel byte-exact and in order from the data plane, interleaved on
// the same connection with pion's writes: answers to refreshes and
// permissions, and Data indications from a peer without a channel.
func TestStreamPeerDataThroughFastPath(t *testing.T) {
	for _, tc := range []struct {
		name, network string
		loops         bool
	}{
		{"tcp", "tcp", true},
		{"tls", "tls", true},
		{"tcp-reader-per-socket", "tcp", false},
		{"tls-reader-per-socket", "tls", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, obs := newStreamServerLoops(t, tc.loops)
			if got := len(srv.fast.loops) > 0; got != tc.loops {
				t.Fatalf("relay loops running: %v, want %v", got, tc.loops)
			}
			network := tc.network
			chPeer, chAP := udpPeer(t)
			indPeer, indAP := udpPeer(t)
			r := dialStreamRig(t, srv, network, 0)
			r.startReading()
			r.allocate(chAP, 0x4001)
			if code := errorCode(t, r.cl.do(stun.MethodCreatePermission, peerAddr{net.UDPAddrFromAddrPort(indAP)})); code != 0 {
				t.Fatalf("create permission: %d", code)
			}
			b := r.liveBinding(obs, 0x4001)

			const n = 400
			var want, wantInd [][]byte
			for i := 0; i < n; i++ {
				p := seqPayload(i, 4+(i*37)%1400)
				want = append(want, p)
				if _, err := chPeer.WriteToUDPAddrPort(p, r.relay); err != nil {
					t.Fatal(err)
				}
				if i%9 == 0 { // pion writes these: no channel for this peer
					q := seqPayload(i, 5+i%7)
					wantInd = append(wantInd, q)
					if _, err := indPeer.WriteToUDPAddrPort(q, r.relay); err != nil {
						t.Fatal(err)
					}
				}
				switch i % 40 {
				case 13:
					if code := errorCode(t, r.cl.do(stun.MethodRefresh, lifetime(10*time.Minute))); code != 0 {
						t.Fatalf("refresh: %d", code)
					}
				case 27:
					if code := errorCode(t, r.cl.do(stun.MethodCreatePermission, peerAddr{net.UDPAddrFromAddrPort(indAP)})); code != 0 {
						t.Fatalf("permission refresh: %d", code)
					}
				}
				if i%8 == 7 { // bursts no larger than loopback's buffers take
					r.awaitData(i + 1)
				}
			}
			r.awaitData(n)
			for len(r.ind) < len(wantInd) {
				r.take(r.next())
			}
			for i := range want {
				if !bytes.Equal(r.data[i], want[i]) {
					t.Fatalf("ChannelData %d: got %d bytes %x…, want %d bytes %x…", i,
						len(r.data[i]), r.data[i][:min(8, len(r.data[i]))], len(want[i]), want[i][:8])
				}
			}
			for i := range wantInd {
				if !bytes.Equal(r.ind[i], wantInd[i]) {
					t.Fatalf("Data indication %d: got %x, want %x", i, r.ind[i], wantInd[i])
				}
			}
			if want := tc.loops && network == "tcp"; (loopStreams(srv) == 1) != want {
				t.Fatalf("a relay loop reads the client's socket: %v, want %v", loopStreams(srv) == 1, want)
			}
			// The last frame's counter may trail its delivery by a moment.
			pkts := uint64(0)
			for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
				if _, _, pkts, _ = b.counters(); pkts >= n {
					break
				}
			}
			if pkts != n {
				t.Fatalf("the data plane wrote %d of %d ChannelData frames; pion wrote the rest", pkts, n)
			}
		})
	}
}

// TestStreamSlowClientDropsNotBlocks: a stream client that stops reading
// has its peer data dropped and counted once its backlog is full; the
// relay loop keeps serving another client meanwhile; and once the slow
// client reads again its stream is intact (whole frames, in order) and its
// requests are answered.
func TestStreamSlowClientDropsNotBlocks(t *testing.T) {
	srv, obs := newStreamServer(t)
	for _, network := range []string{"tcp", "tls"} {
		t.Run(network, func(t *testing.T) {
			slowPeer, slowAP := udpPeer(t)
			fastPeer, fastAP := udpPeer(t)
			slow := dialStreamRig(t, srv, network, 4096) // a small window: the server's send buffer fills soon
			slow.allocate(slowAP, 0x4002)
			slow.liveBinding(obs, 0x4002)
			quick := dialStreamRig(t, srv, network, 0)
			quick.startReading()
			quick.allocate(fastAP, 0x4003)
			quick.liveBinding(obs, 0x4003)

			before := metricLabel(t, srv, "turnd_dropped_packets_total", dropSendBuffer)
			sent, got := 0, 0
			for round := 0; round < 4000 && metricLabel(t, srv, "turnd_dropped_packets_total", dropSendBuffer) == before; round++ {
				for k := 0; k < 16; k++ {
					if _, err := slowPeer.WriteToUDPAddrPort(seqPayload(sent, 1200), slow.relay); err != nil {
						t.Fatal(err)
					}
					sent++
				}
				// The other client is served while the slow one's backlog grows.
				if _, err := fastPeer.WriteToUDPAddrPort(seqPayload(round, 100), quick.relay); err != nil {
					t.Fatal(err)
				}
				got++
				quick.awaitData(got)
				if !bytes.Equal(quick.data[got-1], seqPayload(round, 100)) {
					t.Fatalf("the other client got %x", quick.data[got-1][:8])
				}
			}
			if metricLabel(t, srv, "turnd_dropped_packets_total", dropSendBuffer) == before {
				t.Fatalf("%d datagrams to a client that reads nothing: none dropped", sent)
			}

			// The slow client reads again: whole frames in order, with
			// gaps where frames were dropped, then its refresh's answer.
			slow.startReading()
			if code := errorCode(t, slow.cl.do(stun.MethodRefresh, lifetime(10*time.Minute))); code != 0 {
				t.Fatalf("refresh after the backlog: %d", code)
			}
			last := -1
			for _, p := range slow.data {
				if len(p) != 1200 {
					t.Fatalf("a %d-byte frame in a flow of 1200-byte datagrams", len(p))
				}
				seq := int(binary.BigEndian.Uint32(p))
				if seq <= last || !bytes.Equal(p, seqPayload(seq, 1200)) {
					t.Fatalf("frame %d after %d, or corrupted", seq, last)
				}
				last = seq
			}
			if len(slow.data) == 0 || len(slow.data) >= sent {
				t.Fatalf("the slow client got %d of %d frames; want some, not all", len(slow.data), sent)
			}
		})
	}
}

// TestStreamPeerToClientZeroAllocs: relaying to a TCP client, in both
// directions, allocates nothing per frame.
func TestStreamPeerToClientZeroAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation measurement skipped in -short")
	}
	srv, obs := newStreamServer(t)
	peer, peerAP := udpPeer(t)
	r := dialStreamRig(t, srv, "tcp", 0)
	r.allocate(peerAP, 0x4004)
	b := r.liveBinding(obs, 0x4004)
	payload := bytes.Repeat([]byte{7}, 1201) // 3 bytes of padding
	frame := channelData(0x4004, payload)
	frame = append(frame, 0, 0, 0)
	buf := make([]byte, 2048)
	got := buf[:len(frame)]
	deadline := time.Now().Add(time.Minute)
	_ = r.conn.SetReadDeadline(deadline)
	_ = peer.SetReadDeadline(deadline)

	var bad error
	p2c := testing.AllocsPerRun(300, func() {
		if _, err := peer.WriteToUDPAddrPort(payload, r.relay); err != nil {
			bad = err
			return
		}
		if _, err := io.ReadFull(r.conn, got); err != nil || !bytes.Equal(got, frame) {
			bad = errors.Join(err, errors.New("wrong frame"))
		}
	})
	c2p := testing.AllocsPerRun(300, func() {
		if _, err := r.conn.Write(frame); err != nil {
			bad = err
			return
		}
		if n, _, err := peer.ReadFromUDPAddrPort(buf); err != nil || n != len(payload) {
			bad = errors.Join(err, errors.New("wrong datagram"))
		}
	})
	if bad != nil {
		t.Fatal(bad)
	}
	if p2c != 0 || c2p != 0 {
		t.Fatalf("allocations per relayed frame over TCP: peer→client %v, client→peer %v; want 0", p2c, c2p)
	}
	if a, _, c, _ := b.counters(); a < 300 || c < 300 {
		t.Fatalf("the data plane carried %d/%d of 301/301", a, c)
	}
}
