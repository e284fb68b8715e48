package relay

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// FuzzFront feeds arbitrary datagrams to the front door: it must never
// panic, and must only pass what is ChannelData-shaped or a STUN request
// or Send indication.
func FuzzFront(f *testing.F) {
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw)
	f.Add(stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.NewUsername("1:u"), stun.NewRealm("r"), stun.NewNonce("n"), stun.MessageIntegrity([]byte("k"))).Raw)
	f.Add([]byte{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4})
	f.Add([]byte{})
	s := newFuzzServer(f)
	fr := &front{s: s, transport: "udp", local: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3478},
		reply: func([]byte, net.Addr) error { return nil }}
	src := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5000}
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, ok := fr.pass(append([]byte(nil), b...), src); ok && len(b) > 0 && b[0]&0xC0 != 0x40 {
			m := &stun.Message{Raw: append([]byte(nil), b...)}
			if err := m.Decode(); err != nil {
				t.Fatalf("passed an undecodable packet: %v", err)
			}
			if m.Type.Class != stun.ClassRequest && m.Type != (stun.MessageType{Method: stun.MethodSend, Class: stun.ClassIndication}) {
				t.Fatalf("passed %v", m.Type)
			}
		}
	})
}

func newFuzzServer(tb testing.TB) *Server {
	cfg := Config{Realm: "r", Secrets: [][]byte{[]byte("k")}}.withDefaults()
	s := &Server{
		cfg: cfg, log: cfg.Logger, metrics: newMetrics(), stash: newAuthStash(), allocs: newAllocTable(),
		userBW: newUserLimits(0), stop: make(chan struct{}), now: time.Now, streamConns: newConnLimiter(0, 0),
	}
	s.policy.Store(newPeerPolicy(PeerPolicy{}, nil, nil))
	s.creds.Store(newCredentials(cfg))
	return s
}

// FuzzFramedConn splits arbitrary streams, arriving in arbitrary pieces,
// into frames and feeds them to pion's own stream framing exactly as the
// server does: no panic, every frame is at most maxStreamFrame bytes, and
// pion reads back exactly the frames the framer handed out (no smuggling
// past the front door, no frame pion would misread).
func FuzzFramedConn(f *testing.F) {
	bind := stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw
	f.Add(append(append([]byte{}, bind...), bind...), uint8(0))
	f.Add(append(append([]byte{}, bind...), bind...), uint8(1))
	f.Add([]byte{0x40, 0x01, 0x00, 0x03, 1, 2, 3, 0}, uint8(3))
	f.Add([]byte{0xff}, uint8(0))
	f.Add(oversizeSTUN(0xFFEC, 5), uint8(7))                         // 16-bit overflow in pion's length sum
	f.Add(oversizeSTUN(0xFFFF, 3), uint8(200))                       // 64 KiB STUN length
	f.Add(append([]byte{0x40, 0x00, 0xFF, 0xFF}, bind...), uint8(1)) // 64 KiB ChannelData length
	f.Add(append([]byte{0x40, 0x00, 0x00, 0x10, 0x21, 0x12, 0xA4, 0x42}, make([]byte, 12)...), uint8(0))
	s := newFuzzServer(f)
	s.unauth = nil
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		fc := newFramedConn(s, "tcp", &fakeStream{data: stream, chunk: int(chunk)}, nopDeadlines{}, nil, nil)
		var frames [][]byte
		pionSide := turn.NewSTUNConn(&framesConn{next: fc, onFrame: func(b []byte) {
			frames = append(frames, append([]byte(nil), b...))
		}})
		buf := make([]byte, inboundMTU)
		for i := 0; ; i++ {
			n, _, err := pionSide.ReadFrom(buf)
			if err != nil {
				break
			}
			if i >= len(frames) {
				t.Fatalf("pion read frame %d but the framer handed out only %d", i, len(frames))
			}
			if n >= inboundMTU || len(frames[i]) > maxStreamFrame {
				t.Fatalf("frame of %d bytes reached pion", n)
			}
			if !bytes.Equal(buf[:n], frames[i]) {
				t.Fatalf("pion read %x, the framer handed out %x", buf[:n], frames[i])
			}
		}
	})
}

// oversizeSTUN is a STUN header announcing length bytes, followed by
// copies Binding requests (what a frame-smuggling attack sends).
func oversizeSTUN(length uint16, copies int) []byte {
	b := []byte{0x00, 0x01, byte(length >> 8), byte(length), 0x21, 0x12, 0xA4, 0x42}
	b = append(b, make([]byte, 12)...)
	for range copies {
		b = append(b, stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw...)
	}
	return b
}

// fakeStream is a net.Conn reading data in pieces of at most chunk bytes
// (0: all that fits), then io.EOF; it discards writes.
type fakeStream struct {
	data  []byte
	chunk int
	loop  bool // start over at the end instead of EOF
	off   int
}

func (f *fakeStream) Read(p []byte) (int, error) {
	if f.off >= len(f.data) {
		if !f.loop || len(f.data) == 0 {
			return 0, io.EOF
		}
		f.off = 0
	}
	end := len(f.data)
	if f.chunk > 0 {
		end = min(end, f.off+f.chunk)
	}
	n := copy(p, f.data[f.off:end])
	f.off += n
	return n, nil
}

func (f *fakeStream) Write(p []byte) (int, error) { return len(p), nil }
func (f *fakeStream) Close() error                { return nil }
func (f *fakeStream) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3478}
}
func (f *fakeStream) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5000}
}
func (f *fakeStream) SetDeadline(time.Time) error      { return nil }
func (f *fakeStream) SetReadDeadline(time.Time) error  { return nil }
func (f *fakeStream) SetWriteDeadline(time.Time) error { return nil }

// nopDeadlines stands in for the raw TCP connection under a fake stream.
type nopDeadlines struct{ net.Conn }

func (nopDeadlines) SetReadDeadline(time.Time) error { return nil }

// framesConn records every Read result of next as one frame.
type framesConn struct {
	net.Conn
	next    net.Conn
	onFrame func([]byte)
}

func (c *framesConn) Read(p []byte) (int, error) {
	n, err := c.next.Read(p)
	if n > 0 {
		c.onFrame(p[:n])
	}
	return n, err
}

func (c *framesConn) RemoteAddr() net.Addr { return c.next.RemoteAddr() }
func (c *framesConn) LocalAddr() net.Addr  { return c.next.LocalAddr() }
