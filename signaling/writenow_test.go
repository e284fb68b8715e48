package signaling

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"
)

// Frames written inline carry a WebSocket header of the hub's own: every
// length encoding (7-bit, 16-bit, 64-bit) reaches the client whole and in
// order.
func TestInlineFrameLengths(t *testing.T) {
	th := newTestHub(t, Config{})
	a, wa := th.join(t, "lengths")
	b, wb := th.join(t, "lengths")
	expect(t, a, TypePeerJoined)
	lengths := []int{125, 126, 127, 1000, 0xffff, 0x10000}
	for _, n := range lengths {
		if err := b.Signal(wa.ID, dataForFrame(wb.ID, n)); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range lengths {
		m := expect(t, a, TypeSignal)
		if got := len(signalFrame(m.From, m.Data)); m.From != wb.ID || got != n {
			t.Fatalf("signal from %q with a %d-byte frame, want %d bytes from %q", m.From, got, n, wb.ID)
		}
	}
	alive(t, a)
}

// dataForFrame is signal data that makes the frame from from n bytes long.
func dataForFrame(from string, n int) json.RawMessage {
	base := len(signalFrame(from, []byte(`{"p":""}`)))
	return json.RawMessage(`{"p":"` + strings.Repeat("x", n-base) + `"}`)
}

// An inline write that fails on a connection already closing (a drain
// that began meanwhile) still gets the socket closed: the connection's
// reader waits for that before it settles the session.
func TestFailedInlineWriteOnClosingConnClosesSocket(t *testing.T) {
	th := newTestHub(t, Config{})
	_, w := rawJoin(t, th, "failing", nil)
	c := th.connOf(t, w)
	if c.sock == nil {
		t.Skip("not a plain TCP connection")
	}
	if err := c.sock.CloseWrite(); err != nil { // the next write fails (EPIPE)
		t.Fatal(err)
	}
	c.mu.Lock()
	c.closing, c.reason = true, reasonDrain // as fail does, without its writer
	c.writing = true                        // the token, as enqueue takes it
	c.qbytes += 2
	c.mu.Unlock()
	c.writeNow(outFrame{b: []byte(`{}`)})
	ctx := ctxT(t)
	for {
		c.mu.Lock()
		closed := c.socketClosed
		c.mu.Unlock()
		if closed {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("socket never closed after a failed inline write on a closing connection")
		default:
			runtime.Gosched()
		}
	}
}
