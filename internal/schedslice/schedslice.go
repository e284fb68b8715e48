// Package schedslice asks the kernel's scheduler for a shorter time slice
// for every thread of the process, so that a thread woken by a datagram
// runs soon instead of waiting for the running thread's slice to end.
//
// Why: Linux's fair scheduler (EEVDF, 6.6 and later) lets a woken thread
// preempt the running one only when its virtual deadline, its eligible
// time plus its slice, is earlier. With the default slice (0.7-3 ms, by
// CPU count) a relay thread woken on a CPU that runs another busy thread
// can wait most of a millisecond before it reads the datagram. Linux 6.12
// lets a thread ask for a shorter slice (sched_setattr's sched_runtime
// under SCHED_OTHER), meant for such latency-sensitive work: it gets an
// earlier deadline and preempts. The share of CPU a thread gets does not
// change, only how soon and how often it is scheduled, and a thread whose
// bursts outlast its slice is itself preempted more often.
//
// The slice is a property of each thread; a new thread inherits its
// creator's, so setting it on every thread that exists covers those the
// Go runtime starts later. It is process-wide state: one owner should set
// it.
package schedslice

import (
	"errors"
	"fmt"
	"time"
)

// The bounds the kernel clamps a requested slice to.
const (
	Min = 100 * time.Microsecond
	Max = 100 * time.Millisecond
)

// ErrUnsupported reports a system that does not keep a thread's requested
// slice: not Linux, or a kernel before 6.12.
var ErrUnsupported = errors.New("schedslice: the kernel does not keep a requested time slice (needs Linux 6.12 or later)")

// Validate checks a requested slice: 0 (the kernel's default) or between
// Min and Max.
func Validate(d time.Duration) error {
	if d != 0 && (d < Min || d > Max) {
		return fmt.Errorf("time slice %v: want %v to %v", d, Min, Max)
	}
	return nil
}

// Set requests d as the time slice of every thread of the process that
// runs under the normal or batch policy (threads under another policy are
// left alone), or gives them the kernel's default back when d is 0. It
// returns how many threads it set. An error wrapping ErrUnsupported means
// the kernel ignores the request; nothing changed then.
func Set(d time.Duration) (int, error) {
	if err := Validate(d); err != nil {
		return 0, err
	}
	return set(d)
}
