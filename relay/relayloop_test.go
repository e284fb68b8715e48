//go:build linux

package relay

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// The UDP listener sockets are read by the relay loops (off Go's poller),
// a client's relay socket shares the loop of its listener socket, and
// Close ends every loop and returns its descriptors.
func TestRelayLoopsReadListeners(t *testing.T) {
	r := newFPRig(t, nil)
	r.bind(0x4001)
	r.roundTrip(0x4001, 100)
	fp := r.srv.fast
	if len(fp.loops) != 2 {
		t.Fatalf("%d relay loops, want one per UDP socket (2)", len(fp.loops))
	}
	b := r.binding(0x4001)
	if b == nil || b.rf.listener == nil {
		t.Fatal("no fast-path binding for the rig's channel")
	}
	lf := b.rf.listener.fast
	if !lf.fed || lf.sock.raw == nil || lf.sock.raw.home == nil {
		t.Fatalf("listener socket not adopted by a loop (fed %v)", lf.fed)
	}
	listeners, relayOn := 0, (*relayLoop)(nil)
	for _, l := range fp.loops {
		l.mu.Lock()
		for _, ls := range l.socks {
			if ls.lf != nil {
				listeners++
				if ls.lf.sock.raw.home != l {
					t.Errorf("listener %v read by a loop other than its home", ls.lf.local)
				}
			}
			if ls.rf == b.rf {
				relayOn = l
			}
		}
		l.mu.Unlock()
	}
	if listeners != 2 {
		t.Errorf("loops read %d listener sockets, want 2", listeners)
	}
	if relayOn != lf.sock.raw.home {
		t.Error("the client's relay socket is not on its listener socket's loop")
	}

	loops := fp.loops
	if err := r.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if fp.loops != nil {
		t.Error("loops still listed after Close")
	}
	for i, l := range loops {
		l.mu.Lock()
		if !l.closed {
			t.Errorf("loop %d not closed", i)
		}
		l.mu.Unlock()
	}
	lf.sock.raw.mu.RLock()
	closed := lf.sock.raw.closed
	lf.sock.raw.mu.RUnlock()
	if !closed {
		t.Error("listener socket still open after Close")
	}
}

// The loops hold no P while they wait: with GOMAXPROCS 1 (an embedding
// program's own sizing, as signal --procs auto may set) two loops and the
// rest of the server share one P and still relay both ways.
func TestRelayLoopsOneProc(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) }) // after the server's own cleanup
	r := newFPRig(t, nil)
	r.bind(0x4002)
	runtime.GOMAXPROCS(1)
	for i := 0; i < 5; i++ {
		r.roundTrip(0x4002, 500)
	}
}

// An idle loop waits parked in Go's poller (goroutine state "IO wait"), not
// in a system call that would hold a thread and a P.
func TestRelayLoopsParkInPoller(t *testing.T) {
	r := newFPRig(t, nil)
	r.bind(0x4003)
	r.roundTrip(0x4003, 10)
	want := len(r.srv.fast.loops)
	buf := make([]byte, 1<<20)
	var parked int
	// The loops park as soon as their sockets are empty; give a busy
	// machine a bounded number of looks.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		stacks := string(buf[:runtime.Stack(buf, true)])
		parked = 0
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "(*relayLoop).run(") && strings.Contains(g, "[IO wait") {
				parked++
			}
		}
		if parked == want {
			return
		}
		runtime.Gosched()
	}
	t.Fatalf("%d of %d relay loops parked in Go's poller", parked, want)
}
