package relay

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v4"
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
		if fr.pass(b, src) && len(b) > 0 && b[0]&0xC0 != 0x40 {
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
		userBW: newUserLimits(0), stop: make(chan struct{}), now: time.Now,
	}
	s.policy.Store(newPeerPolicy(PeerPolicy{}, nil, nil))
	s.creds.Store(newCredentials(cfg))
	return s
}

// FuzzFramedConn splits arbitrary streams into frames: no panic, and
// every frame handed out is a whole STUN message or ChannelData frame.
func FuzzFramedConn(f *testing.F) {
	bind := stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw
	f.Add(append(append([]byte{}, bind...), bind...))
	f.Add([]byte{0x40, 0x01, 0x00, 0x03, 1, 2, 3, 0})
	f.Add([]byte{0xff})
	s := newFuzzServer(f)
	s.unauth = nil
	f.Fuzz(func(t *testing.T, stream []byte) {
		client, server := net.Pipe()
		defer client.Close()
		go func() {
			_, _ = client.Write(stream)
			client.Close()
		}()
		fc := &framedConn{Conn: server, raw: server}
		fc.front = &front{s: s, transport: "tcp", local: server.LocalAddr(), reply: func([]byte, net.Addr) error { return nil }}
		out, _ := io.ReadAll(fc)
		if len(out) > len(stream) {
			t.Fatalf("read %d bytes from a %d-byte stream", len(out), len(stream))
		}
		if !fc.passThru && len(out) > 0 && !bytes.Contains(stream, out[:min(len(out), 4)]) {
			t.Fatal("output is not from the stream")
		}
	})
}
