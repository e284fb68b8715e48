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

	"golang.org/x/sys/unix"
)

// rawWaitRig returns a rig whose first loop waits raw for up to ms
// milliseconds, with GOMAXPROCS procs; both are restored after the
// server's own cleanup.
func rawWaitRig(t *testing.T, ms int64, procs int) *fpRig {
	t.Helper()
	beforeMS, beforeProcs := rawWaitMS.Load(), runtime.GOMAXPROCS(procs)
	t.Cleanup(func() {
		rawWaitMS.Store(beforeMS)
		runtime.GOMAXPROCS(beforeProcs)
	})
	rawWaitMS.Store(ms)
	return newFPRig(t, nil)
}

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
	r := rawWaitRig(t, int64(10*time.Minute/time.Millisecond), 2) // the loop stays in its wait
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
		r := rawWaitRig(t, int64(10*time.Minute/time.Millisecond), 1)
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
		r := rawWaitRig(t, int64(10*time.Minute/time.Millisecond), 2)
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
	r := rawWaitRig(t, int64(10*time.Minute/time.Millisecond), 2)
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

	rawWaitMS.Store(1) // the next waits time out at once
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
