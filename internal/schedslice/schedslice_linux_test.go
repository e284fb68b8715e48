//go:build linux

package schedslice

import (
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/testenv"
	"golang.org/x/sys/unix"
)

// attrs reads every thread's scheduling attributes.
func attrs(t *testing.T) map[int]*unix.SchedAttr {
	t.Helper()
	tids, err := threads()
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[int]*unix.SchedAttr, len(tids))
	for _, tid := range tids {
		if a, err := unix.SchedGetAttr(tid, 0); err == nil {
			m[tid] = a
		}
	}
	return m
}

// lockedThreads starts n goroutines on threads of their own and returns
// their thread ids; they end with the test.
func lockedThreads(t *testing.T, n int) []int {
	t.Helper()
	stop := make(chan struct{})
	tids := make(chan int)
	for range n {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
			tids <- unix.Gettid()
			<-stop
		}()
	}
	var out []int
	for range n {
		out = append(out, <-tids)
	}
	t.Cleanup(func() { close(stop) })
	return out
}

func TestSetEveryThreadAndLaterOnes(t *testing.T) {
	before := attrs(t)
	const d = 300 * time.Microsecond
	n, err := Set(d)
	if errors.Is(err, ErrUnsupported) {
		testenv.SkipOrFail(t, "the kernel does not keep a requested time slice (Linux 6.12 or later)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := Set(0); err != nil {
			t.Errorf("restoring the default: %v", err)
		}
	})
	if n < len(before) {
		t.Errorf("Set reports %d threads; %d existed before", n, len(before))
	}
	for tid, a := range attrs(t) {
		if time.Duration(a.Runtime) != d {
			t.Errorf("thread %d: slice %v, want %v", tid, time.Duration(a.Runtime), d)
		}
		if b, ok := before[tid]; ok && (b.Nice != a.Nice || b.Policy != a.Policy) {
			t.Errorf("thread %d: nice %d policy %d, was %d %d", tid, a.Nice, a.Policy, b.Nice, b.Policy)
		}
	}
	// Threads the runtime starts from now on inherit the slice. More
	// locked goroutines than threads exist make the runtime start some.
	existing := attrs(t)
	fresh := 0
	for _, tid := range lockedThreads(t, len(existing)+2) {
		if _, ok := existing[tid]; !ok {
			fresh++
		}
		a, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			t.Fatal(err)
		}
		if time.Duration(a.Runtime) != d {
			t.Errorf("new thread %d: slice %v, want %v (inherited)", tid, time.Duration(a.Runtime), d)
		}
	}
	if fresh == 0 {
		t.Fatal("no new thread was started: the inheritance check proved nothing")
	}
	if _, err := Set(0); err != nil {
		t.Fatal(err)
	}
	for tid, a := range attrs(t) {
		if time.Duration(a.Runtime) == d {
			t.Errorf("thread %d kept %v after Set(0)", tid, d)
		}
	}
}
