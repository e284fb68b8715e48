package signaling

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// clientFrame is a client's frame (RFC 6455, 5.2): first byte b0 (FIN,
// RSV, opcode), masked unless unmasked, with the length in the shortest
// encoding unless forced to the 16- or 64-bit one by ext (2 or 8).
func clientFrame(b0 byte, payload []byte, unmasked bool, ext int) []byte {
	n := len(payload)
	f := []byte{b0, 0}
	mask := byte(0x80)
	if unmasked {
		mask = 0
	}
	switch {
	case ext == 8 || n > 0xffff:
		f[1] = mask | 127
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	case ext == 2 || n >= 126:
		f[1] = mask | 126
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	default:
		f[1] = mask | byte(n)
	}
	key := []byte{0x12, 0x34, 0x56, 0x78}
	if unmasked {
		return append(f, payload...)
	}
	f = append(f, key...)
	for i, c := range payload {
		f = append(f, c^key[i%4])
	}
	return f
}

func TestWholeFrame(t *testing.T) {
	const limit = 1024
	text := func(n int) []byte { return bytes.Repeat([]byte("x"), n) }
	whole := []struct {
		name  string
		frame []byte
	}{
		{"empty text", clientFrame(0x81, nil, false, 0)},
		{"short text", clientFrame(0x81, text(40), false, 0)},
		{"binary", clientFrame(0x82, text(40), false, 0)},
		{"125 bytes", clientFrame(0x81, text(125), false, 0)},
		{"16-bit length", clientFrame(0x81, text(126), false, 0)},
		{"16-bit length of a short one", clientFrame(0x81, text(3), false, 2)},
		{"64-bit length", clientFrame(0x81, text(200), false, 8)},
		{"at the limit", clientFrame(0x81, text(limit), false, 0)},
	}
	for _, tc := range whole {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.frame
			// Every prefix asks for more, and for no more than the frame.
			for k := range len(f) {
				size, st := wholeFrame(f[:k], limit)
				if st != frameNeedMore || size <= k || size > len(f) {
					t.Fatalf("first %d of %d bytes: size %d, state %d; want more wanted, at most the frame", k, len(f), size, st)
				}
			}
			// The whole frame, alone or followed by more frames.
			for _, b := range [][]byte{f, append(append([]byte(nil), f...), f...), append(append([]byte(nil), f...), 0x88)} {
				if size, st := wholeFrame(b, limit); st != frameWhole || size != len(f) {
					t.Fatalf("%d bytes: size %d, state %d; want whole, %d", len(b), size, st, len(f))
				}
			}
		})
	}
	other := []struct {
		name  string
		frame []byte
	}{
		{"ping", clientFrame(0x89, []byte("hi"), false, 0)},
		{"pong", clientFrame(0x8a, nil, false, 0)},
		{"close", clientFrame(0x88, websocket.FormatCloseMessage(1000, ""), false, 0)},
		{"first fragment", clientFrame(0x01, text(10), false, 0)},
		{"continuation", clientFrame(0x80, text(10), false, 0)},
		{"reserved bit", clientFrame(0xc1, text(10), false, 0)},
		{"reserved opcode", clientFrame(0x83, text(10), false, 0)},
		{"unmasked", clientFrame(0x81, text(10), true, 0)},
		{"above the limit", clientFrame(0x81, text(limit+1), false, 0)},
		{"64-bit length above the limit", binary.BigEndian.AppendUint64([]byte{0x81, 0xff}, 1<<63)},
	}
	for _, tc := range other {
		t.Run(tc.name, func(t *testing.T) {
			// Decided as soon as the bytes that decide it are in.
			for k := 2; k <= len(tc.frame); k++ {
				size, st := wholeFrame(tc.frame[:k], limit)
				if st == frameWhole {
					t.Fatalf("first %d bytes: whole", k)
				}
				if k >= 10 && st != frameOther {
					t.Fatalf("first %d bytes: size %d, state %d; want other", k, size, st)
				}
			}
		})
	}
}

// loopHub is a test hub whose read loop reports each connection it leaves
// idle, with the partial frame's bytes it keeps.
func loopHub(t *testing.T, cfg Config) (*testHub, chan int) {
	parks := make(chan int, 4096)
	th := newTestHub(t, cfg, func(h *Hub) { h.onLoopPark = func(n int) { parks <- n } })
	return th, parks
}

// awaitPark waits for the loop to leave a connection idle with want bytes
// kept; other reports (of earlier readiness) are skipped.
func awaitPark(t *testing.T, parks chan int, want int) {
	t.Helper()
	ctx := ctxT(t)
	for {
		select {
		case n := <-parks:
			if n == want {
				return
			}
		case <-ctx.Done():
			t.Fatalf("the loop never parked the connection with %d bytes buffered", want)
		}
	}
}

// waitLoopState waits until c's reading is in state (the loop and the
// readers move it on their own goroutines; there is no event to await).
func waitLoopState(t *testing.T, c *conn, state uint32) {
	t.Helper()
	ctx := ctxT(t)
	for {
		got := c.loopState.Load()
		if got == state || (state == loopOff && got == loopPending) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("loop state %d, want %d", got, state)
		default:
			runtime.Gosched()
		}
	}
}

// loopPair is a client b and a raw client a in one room, a's connection
// owned by the read loop after one signal.
type loopPair struct {
	th  *testHub
	raw *websocket.Conn
	ac  *conn
	b   *Client
	bID string
}

func newLoopPair(t *testing.T, th *testHub, room string) *loopPair {
	b, wb := th.join(t, room)
	raw, wa := rawJoin(t, th, room, nil)
	expect(t, b, TypePeerJoined)
	p := &loopPair{th: th, raw: raw, ac: th.connOf(t, wa), b: b, bID: wb.ID}
	p.send(t, "0")
	waitLoopState(t, p.ac, loopIdle)
	return p
}

func (p *loopPair) signal(n string) string {
	return `{"type":"signal","to":"` + p.bID + `","data":{"n":` + n + `}}`
}

// send sends signal n through gorilla and checks that b gets it.
func (p *loopPair) send(t *testing.T, n string) {
	t.Helper()
	if err := p.raw.WriteMessage(websocket.TextMessage, []byte(p.signal(n))); err != nil {
		t.Fatal(err)
	}
	p.expect(t, n)
}

func (p *loopPair) expect(t *testing.T, n string) {
	t.Helper()
	if m := expect(t, p.b, TypeSignal); string(m.Data) != `{"n":`+n+`}` {
		t.Fatalf("data %s, want n %s", m.Data, n)
	}
}

// write puts bytes on the raw client's socket, bypassing its gorilla
// writer (frames written whole keep the stream in step with it).
func (p *loopPair) write(t *testing.T, b []byte) {
	t.Helper()
	if _, err := p.raw.NetConn().Write(b); err != nil {
		t.Fatal(err)
	}
}

// Two signals, written in two pieces split at every byte boundary: the
// loop keeps each partial frame until the rest comes, relays each whole
// one as soon as it is in, and keeps the connection. Also both whole in
// one write (two frames in one read).
func TestReadLoopFramesSplitAtEveryByte(t *testing.T) {
	th, parks := loopHub(t, Config{MessageRate: 1000, MessageBurst: 1000}) // a few hundred signals
	p := newLoopPair(t, th, "split")
	n := 1
	for k := 0; ; k++ {
		f1 := clientFrame(0x81, []byte(p.signal(strconv.Itoa(n))), false, 0)
		f2 := clientFrame(0x81, []byte(p.signal(strconv.Itoa(n+1))), false, 0)
		seg := append(f1, f2...)
		if k >= len(seg) {
			break
		}
		if k > 0 {
			p.write(t, seg[:k])
			kept := k
			if k >= len(f1) {
				p.expect(t, strconv.Itoa(n))
				kept = k - len(f1)
			}
			awaitPark(t, parks, kept)
		}
		p.write(t, seg[k:])
		if k < len(f1) {
			p.expect(t, strconv.Itoa(n))
		}
		p.expect(t, strconv.Itoa(n+1))
		awaitPark(t, parks, 0)
		waitLoopState(t, p.ac, loopIdle) // a reader goroutine would keep it off
		n += 2
	}
	p.send(t, "0") // gorilla's client is still in step
}

// Frames the loop does not read itself go to a reader goroutine, which
// handles them as before and hands the connection back after the next
// signal: a ping (answered), a signal too big for the read buffer, a
// fragmented signal, one with a 16-bit length.
func TestReadLoopHandsOverAndTakesBack(t *testing.T) {
	th, _ := loopHub(t, Config{})
	p := newLoopPair(t, th, "handover")
	pongs := make(chan string, 1)
	p.raw.SetPongHandler(func(s string) error { pongs <- s; return nil })
	go func() { // the raw client's reader: control frames are handled inside ReadMessage
		for {
			if _, _, err := p.raw.ReadMessage(); err != nil {
				return
			}
		}
	}()

	if err := p.raw.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(waitFor)); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-pongs:
		if s != "hi" {
			t.Fatalf("pong %q", s)
		}
	case <-ctxT(t).Done():
		t.Fatal("no pong")
	}
	waitLoopState(t, p.ac, loopOff)
	p.send(t, "1")
	waitLoopState(t, p.ac, loopIdle)

	big := strings.Repeat("7", 2000) // above the read buffer, below MaxMessageBytes
	p.send(t, big)
	waitLoopState(t, p.ac, loopIdle)

	msg := []byte(p.signal("2"))
	p.write(t, append(clientFrame(0x01, msg[:10], false, 0), clientFrame(0x80, msg[10:], false, 0)...))
	p.expect(t, "2")
	waitLoopState(t, p.ac, loopIdle)

	p.write(t, clientFrame(0x81, []byte(p.signal("3")), false, 2))
	p.expect(t, "3")
	waitLoopState(t, p.ac, loopIdle)
}

// What ends a connection the loop owns ends it as it would end one on its
// reader goroutine: the close code and the disconnect reason are the same.
func TestReadLoopEndings(t *testing.T) {
	cases := []struct {
		name   string
		frames func(p *loopPair) []byte
		close  bool // end the TCP stream instead
		code   int  // the close code the client gets (0: none expected)
		reason string
	}{
		{"close frame", func(*loopPair) []byte {
			return clientFrame(0x88, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), false, 0)
		}, false, websocket.CloseNormalClosure, reasonClientClose},
		{"close frame after a signal in the same read", func(p *loopPair) []byte {
			return append(clientFrame(0x81, []byte(p.signal("1")), false, 0),
				clientFrame(0x88, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), false, 0)...)
		}, false, websocket.CloseGoingAway, reasonClientClose},
		{"unmasked frame", func(p *loopPair) []byte {
			return clientFrame(0x81, []byte(p.signal("1")), true, 0)
		}, false, websocket.CloseProtocolError, reasonNetwork},
		{"reserved bit", func(p *loopPair) []byte {
			return clientFrame(0xc1, []byte(p.signal("1")), false, 0)
		}, false, websocket.CloseProtocolError, reasonNetwork},
		{"above the hard limit", func(*loopPair) []byte {
			return clientFrame(0x81, bytes.Repeat([]byte("x"), 4*(64<<10)+1), false, 0)
		}, false, websocket.CloseMessageTooBig, reasonTooLarge},
		{"end of stream", nil, true, 0, reasonNetwork},
		{"end of stream inside a frame", func(p *loopPair) []byte {
			return clientFrame(0x81, []byte(p.signal("1")), false, 0)[:9]
		}, true, 0, reasonNetwork},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reasons := make(chan string, 4)
			th := newTestHub(t, Config{}, func(h *Hub) { h.onClosed = func(r string) { reasons <- r } })
			p := newLoopPair(t, th, "end")
			if tc.frames != nil {
				p.write(t, tc.frames(p))
			}
			if tc.close {
				if err := p.raw.NetConn().(interface{ CloseWrite() error }).CloseWrite(); err != nil {
					t.Fatal(err)
				}
			}
			if tc.code != 0 {
				for {
					_, _, err := p.raw.ReadMessage()
					var ce *websocket.CloseError
					if errors.As(err, &ce) {
						if ce.Code != tc.code {
							t.Fatalf("close code %d, want %d", ce.Code, tc.code)
						}
						break
					}
					if err != nil {
						t.Fatalf("read: %v, want close %d", err, tc.code)
					}
				}
			}
			select {
			case r := <-reasons:
				if r != tc.reason {
					t.Fatalf("reason %q, want %q", r, tc.reason)
				}
			case <-ctxT(t).Done():
				t.Fatal("the connection did not end")
			}
		})
	}
}

// A connection idle in the loop goes to a reader goroutine after a sweep
// without a message (which keeps its read deadline), and back to the loop
// after its next signal.
func TestReadLoopCools(t *testing.T) {
	th, _ := loopHub(t, Config{PingInterval: time.Hour, WriteTimeout: time.Hour}) // sweeps by hand only
	p := newLoopPair(t, th, "cool")
	now := time.Now()
	p.ac.sweep(now) // a message since the last sweep: stays
	if s := p.ac.loopState.Load(); s != loopIdle {
		t.Fatalf("first sweep after a message: loop state %d, want idle", s)
	}
	p.ac.sweep(now)
	waitLoopState(t, p.ac, loopOff)
	p.send(t, "1")
	waitLoopState(t, p.ac, loopIdle)
	p.send(t, "2")
}

// A connection idle in the loop is ended by Shutdown like any other: the
// client gets 1012.
func TestReadLoopShutdown(t *testing.T) {
	th, _ := loopHub(t, Config{})
	p := newLoopPair(t, th, "drain")
	done := make(chan error, 1)
	go func() { done <- th.Shutdown(ctxT(t)) }()
	for {
		_, _, err := p.raw.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			if ce.Code != CloseServiceRestart {
				t.Fatalf("close code %d, want %d", ce.Code, CloseServiceRestart)
			}
			break
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
	}
	p.raw.Close()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// wholeFrame never claims bytes it was not given, asks for more only when
// it has fewer than it asks for, and gives the same answer for a whole
// frame however many bytes follow it.
func FuzzWholeFrame(f *testing.F) {
	f.Add(clientFrame(0x81, []byte(`{"type":"signal"}`), false, 0), 1024)
	f.Add(clientFrame(0x81, bytes.Repeat([]byte("x"), 300), false, 0), 1024)
	f.Add(clientFrame(0x82, nil, false, 8), 1024)
	f.Add(clientFrame(0x89, []byte("ping"), false, 0), 1024)
	f.Add([]byte{0x81, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 1<<20)
	f.Fuzz(func(t *testing.T, b []byte, limit int) {
		if limit < 0 {
			limit = -limit
		}
		size, st := wholeFrame(b, limit)
		switch st {
		case frameWhole:
			hdr := map[byte]int{126: 8, 127: 14}[b[1]&0x7f]
			if hdr == 0 {
				hdr = 6
			}
			if size < hdr || size > len(b) || size-hdr > limit {
				t.Fatalf("whole frame of %d bytes in %d, limit %d", size, len(b), limit)
			}
			if s2, st2 := wholeFrame(b[:size], limit); s2 != size || st2 != frameWhole {
				t.Fatalf("the frame alone: size %d, state %d", s2, st2)
			}
		case frameNeedMore:
			if size <= len(b) {
				t.Fatalf("asks for %d bytes with %d in", size, len(b))
			}
		case frameOther:
		default:
			t.Fatalf("state %d", st)
		}
	})
}
