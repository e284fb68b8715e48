package signaling

import (
	"runtime"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// withoutLoop keeps a hub's connections on their reader goroutines (the
// warm readers are what these tests look at; loop_test.go has the loop's).
func withoutLoop(h *Hub) { h.noLoop = true }

// connOf is the hub's connection of the peer that joined with welcome w.
func (th *testHub) connOf(t *testing.T, w ServerMessage) *conn {
	t.Helper()
	th.mu.Lock()
	s := th.sessions[w.Resume]
	th.mu.Unlock()
	if s == nil {
		t.Fatal("no session for the welcome")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn
}

// waitReadState waits until c's reader reports state (the reader moves
// between states on its own goroutine; there is no event to await).
func waitReadState(t *testing.T, c *conn, state uint8) {
	t.Helper()
	ctx := ctxT(t)
	for {
		c.mu.Lock()
		got := c.readState
		c.mu.Unlock()
		if got == state {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("reader state %d, want %d", got, state)
		default:
			runtime.Gosched()
		}
	}
}

// A reader stays warm after a signal, is cooled by the second sweep
// without a message, and the fresh reader that replaces it reads the next
// message (and goes warm again).
func TestWarmReaderCoolsAndKeepsReading(t *testing.T) {
	th := newTestHub(t, Config{PingInterval: time.Hour, WriteTimeout: time.Hour}, withoutLoop) // sweeps by hand only
	a, wa := th.join(t, "warm")
	b, wb := th.join(t, "warm")
	expect(t, a, TypePeerJoined)
	signal := func(n int) {
		t.Helper()
		if err := a.Signal(wb.ID, map[string]any{"n": n}); err != nil {
			t.Fatal(err)
		}
		if m := expect(t, b, TypeSignal); string(m.Data) != `{"n":`+string(rune('0'+n))+`}` {
			t.Fatalf("signal %d: data %s", n, m.Data)
		}
	}
	signal(1)
	ac := th.connOf(t, wa)
	waitReadState(t, ac, readWarm)
	now := time.Now()
	ac.sweep(now) // a message since the last sweep: stays warm
	ac.mu.Lock()
	if ac.readState != readWarm {
		ac.mu.Unlock()
		t.Fatalf("first sweep after a message: state %d, want warm", ac.readState)
	}
	ac.mu.Unlock()
	ac.sweep(now) // a sweep without a message: cooled
	waitReadState(t, ac, readBusy)
	signal(2) // read by the fresh reader
	waitReadState(t, ac, readWarm)
	signal(3)
}

// Two signals in one TCP segment: the second is already in the read
// buffer when the first has been handled, and must not wait for more
// data on the socket.
func TestWarmReaderHandlesBufferedFrame(t *testing.T) {
	th := newTestHub(t, Config{})
	b, wb := th.join(t, "buffered")
	raw, _ := rawJoin(t, th, "buffered", nil)
	expect(t, b, TypePeerJoined)
	var seg []byte
	for _, msg := range []string{
		`{"type":"signal","to":"` + wb.ID + `","data":{"n":1}}`,
		`{"type":"signal","to":"` + wb.ID + `","data":{"n":2}}`,
	} {
		seg = append(seg, maskedTextFrame(msg)...)
	}
	if _, err := raw.NetConn().Write(seg); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`{"n":1}`, `{"n":2}`} {
		if m := expect(t, b, TypeSignal); string(m.Data) != want {
			t.Fatalf("data %s, want %s", m.Data, want)
		}
	}
	// The gorilla client still owns the stream: one more through it.
	if err := raw.WriteMessage(websocket.TextMessage, []byte(`{"type":"signal","to":"`+wb.ID+`","data":{"n":3}}`)); err != nil {
		t.Fatal(err)
	}
	if m := expect(t, b, TypeSignal); string(m.Data) != `{"n":3}` {
		t.Fatalf("data %s", m.Data)
	}
}

// maskedTextFrame is a client's text frame of a short message (RFC 6455,
// 5.2; clients mask).
func maskedTextFrame(msg string) []byte {
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	f := []byte{0x81, 0x80 | byte(len(msg)), key[0], key[1], key[2], key[3]}
	for i := 0; i < len(msg); i++ {
		f = append(f, msg[i]^key[i%4])
	}
	return f
}

// A control frame after a signal sends the warm reader away (a fresh
// reader handles it, so an idle connection does not keep a grown stack
// parked inside NextReader); the ping is answered and signals keep flowing.
func TestWarmReaderLeavesOnControlFrame(t *testing.T) {
	th := newTestHub(t, Config{}, withoutLoop)
	b, wb := th.join(t, "control")
	raw, w := rawJoin(t, th, "control", nil)
	expect(t, b, TypePeerJoined)
	rc := th.connOf(t, w)
	pongs := make(chan string, 1)
	raw.SetPongHandler(func(s string) error { pongs <- s; return nil })
	go func() { // the raw client's reader: control frames are handled inside ReadMessage
		for {
			if _, _, err := raw.ReadMessage(); err != nil {
				return
			}
		}
	}()
	send := func(n string) {
		t.Helper()
		if err := raw.WriteMessage(websocket.TextMessage, []byte(`{"type":"signal","to":"`+wb.ID+`","data":{"n":`+n+`}}`)); err != nil {
			t.Fatal(err)
		}
		if m := expect(t, b, TypeSignal); string(m.Data) != `{"n":`+n+`}` {
			t.Fatalf("data %s", m.Data)
		}
	}
	send("1")
	waitReadState(t, rc, readWarm)
	if err := raw.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(waitFor)); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-pongs:
		if p != "hi" {
			t.Fatalf("pong %q", p)
		}
	case <-ctxT(t).Done():
		t.Fatal("no pong")
	}
	send("2")
	waitReadState(t, rc, readWarm)
}
