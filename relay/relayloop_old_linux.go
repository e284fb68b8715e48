//go:build linux

package relay

// TEMPORARY (A/B only, removed before the final commit): the previous wait
// (blocking epoll_wait with ticks and yields), chosen with TURND_LOOPWAIT=old;
// TURND_LOOPS=N overrides the loop count.

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

var oldWait = os.Getenv("TURND_LOOPWAIT") == "old"

var loopsOverride, _ = strconv.Atoi(os.Getenv("TURND_LOOPS"))

const (
	loopYieldNS    = int64(6500 * time.Microsecond)
	loopTickMS     = 3
	loopQuietTicks = 333
)

const (
	crowdedTickMS  = 1
	crowdedYieldNS = int64(time.Millisecond)
)

var loopsRunning atomic.Int32

func loopsCrowded() bool { return runtime.GOMAXPROCS(0) <= int(loopsRunning.Load()) }

func (l *relayLoop) runOld() {
	quiet := 0 // consecutive empty waits
	lastYield := monoNow()
	crowded := loopsCrowded()
	for {
		if now := monoNow(); now-lastYield > loopYieldNS || crowded && now-lastYield > crowdedYieldNS {
			runtime.Gosched()
			lastYield = now
			crowded = loopsCrowded()
		}
		timeout := loopTickMS
		switch {
		case crowded:
			timeout = crowdedTickMS
		case quiet >= loopQuietTicks:
			timeout = -1
		}
		n, err := unix.EpollWait(l.epfd, l.events, timeout)
		switch err {
		case nil:
		case unix.EINTR:
			continue
		default:
			l.fp.s.log.Error("relay event loop stopped", "err", err)
			return
		}
		if n == 0 {
			quiet++
			continue
		}
		quiet = 0
		if l.handle(n) {
			return
		}
	}
}

// loopProcs adds one P to GOMAXPROCS per running relay loop (see
// relayLoop): a loop waiting in epoll_wait holds its P, and Go code must
// keep the parallelism the operator (or the default, one per CPU) chose.
var loopProcs procBudget

type procBudget struct {
	sync.Mutex
	n int // Ps added and not yet returned
}

func (lp *procBudget) add(d int) {
	if d == 0 {
		return
	}
	lp.Lock()
	defer lp.Unlock()
	if cur := runtime.GOMAXPROCS(0); cur+d >= 1 {
		runtime.GOMAXPROCS(cur + d)
	}
	lp.n += d
}

// sys6: TEMPORARY A/B switch between blocking-aware and raw system calls.
func sys6(trap, a1, a2, a3, a4, a5, a6 uintptr) (uintptr, uintptr, unix.Errno) {
	if oldWait {
		return unix.Syscall6(trap, a1, a2, a3, a4, a5, a6)
	}
	return unix.RawSyscall6(trap, a1, a2, a3, a4, a5, a6)
}

// TEMPORARY: TURND_SPREAD=always keeps the loops spread (two loops all the time).
var spreadAlways = os.Getenv("TURND_SPREAD") == "always" || oldWait

// TEMPORARY: TURND_LOOPTRACE=file appends every loop window's busy share.
var loopTrace = func() *os.File {
	p := os.Getenv("TURND_LOOPTRACE")
	if p == "" {
		return nil
	}
	f, _ := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	return f
}()

func traceWindow(l *relayLoop, now, busy int64) {
	if loopTrace != nil {
		fmt.Fprintf(loopTrace, "%d pid=%d loop=%d busy=%d spread=%v socks=%d\n", now/1e6, os.Getpid(), l.idx, busy, l.fp.loopSpread.Load(), len(l.socks))
	}
}
