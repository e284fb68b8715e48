//go:build linux

package relay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"golang.org/x/sys/unix"
)

// rawWaitRig returns a rig whose first loop waits raw for up to ms
// milliseconds (past Config.RawWait's bound: tests hold a loop in its
// wait for as long as they need), with GOMAXPROCS procs, restored after
// the server's own cleanup.
func rawWaitRig(t *testing.T, ms int64, procs int) *fpRig {
	t.Helper()
	beforeProcs := runtime.GOMAXPROCS(procs)
	t.Cleanup(func() { runtime.GOMAXPROCS(beforeProcs) })
	r := newFPRig(t, func(c *Config) { c.RawWait = maxRawWait })
	if loops := r.srv.fast.loops; len(loops) > 0 {
		loops[0].rawMS.CompareAndSwap(maxRawWait.Milliseconds(), ms) // stays 0 without a gate
	}
	return r
}

// longRawWait keeps a loop in its raw wait for the whole test.
const longRawWait = int64(10 * time.Minute / time.Millisecond)

// rawBlocked reports whether a thread of this process is blocked in a
// raw wait of l: an epoll_pwait on l's own epoll set with a timeout (the
// loop's non-blocking polls have none, Go's netpoll uses its own set).
func rawBlocked(t *testing.T, l *relayLoop) bool {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/syscall")
	if err != nil {
		t.Fatal(err)
	}
	nr, epfd := fmt.Sprint(unix.SYS_EPOLL_PWAIT), fmt.Sprintf("0x%x", l.epfd)
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread ended
		}
		// "nr arg0 ... arg5 sp pc"; arg3 is the timeout.
		f := strings.Fields(string(b))
		if len(f) >= 5 && f[0] == nr && f[1] == epfd && f[4] != "0x0" {
			return true
		}
	}
	return false
}

// awaitRawBlocked waits, bounded, until l blocks in its raw wait.
func awaitRawBlocked(t *testing.T, l *relayLoop) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !rawBlocked(t, l) {
		if time.Now().After(deadline) {
			t.Fatalf("the first relay loop never blocked in a raw epoll_pwait on its own set (%d raw waits begun)", l.rawWaits.Load())
		}
		runtime.Gosched()
	}
}

// GC stops the world, which needs the P a raw wait holds: the signal that
// asks for it ends the epoll_pwait with EINTR, and the loop yields before
// it waits again. Without that yield runtime.GC never returns.
func TestRelayLoopRawWaitLetsGCRun(t *testing.T) {
	r := rawWaitRig(t, longRawWait, 2) // the loop stays in its wait
	const ch = 0x4010
	r.bind(ch)
	r.roundTrip(ch, 100)
	l := r.srv.fast.loops[0]
	awaitRawBlocked(t, l)
	signals := l.rawSignals.Load()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		runtime.GC()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("runtime.GC did not return within 30s while the relay loop sat in its raw epoll_pwait: the raw wait gives the runtime no point to stop it")
	}
	if l.rawSignals.Load() == signals {
		t.Error("GC completed but no signal ended the raw wait: the loop was not in it (the path under test did not run)")
	}
	r.roundTrip(ch, 100) // and the loop still relays
}

// Raw waits hold a P: never with GOMAXPROCS 1, never by a loop other than
// the first (so never two at once), never while the loops are spread.
func TestRelayLoopRawWaitOnlyFirstLoopWithProcs(t *testing.T) {
	t.Run("procs=1", func(t *testing.T) {
		r := rawWaitRig(t, longRawWait, 1)
		const ch = 0x4011
		r.bind(ch)
		for range 3 {
			r.roundTrip(ch, 100)
		}
		for _, l := range r.srv.fast.loops {
			if n := l.rawWaits.Load(); n != 0 {
				t.Errorf("loop %d began %d raw waits with GOMAXPROCS 1", l.idx, n)
			}
			if l.mayWaitRaw() {
				t.Errorf("loop %d may wait raw with GOMAXPROCS 1", l.idx)
			}
		}
	})
	t.Run("procs=2", func(t *testing.T) {
		r := rawWaitRig(t, longRawWait, 2)
		const ch = 0x4012
		r.bind(ch)
		r.roundTrip(ch, 100)
		fp := r.srv.fast
		if len(fp.loops) < 2 {
			t.Fatalf("%d relay loops, want 2", len(fp.loops))
		}
		first, other := fp.loops[0], fp.loops[1]
		awaitRawBlocked(t, first) // the first loop does use it
		if !first.mayWaitRaw() {
			t.Error("the first loop, gathered, with GOMAXPROCS 2, may not wait raw")
		}
		if other.gate >= 0 || other.mayWaitRaw() || other.rawWaits.Load() != 0 {
			t.Errorf("the second loop can wait raw (gate %d, may %v, %d waits begun) while the first does", other.gate, other.mayWaitRaw(), other.rawWaits.Load())
		}
		fp.setSpread(true)
		spreadMay := first.mayWaitRaw()
		fp.setSpread(false)
		if spreadMay {
			t.Error("the first loop may wait raw while the loops are spread")
		}
	})
}

// A datagram that arrives while the loop waits raw is served by that
// wait; one that arrives after the wait timed out and the loop parked in
// Go's poller is served through the gate.
func TestRelayLoopRawWaitThenPark(t *testing.T) {
	r := rawWaitRig(t, longRawWait, 2)
	const ch = 0x4013
	r.bind(ch)
	r.roundTrip(ch, 100)
	fp := r.srv.fast
	l := fp.loops[0]

	awaitRawBlocked(t, l)
	wakes := l.rawWakes.Load()
	r.roundTrip(ch, 200)
	if l.rawWakes.Load() == wakes {
		t.Error("a round trip during the raw wait was not served by it")
	}

	l.rawMS.Store(1) // the next waits time out at once
	waits := l.rawWaits.Load()
	r.roundTrip(ch, 300)
	awaitLoopsParked(t, len(fp.loops))
	if l.rawWaits.Load() == waits {
		t.Error("the loop parked without a raw wait first")
	}
	r.roundTrip(ch, 400) // wakes the parked loop through the gate
}

// awaitLoopsParked waits, bounded, until want relay loops are parked in
// Go's poller (goroutine state "IO wait").
func awaitLoopsParked(t *testing.T, want int) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(10 * time.Second)
	for {
		stacks := string(buf[:runtime.Stack(buf, true)])
		parked := 0
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "(*relayLoop).run(") && strings.Contains(g, "[IO wait") {
				parked++
			}
		}
		if parked == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d relay loops parked in Go's poller", parked, want)
		}
		runtime.Gosched()
	}
}

// withRawWaitMaxRate sets rawWaitMaxRate for one test.
func withRawWaitMaxRate(t *testing.T, rate int64) {
	t.Helper()
	before := rawWaitMaxRate.Load()
	t.Cleanup(func() { rawWaitMaxRate.Store(before) })
	rawWaitMaxRate.Store(rate)
}

// A wake-up that handed a datagram to pion (here a Refresh through the
// listener socket) readied pion's reader on the loop's P: the loop parks
// in Go's poller, which runs it, instead of waiting raw; the next
// wake-up that hands nothing off waits raw again.
func TestRelayLoopRawWaitSkippedAfterHandoff(t *testing.T) {
	r := rawWaitRig(t, longRawWait, 2)
	withRawWaitMaxRate(t, 1<<40) // the light-load gate stays open
	const ch = 0x4014
	r.bind(ch)
	r.roundTrip(ch, 100)
	fp := r.srv.fast
	handed := refreshParksLoop(t, fp, "through the listener", r.cl.do)

	l := fp.loops[0]
	r.roundTrip(ch, 200) // fast path only: wakes the parked loop through the gate
	awaitRawBlocked(t, l)
	if got := l.rawHanded.Load(); got != handed {
		t.Errorf("a round trip on the fast path counted as a hand-off (%d skipped)", got-handed+1)
	}
}

// refreshParksLoop waits until the first loop waits raw, sends a Refresh
// through do, and checks that the loop then skipped one raw wait for the
// hand-off to pion and parked without beginning another. It returns the
// loop's hand-off count after the Refresh.
func refreshParksLoop(t *testing.T, fp *fastPath, via string, do func(stun.Method, ...stun.Setter) *stun.Message) int64 {
	t.Helper()
	l := fp.loops[0]
	awaitRawBlocked(t, l)
	handed, waits := l.rawHanded.Load(), l.rawWaits.Load()
	if code := errorCode(t, do(stun.MethodRefresh, lifetime(5*time.Minute))); code != 0 {
		t.Fatalf("refresh %s: %d", via, code)
	}
	awaitLoopsParked(t, len(fp.loops))
	if got := l.rawHanded.Load(); got != handed+1 {
		t.Errorf("%d raw waits skipped for a hand-off after the Refresh %s, want 1", got-handed, via)
	}
	if got := l.rawWaits.Load(); got != waits {
		t.Errorf("the loop began %d raw waits after the Refresh %s, want 0", got-waits, via)
	}
	return handed + 1
}

// A loop whose last load window was past rawWaitMaxRate parks instead of
// waiting raw (rate 0: any datagram in a window is too many).
func TestRelayLoopRawWaitSkippedWhenBusy(t *testing.T) {
	r := rawWaitRig(t, longRawWait, 2)
	withRawWaitMaxRate(t, 0)
	const ch = 0x4015
	r.bind(ch)
	fp := r.srv.fast
	l := fp.loops[0]
	// A load window closes at the first wake-up 100 ms after it opened;
	// round trips until one has (bounded in count and time).
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; l.rawBusy.Load() == 0; i++ {
		if i == 100000 || time.Now().After(deadline) {
			t.Fatalf("after %d round trips no raw wait was skipped for load (%d begun)", i, l.rawWaits.Load())
		}
		r.roundTrip(ch, 100)
	}
	awaitLoopsParked(t, len(fp.loops)) // it parked instead
	r.roundTrip(ch, 200)               // and a parked busy loop still relays
}

// A light loop (the default rate, a few round trips) waits raw, and is
// never counted busy.
func TestRelayLoopRawWaitWhenLight(t *testing.T) {
	r := rawWaitRig(t, longRawWait, 2)
	withRawWaitMaxRate(t, defaultRawWaitMaxRate)
	const ch = 0x4016
	r.bind(ch)
	l := r.srv.fast.loops[0]
	for range 3 {
		r.roundTrip(ch, 100)
	}
	awaitRawBlocked(t, l)
	if n := l.rawBusy.Load(); n != 0 {
		t.Errorf("a loop relaying a few round trips skipped %d raw waits for load", n)
	}
}

// heavyRate at the default threshold: 10 and 100 flows × 50 packets/s
// (1,000 and 10,000 datagrams/s) are light, 500 flows (50,000) heavy.
func TestHeavyRate(t *testing.T) {
	withRawWaitMaxRate(t, defaultRawWaitMaxRate)
	window := int64(100 * time.Millisecond)
	for _, c := range []struct {
		dgrams, ns int64
		heavy      bool
	}{
		{0, window, false},
		{100, window, false},                   // 1,000/s
		{1000, window, false},                  // 10,000/s
		{2000, window, false},                  // 20,000/s: at the threshold
		{2001, window, true},                   // just past it
		{5000, window, true},                   // 50,000/s
		{50000, int64(time.Second), true},      // a long window at 50,000/s
		{1000, int64(10 * time.Second), false}, // a long, nearly idle window
		{1, 0, true},                           // an empty window with a datagram
	} {
		if got := heavyRate(c.dgrams, c.ns); got != c.heavy {
			t.Errorf("heavyRate(%d datagrams, %v) = %v, want %v", c.dgrams, time.Duration(c.ns), got, c.heavy)
		}
	}
}

// After a heavy load window the loop waits raw again only once
// rawWaitLightWindows light windows in a row have passed; a new loop is
// light.
func TestLightStreak(t *testing.T) {
	var s lightStreak
	if !s.light() {
		t.Fatal("a new loop is not light")
	}
	s.window(false)
	s.window(true)
	for i := 0; i < rawWaitLightWindows; i++ {
		if s.light() {
			t.Fatalf("light after a heavy window and %d light ones, want %d", i, rawWaitLightWindows)
		}
		s.window(false)
	}
	if !s.light() {
		t.Fatalf("not light after %d light windows", rawWaitLightWindows)
	}
	s.window(false) // the count saturates; one heavy window still resets it
	s.window(true)
	if s.light() {
		t.Error("light right after a heavy window")
	}
}

// A frame a TCP client sends once a relay loop reads its socket (here a
// Refresh) is queued for pion's reader of that connection, which the
// queue readies on the loop's P: the loop parks instead of waiting raw,
// and the answer comes back while the loop would otherwise still wait.
func TestRelayLoopRawWaitSkippedAfterStreamHandoff(t *testing.T) {
	r := rawWaitRig(t, longRawWait, 2)
	withRawWaitMaxRate(t, 1<<40) // the light-load gate stays open
	_, peerAP := udpPeer(t)
	s := dialStreamRig(t, r.srv, "tcp", 0)
	s.allocate(peerAP, 0x4016)
	s.liveBinding(r.obs, 0x4016)
	awaitLoopStreams(t, r.srv, 1) // tcploop_test.go
	const ch = 0x4017
	r.bind(ch)
	r.roundTrip(ch, 100) // fast path only: the next wait is raw
	refreshParksLoop(t, r.srv.fast, "over TCP", s.cl.do)
}
