package signaling

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// rawJoin dials a plain gorilla connection and joins room with it, for
// tests that read (or do not read) the socket themselves.
func rawJoin(t *testing.T, th *testHub, room string, d *websocket.Dialer) (*websocket.Conn, ServerMessage) {
	t.Helper()
	if d == nil {
		d = websocket.DefaultDialer
	}
	ws, _, err := d.Dial(th.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"join","room":"`+room+`"}`)); err != nil {
		t.Fatal(err)
	}
	_, b, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	w, err := DecodeServerMessage(b)
	if err != nil || w.Type != TypeWelcome {
		t.Fatalf("welcome: %v %s", err, b)
	}
	return ws, w
}

// The largest burst the default limits allow: every other member of a
// full room (8) sends its whole burst (100 messages) of the largest
// message (64 KiB) at once, 44 MiB in all, to one client that reads as
// fast as loopback allows. It loses nothing and stays connected.
func TestLargestLegalBurstIntoReadingClient(t *testing.T) {
	th := newTestHub(t, Config{})
	cfg := th.cfg
	recv, wr := rawJoin(t, th, "burst", nil)

	senders := make([]*Client, cfg.RoomCapacity-1)
	for i := range senders {
		senders[i], _ = th.join(t, "burst")
	}
	// The receiver reads raw frames; presence first.
	for range senders {
		_, b, err := recv.ReadMessage()
		if err != nil || !bytes.Contains(b, []byte(TypePeerJoined)) {
			t.Fatalf("presence: %v %s", err, b)
		}
	}
	// Each message is as large as the hub accepts. Under the race detector
	// (about ten times slower) a quarter of that, 11 MiB in all: still well
	// over the 4 MiB queue limit, so the reader must keep pace.
	size := cfg.MaxMessageBytes
	if raceEnabled {
		size /= 4
	}
	envelope := len(`{"type":"signal","to":"` + wr.ID + `","data":{"s":"0000","seq":"000","pad":""}}`)
	pad := strings.Repeat("x", size-envelope)
	var wg sync.WaitGroup
	errs := make(chan error, len(senders))
	for si, s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range cfg.MessageBurst {
				msg := fmt.Sprintf(`{"type":"signal","to":"%s","data":{"s":"%04d","seq":"%03d","pad":"%s"}}`, wr.ID, si, seq, pad)
				if err := s.SendRaw([]byte(msg)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	want := make([]int, len(senders))
	total := len(senders) * cfg.MessageBurst
	for got := 0; got < total; got++ {
		_, b, err := recv.ReadMessage()
		if err != nil {
			t.Fatalf("receiver cut after %d of %d messages: %v", got, total, err)
		}
		i := bytes.Index(b, []byte(`"s":`))
		if i < 0 {
			t.Fatalf("message %d is not a burst signal: %.100s", got, b)
		}
		si, _ := strconv.Atoi(string(b[i+5 : i+9]))    // "s":"0001"
		seq, _ := strconv.Atoi(string(b[i+18 : i+21])) // ","seq":"042"
		if seq != want[si] {
			t.Fatalf("from sender %d: seq %d, want %d", si, seq, want[si])
		}
		want[si]++
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, s := range senders { // each still connected
		if err := s.Send(ClientMessage{Type: TypePing}); err != nil {
			t.Fatal(err)
		}
		for m := next(t, s); m.Type != TypePong; m = next(t, s) {
		}
	}
	if v := th.metric(t, `signal_disconnects_total{reason="slow-consumer"}`); v != "" && v != "0" {
		t.Fatalf("slow-consumer disconnects = %s", v)
	}
}

// cutEvents reports the hub's slow-consumer cuts (queued bytes, or -1 for
// a blocked write).
func cutEvents(th *testHub) <-chan int {
	ch := make(chan int, 4)
	th.onCut = func(n int) { ch <- n }
	return ch
}

// A client that stops reading is cut once more than SendQueueBytes wait
// for it, and gets 4001 once it reads again: the close frame follows the
// data already on its way, it is not lost to a reset (1006).
func TestStoppedReaderCutWithCloseCode(t *testing.T) {
	const limit = 256 << 10
	th := newTestHub(t, Config{SendQueueBytes: limit, MessageRate: 1e6, MessageBurst: 1 << 20,
		WriteTimeout: time.Hour}) // only the byte limit applies here
	cuts := cutEvents(th)
	sender, _ := th.join(t, "stop")
	recv, wr := rawJoin(t, th, "stop", smallBufferDialer())
	expect(t, sender, TypePeerJoined)

	pad := strings.Repeat("x", 4<<10)
	var queued int
loop:
	for i := range 20000 { // far more than socket buffers and the queue hold
		select {
		case queued = <-cuts:
			break loop
		default:
		}
		if err := sender.Signal(wr.ID, map[string]any{"seq": i, "pad": pad}); err != nil {
			t.Fatal(err)
		}
		if i%64 == 0 {
			alive(t, sender) // the hub has handled everything sent so far
		}
	}
	if queued == 0 {
		select {
		case queued = <-cuts:
		case <-ctxT(t).Done():
			t.Fatal("a client that reads nothing was never cut")
		}
	}
	frame := len(signalFrame(wr.ID, []byte(`{"pad":"`+pad+`","seq":19999}`)))
	if queued <= limit || queued > limit+frame {
		t.Fatalf("cut with %d bytes queued, want just over the limit %d", queued, limit)
	}
	// The client reads again: everything sent before the cut, then 4001.
	var err error
	for err == nil {
		_, _, err = recv.ReadMessage()
	}
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != CloseSlowConsumer {
		t.Fatalf("stopped reader ended with %v, want close %d", err, CloseSlowConsumer)
	}
	if m := expect(t, sender, TypePeerLeft); m.ID != wr.ID {
		t.Fatalf("peer-left = %+v", m)
	}
}

// A write that stays blocked for WriteTimeout on the hub's clock cuts the
// connection, even when the queue is far below its byte limit.
func TestBlockedWriteCutAfterWriteTimeout(t *testing.T) {
	clk := newFakeClock()
	th := newTestHub(t, Config{SendQueueBytes: 1 << 30, WriteTimeout: 10 * time.Second, PingInterval: time.Hour,
		MessageRate: 1e6, MessageBurst: 1 << 20, now: clk.now})
	cuts := cutEvents(th)
	sender, _ := th.join(t, "blocked")
	_, wr := rawJoin(t, th, "blocked", smallBufferDialer())
	expect(t, sender, TypePeerJoined)

	// 16 MiB to a client that reads nothing: more than the socket buffers
	// on both ends hold, so the hub's writer is stuck in a write.
	pad := strings.Repeat("x", 60<<10)
	for i := range 16 << 4 {
		if err := sender.Signal(wr.ID, map[string]any{"seq": i, "pad": pad}); err != nil {
			t.Fatal(err)
		}
	}
	alive(t, sender) // the hub has queued all of it

	// Sweep the receiver's connection only: the sender's last write (the
	// pong) may still be finishing, and on a clock that jumps it would
	// look blocked too.
	th.mu.Lock()
	sess := th.sessions[wr.Resume]
	th.mu.Unlock()
	sess.mu.Lock()
	rc := sess.conn
	sess.mu.Unlock()
	sweep := func() { rc.sweep(clk.now()) }
	clk.advance(th.cfg.WriteTimeout - time.Millisecond)
	sweep()
	select {
	case n := <-cuts:
		t.Fatalf("cut (%d) before WriteTimeout", n)
	default:
	}
	clk.advance(time.Millisecond)
	sweep()
	select {
	case n := <-cuts:
		if n != -1 {
			t.Fatalf("cut for %d queued bytes, want a blocked write", n)
		}
	case <-ctxT(t).Done():
		t.Fatal("blocked write not cut")
	}
	if m := expect(t, sender, TypePeerLeft); m.ID != wr.ID {
		t.Fatalf("peer-left = %+v", m)
	}
	if v := th.metric(t, `signal_disconnects_total{reason="slow-consumer"}`); v != "1" {
		t.Fatalf("slow-consumer disconnects = %q", v)
	}
}
