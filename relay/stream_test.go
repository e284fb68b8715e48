package relay

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// dialStream connects to the TCP listener and proves the connection is
// served with one Binding round trip.
func dialStream(t *testing.T, srv *Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", srv.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := streamRoundTrip(c, stun.MustBuild(stun.TransactionID, stun.BindingRequest)); err != nil {
		t.Fatalf("binding on a fresh connection: %v", err)
	}
	return c
}

// awaitClosed reads c until the server closes it and counts the STUN
// answers seen on the way. A guard deadline turns "never closed" into a
// failure instead of a hang.
func awaitClosed(t *testing.T, c net.Conn) (answers int) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		_, err := readStreamSTUN(c)
		if err == nil {
			answers++
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the server never closed the connection")
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("read: %v", err)
		}
		return answers
	}
}

// TestStreamOversizeFrames sends, with no login, the frames that made
// turnd spin or smuggle requests: the server closes the connection, answers
// nothing inside the frame, and keeps serving others.
func TestStreamOversizeFrames(t *testing.T) {
	srv := newTestServer(t, nil)
	for _, tc := range []struct {
		name   string
		attack []byte
	}{
		{"64KiB STUN frame", oversizeSTUN(0xFFFF, 3300)},
		{"16-bit overflow carrying 2000 Binding requests", oversizeSTUN(0xFFEC, 2000)},
		{"64KiB ChannelData frame", append([]byte{0x40, 0x00, 0xFF, 0xFF}, make([]byte, 0x10000)...)},
		{"frame one byte over the limit", append(oversizeSTUN(maxStreamFrame+1-20, 0), make([]byte, maxStreamFrame+1-20)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialStream(t, srv)
			go func() { _, _ = c.Write(tc.attack) }() // the server may reset mid-write
			if n := awaitClosed(t, c); n != 0 {
				t.Fatalf("%d requests inside the oversize frame were answered", n)
			}
		})
	}
	if got := metricValue(t, srv, `turnd_dropped_packets_total{reason="oversize_frame"}`); got < 4 {
		t.Fatalf("oversize frames counted %v, want 4", got)
	}
	dialStream(t, srv) // still serving
}

// TestStreamOversizeFrameTLS: the same over TLS (the framer sits above the
// TLS layer).
func TestStreamOversizeFrameTLS(t *testing.T) {
	srv := newTestServer(t, func(c *Config) {
		c.Listeners = append(c.Listeners, Listener{Network: "tls", Addr: "127.0.0.1:0"})
		c.Certificate = selfSigned(t)
	})
	c, err := tls.Dial("tcp", srv.Addr("tls").String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := streamRoundTrip(c, stun.MustBuild(stun.TransactionID, stun.BindingRequest)); err != nil {
		t.Fatalf("binding over TLS: %v", err)
	}
	go func() { _, _ = c.Write(oversizeSTUN(0xFFEC, 3300)) }()
	if n := awaitClosed(t, c); n != 0 {
		t.Fatalf("%d requests inside the oversize frame were answered", n)
	}
}

// TestStreamSlowAndPipelinedFrames: a maximal frame written one byte at a
// time and two frames in one write are both answered.
func TestStreamSlowAndPipelinedFrames(t *testing.T) {
	srv := newTestServer(t, nil)
	c := dialStream(t, srv)
	big := stun.MustBuild(stun.TransactionID, stun.BindingRequest,
		stun.RawAttribute{Type: 0x8888, Value: make([]byte, maxStreamFrame&^3-20-4-8)}, stun.Fingerprint)
	if len(big.Raw) != maxStreamFrame&^3 {
		t.Fatalf("test frame is %d bytes, want the largest STUN message, %d", len(big.Raw), maxStreamFrame&^3)
	}
	for _, b := range big.Raw {
		if _, err := c.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if m, err := readStreamSTUN(c); err != nil || m.TransactionID != big.TransactionID {
		t.Fatalf("maximal frame sent byte by byte: %v %v", m, err)
	}
	a := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	b := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	if _, err := c.Write(append(append([]byte{}, a.Raw...), b.Raw...)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []*stun.Message{a, b} {
		if m, err := readStreamSTUN(c); err != nil || m.TransactionID != want.TransactionID {
			t.Fatalf("pipelined frames: %v %v", m, err)
		}
	}
}

// TestStreamIdleTimeout: a ChannelData frame without a login no longer
// keeps a connection open; without an allocation it is closed after
// StreamIdleTimeout.
func TestStreamIdleTimeout(t *testing.T) {
	srv := newTestServer(t, func(c *Config) { c.StreamIdleTimeout = 300 * time.Millisecond })
	c := dialStream(t, srv)
	if _, err := c.Write([]byte{0x40, 0x00, 0x00, 0x00}); err != nil {
		t.Fatal(err)
	}
	awaitClosed(t, c)
}

// TestStreamConnectionCaps: past the per-source cap a new connection is
// closed at once; the ones within it keep working.
func TestStreamConnectionCaps(t *testing.T) {
	srv := newTestServer(t, func(c *Config) { c.MaxStreamConnsPerSource = 2 })
	first, second := dialStream(t, srv), dialStream(t, srv)
	third, err := net.Dial("tcp", srv.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	_, _ = third.Write(stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw)
	if n := awaitClosed(t, third); n != 0 {
		t.Fatal("connection over the cap was answered")
	}
	for _, c := range []net.Conn{first, second} {
		if _, err := streamRoundTrip(c, stun.MustBuild(stun.TransactionID, stun.BindingRequest)); err != nil {
			t.Fatalf("connection within the cap: %v", err)
		}
	}
	if got := metricValue(t, srv, `turnd_dropped_packets_total{reason="connection_limit"}`); got != 1 {
		t.Fatalf("connection-limit drops %v, want 1", got)
	}
}

// failingListener fails Accept with EMFILE fails times, reporting each
// failure, then hands out conn.
type failingListener struct {
	net.Listener
	fails  int
	failed chan int      // buffered: one entry per failure
	atGate chan struct{} // closed once every failure was returned
	gate   chan struct{} // closed: the next Accept may succeed
	conn   net.Conn
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		l.failed <- l.fails
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	close(l.atGate)
	<-l.gate
	return l.conn, nil
}

// TestAcceptErrorsRetried: out of file descriptors, Accept backs off and
// retries instead of stopping the listener; /readyz says 503 while it keeps
// failing and 200 again once it recovers.
func TestAcceptErrorsRetried(t *testing.T) {
	srv := newTestServer(t, nil)
	client, server := net.Pipe()
	defer client.Close()
	fl := &failingListener{fails: acceptFailPersistent, failed: make(chan int, acceptFailPersistent),
		atGate: make(chan struct{}), gate: make(chan struct{}), conn: server}
	var slept []time.Duration
	l := &serverListener{Listener: fl, s: srv, transport: "tcp", conns: newConnLimiter(0, 0),
		health: &acceptHealth{s: srv, addr: "test"}, closed: make(chan struct{}),
		sleepFn: func(d time.Duration) bool { slept = append(slept, d); return true }}
	readyz := func() int {
		rec := httptest.NewRecorder()
		srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code
	}
	got := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Errorf("Accept returned %v; want it to retry", err)
		}
		got <- c
	}()
	<-fl.atGate
	if code := readyz(); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d while Accept keeps failing, want 503", code)
	}
	close(fl.gate)
	if c := <-got; c == nil {
		t.Fatal("no connection after recovery")
	}
	if code := readyz(); code != http.StatusOK {
		t.Fatalf("/readyz %d after recovery, want 200", code)
	}
	if len(slept) != acceptFailPersistent || slept[0] != acceptBackoffMin || slept[len(slept)-1] <= slept[0] {
		t.Fatalf("back-off %v, want %d growing waits from %v", slept, acceptFailPersistent, acceptBackoffMin)
	}
	if got := metricValue(t, srv, "turnd_accept_errors_total"); got != acceptFailPersistent {
		t.Fatalf("accept errors counted %v", got)
	}
}

// TestFramerSteadyStateAllocs: framing a stream of ChannelData and
// Binding frames allocates nothing per frame once warm.
func TestFramerSteadyStateAllocs(t *testing.T) {
	s := newFuzzServer(t)
	s.unauth = nil
	var stream []byte
	for range 8 {
		stream = append(stream, 0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0)
	}
	stream = append(stream, stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw...)
	fc := newFramedConn(s, "tcp", &fakeStream{data: stream, chunk: 7, loop: true}, nopDeadlines{}, nil, nil)
	p := make([]byte, inboundMTU)
	for range 100 {
		if _, err := fc.Read(p); err != nil {
			t.Fatal(err)
		}
	}
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := fc.Read(p); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per frame, want 0", n)
	}
}

// BenchmarkFramerOneByteReads: a maximal frame arriving one byte per read
// (the slow-frame attack) costs linear work.
func BenchmarkFramerOneByteReads(b *testing.B) {
	s := newFuzzServer(b)
	s.unauth = nil
	frame := make([]byte, maxStreamFrame)
	binary.BigEndian.PutUint16(frame, 0x4000)
	binary.BigEndian.PutUint16(frame[2:], maxStreamFrame-4-3) // padded to maxStreamFrame-... below
	frame = frame[:4+(maxStreamFrame-4-3+3)&^3]
	fc := newFramedConn(s, "tcp", &fakeStream{data: frame, chunk: 1, loop: true}, nopDeadlines{}, nil, nil)
	p := make([]byte, inboundMTU)
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := fc.Read(p); err != nil {
			b.Fatal(err)
		}
	}
}

// TestStreamSignedRequestThenPipelinedFrame: a signed request followed in
// the same read by another frame; checking MESSAGE-INTEGRITY in place must
// not disturb the next frame in the connection's buffer (it once
// overwrote it with the computed HMAC).
func TestStreamSignedRequestThenPipelinedFrame(t *testing.T) {
	srv := newTestServer(t, nil)
	r := newRawStreamClient(t, srv, "alice", "wonderland")
	if code := errorCode(t, r.do(stun.MethodAllocate, udpTransport)); code != 0 {
		t.Fatal(code)
	}
	refresh := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodRefresh, stun.ClassRequest), lifetime(time.Minute),
		stun.NewUsername(r.user), r.realm, r.nonce, stun.MessageIntegrity(r.key), stun.Fingerprint)
	bind := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	if _, err := r.stream.Write(append(append([]byte{}, refresh.Raw...), bind.Raw...)); err != nil {
		t.Fatal(err)
	}
	r.stream.SetReadDeadline(time.Now().Add(10 * time.Second))
	for _, want := range []*stun.Message{refresh, bind} {
		m, err := readStreamSTUN(r.stream)
		if err != nil || m.TransactionID != want.TransactionID {
			t.Fatalf("pipelined after a signed request: %v %v", m, err)
		}
		if code := errorCode(t, m); code != 0 {
			t.Fatalf("%v answered %d", m.Type, code)
		}
	}
}
