//go:build linux

package relay

import (
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// loopStreams counts the client connections the relay loops read.
func loopStreams(srv *Server) int {
	n := 0
	for _, l := range srv.fast.loops {
		l.mu.Lock()
		for _, ls := range l.socks {
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
