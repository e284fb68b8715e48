//go:build linux

package schedslice

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// set sets d on the calling thread first, to learn whether the kernel
// keeps it, then on every thread in /proc/self/task, in passes until a
// pass finds no thread it has not set: a thread started during a pass by
// one not yet set would otherwise keep the old slice.
func set(d time.Duration) (int, error) {
	self := unix.Gettid()
	if err := setThread(self, d); err != nil {
		return 0, err
	}
	if d != 0 {
		a, err := unix.SchedGetAttr(self, 0)
		if err != nil {
			return 0, fmt.Errorf("schedslice: sched_getattr: %w", err)
		}
		if time.Duration(a.Runtime) != d { // an older kernel accepts and ignores it
			_ = setThread(self, 0)
			return 0, ErrUnsupported
		}
	}
	done := map[int]bool{self: true}
	for range 8 {
		tids, err := threads()
		if err != nil {
			return len(done), err
		}
		added := false
		for _, tid := range tids {
			if done[tid] {
				continue
			}
			if err := setThread(tid, d); err != nil {
				return len(done), err
			}
			done[tid], added = true, true
		}
		if !added {
			return len(done), nil
		}
	}
	return len(done), fmt.Errorf("schedslice: threads kept appearing after 8 passes; %d set", len(done))
}

// setThread requests d (0: the kernel's default) for thread tid, keeping
// its policy, nice value and flags. A thread that has exited meanwhile is
// not an error.
func setThread(tid int, d time.Duration) error {
	a, err := unix.SchedGetAttr(tid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("schedslice: sched_getattr thread %d: %w", tid, err)
	}
	if a.Policy != unix.SCHED_NORMAL && a.Policy != unix.SCHED_BATCH {
		return nil
	}
	a.Runtime = uint64(d)
	a.Flags &^= unix.SCHED_FLAG_KEEP_ALL
	err = unix.SchedSetAttr(tid, a, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("schedslice: sched_setattr thread %d: %w", tid, err)
	}
	return nil
}

// threads lists the process's thread ids.
func threads() ([]int, error) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, fmt.Errorf("schedslice: %w", err)
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}
