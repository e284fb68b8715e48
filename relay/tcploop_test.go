//go:build linux

package relay

import (
	"bytes"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// loopStreams counts the client connections the relay loops read.
func loopStreams(srv *Server) int {
	n := 0
	for _, l := range srv.fast.loops {
		l.mu.Lock()
		for ls := range l.socks.all() {
			if ls.st != nil {
				n++
			}
		}
		l.mu.Unlock()
	}
	return n
}

// awaitLoopStreams waits until the loops read want client connections
// (hang guard: 10 s).
func awaitLoopStreams(t *testing.T, srv *Server, want int) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		if loopStreams(srv) == want {
			return
		}
	}
	t.Fatalf("relay loops read %d client connections, want %d", loopStreams(srv), want)
}

// TestStreamLoopTakesTCPClients: once a plain-TCP client holds an
// allocation its socket is read by a relay loop; pipelined requests past
// the loop's queue for pion are all answered, in order (the loop pauses
// and resumes); and the client's close ends the connection and the
// loop's interest in it. TLS clients keep their goroutine.
func TestStreamLoopTakesTCPClients(t *testing.T) {
	srv := newTestServer(t, func(c *Config) {
		c.Listeners = append(c.Listeners, Listener{Network: "tls", Addr: "127.0.0.1:0"})
		c.Certificate = selfSigned(t)
		c.UnauthRate = -1 // the pipelined Binding requests are unauthenticated
	})
	obs := &recObserver{ch: make(chan fpEvent, 4096)}
	srv.fast.setObserver(obs)
	_, peerAP := udpPeer(t)

	tlsRig := dialStreamRig(t, srv, "tls", 0)
	tlsRig.allocate(peerAP, 0x4005)
	tlsRig.liveBinding(obs, 0x4005)

	r := dialStreamRig(t, srv, "tcp", 0)
	r.allocate(peerAP, 0x4006)
	r.liveBinding(obs, 0x4006)
	awaitLoopStreams(t, srv, 1) // the TCP client only

	const n = 5 * streamQueueMax
	var batch []byte
	var ids [][stun.TransactionIDSize]byte
	for i := 0; i < n; i++ {
		m := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
		batch = append(batch, m.Raw...)
		ids = append(ids, m.TransactionID)
	}
	if _, err := r.conn.Write(batch); err != nil {
		t.Fatal(err)
	}
	_ = r.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for i := 0; i < n; i++ {
		m, err := readStreamSTUN(r.conn)
		if err != nil {
			t.Fatalf("answer %d of %d: %v", i, n, err)
		}
		if m.TransactionID != ids[i] || m.Type != stun.BindingSuccess {
			t.Fatalf("answer %d: %v, want the binding success for request %d", i, m, i)
		}
	}

	r.conn.Close()
	awaitLoopStreams(t, srv, 0)
	// The TLS client is served as before.
	if code := errorCode(t, tlsRig.cl.do(stun.MethodRefresh, lifetime(time.Minute))); code != 0 {
		t.Fatalf("TLS refresh: %d", code)
	}
}

// TestStreamLoopServerClose: closing the server ends a connection a relay
// loop read (its reader in pion does not wait forever for frames no loop
// will read): the client sees the connection close.
func TestStreamLoopServerClose(t *testing.T) {
	srv, obs := newStreamServer(t)
	_, peerAP := udpPeer(t)
	r := dialStreamRig(t, srv, "tcp", 0)
	r.allocate(peerAP, 0x4007)
	r.liveBinding(obs, 0x4007)
	awaitLoopStreams(t, srv, 1)
	srv.Close()
	awaitClosed(t, r.conn)
}

// FuzzLoopFramer feeds arbitrary streams, arriving in arbitrary pieces, to
// the relay loop's framing (loopStream.frames) with nothing to forward to:
// no panic; every frame queued for pion is one whole frame of at most
// maxStreamFrame bytes and never ambiguous ChannelData; together they are
// the stream's frames in order, less the ambiguous ones, up to where the
// stream ends or breaks; a broken stream ends with the framer's errors.
func FuzzLoopFramer(f *testing.F) {
	bind := stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw
	f.Add(append(append([]byte{}, bind...), bind...), uint8(0))
	f.Add(append(append([]byte{}, bind...), bind...), uint8(5))
	f.Add([]byte{0x40, 0x01, 0x00, 0x03, 1, 2, 3, 0}, uint8(3))
	f.Add(bytes.Repeat([]byte{0x40, 0x01, 0x00, 0x00}, 3*streamQueueMax), uint8(9)) // pauses
	f.Add([]byte{0xff}, uint8(0))
	f.Add(oversizeSTUN(0xFFEC, 5), uint8(7))
	f.Add(append([]byte{0x40, 0x00, 0xFF, 0xFF}, bind...), uint8(1))
	f.Add(append([]byte{0x40, 0x00, 0x00, 0x10, 0x21, 0x12, 0xA4, 0x42}, make([]byte, 12)...), uint8(0))
	s := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		fc := newFramedConn(s, "tcp", &fakeStream{}, nopDeadlines{}, nil, nil)
		st := &loopStream{fc: fc, done: make(chan struct{}), ready: make(chan struct{}, 1)}
		var got []byte
		take := func() { // pion's side, as pop does, without the loop to rearm
			st.qmu.Lock()
			for _, q := range st.q[st.head:] {
				if size, err := frameSize(q); err != nil || size != len(q) || size > maxStreamFrame || ambiguousChannelData(q) {
					t.Fatalf("queued for pion: %x", q)
				}
				got = append(got, q...)
			}
			st.q, st.head, st.paused = st.q[:0], 0, false
			st.qmu.Unlock()
		}
		step := max(int(chunk), 1)
		for off := 0; off < len(stream) && !st.stopped; {
			if fc.r > 0 { // as drain compacts
				fc.w = copy(fc.buf, fc.buf[fc.r:fc.w])
				fc.r = 0
			}
			n := copy(fc.buf[fc.w:], stream[off:min(off+step, len(stream))])
			fc.w += n
			off += n
			for !st.frames() && !st.stopped {
				take() // paused: pion catches up
			}
		}
		take()
		// The reference: whole frames from the start, ambiguous ones
		// dropped, up to a partial frame or a bad one.
		var want []byte
		var wantErr error
		for rest := stream; ; {
			size, err := frameSize(rest)
			if err == nil && size > maxStreamFrame {
				err = errFrameTooLarge
			}
			if err != nil {
				wantErr = err
				break
			}
			if size == 0 || len(rest) < size {
				break
			}
			if !ambiguousChannelData(rest[:size]) {
				want = append(want, rest[:size]...)
			}
			rest = rest[size:]
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frames for pion %x, want %x", got, want)
		}
		if st.qerr != wantErr {
			t.Fatalf("stream ended with %v, want %v", st.qerr, wantErr)
		}
	})
}

// TestStreamLoopBusyClient: a client that sends more than one drain reads
// (streamReadsPerDrain reads) in one go has all of it relayed, and the
// request behind it answered: the loop takes its socket up again after
// serving the others.
func TestStreamLoopBusyClient(t *testing.T) {
	srv, obs := newStreamServer(t)
	_, peerAP := udpPeer(t)
	r := dialStreamRig(t, srv, "tcp", 0)
	r.allocate(peerAP, 0x4008)
	b := r.liveBinding(obs, 0x4008)
	awaitLoopStreams(t, srv, 1)

	const frames = 4 * streamReadsPerDrain * frameBufSize / 104
	var burst []byte
	for i := 0; i < frames; i++ {
		burst = append(burst, channelData(0x4008, seqPayload(i, 100))...)
	}
	if _, err := r.conn.Write(burst); err != nil {
		t.Fatal(err)
	}
	if _, err := streamRoundTrip(r.conn, stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)); err != nil {
		t.Fatalf("the request behind the burst: %v", err)
	}
	// The loop forwarded every frame before it queued the request.
	if sent, _, _, _ := b.counters(); sent != frames {
		t.Fatalf("%d of %d frames relayed before the request behind them was answered", sent, frames)
	}
}
