package signaling

import (
	"net"
	"sync/atomic"
	"testing"
)

// windowsMode makes newTestHub serve connections as the hub does on
// Windows (sockio_windows.go): gorilla reads every frame and the writer
// goroutine writes it, no raw socket calls, no read loop. Set only by
// TestHubWithoutRawSockets.
var windowsMode atomic.Bool

// TestHubWithoutRawSockets runs the hub's behaviour tests on the path
// Windows takes, which Linux CI otherwise never exercises: presence and
// signals, errors, size and rate limits, abusive and slow clients, write
// timeouts, resume and drain must hold there as on the raw-socket path.
func TestHubWithoutRawSockets(t *testing.T) {
	windowsMode.Store(true)
	t.Cleanup(func() { windowsMode.Store(false) })
	for _, tc := range []struct {
		name string
		test func(*testing.T)
	}{
		{"JoinPresenceAndSignals", TestJoinPresenceAndSignals},
		{"Errors", TestErrors},
		{"RoomFull", TestRoomFull},
		{"TooLarge", TestTooLarge},
		{"RateLimit", TestRateLimit},
		{"AbusiveClientDisconnected", TestAbusiveClientDisconnected},
		{"LargestLegalBurstIntoReadingClient", TestLargestLegalBurstIntoReadingClient},
		{"StoppedReaderCutWithCloseCode", TestStoppedReaderCutWithCloseCode},
		{"BlockedWriteCutAfterWriteTimeout", TestBlockedWriteCutAfterWriteTimeout},
		{"SlowConsumerDisconnectedWithoutSlowingOthers", TestSlowConsumerDisconnectedWithoutSlowingOthers},
		{"InvalidUTF8SignalNeverForwarded", TestInvalidUTF8SignalNeverForwarded},
		{"PingFloodLimited", TestPingFloodLimited},
		{"ResumeWithinGrace", TestResumeWithinGrace},
		{"DeadPeerRemoved", TestDeadPeerRemoved},
		{"Drain", TestDrain},
	} {
		t.Run(tc.name, tc.test)
	}
}

// TestNoSockDeclinesRawSocket: a hub serving as on Windows never wraps the
// hijacked connection in a sockConn.
func TestNoSockDeclinesRawSocket(t *testing.T) {
	th := newTestHub(t, Config{}, func(h *Hub) { h.noSock = true })
	a, wa := th.join(t, "nosock")
	defer a.Close()
	c := th.connOf(t, wa)
	if c.sock != nil {
		t.Fatal("connection reads through a sockConn; want gorilla's reads on the plain connection")
	}
	if _, ok := c.ws.NetConn().(*net.TCPConn); !ok {
		t.Fatalf("websocket over %T, want the plain *net.TCPConn", c.ws.NetConn())
	}
}
