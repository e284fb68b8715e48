//go:build linux

package offload

import (
	"math"
	"time"

	"golang.org/x/sys/unix"
)

// monoDeadline converts a wall-clock deadline to CLOCK_MONOTONIC ns, the
// clock of bpf_ktime_get_coarse_ns.
func monoDeadline(t time.Time) uint64 {
	if t.IsZero() {
		return math.MaxUint64
	}
	d := time.Until(t)
	if d <= 0 {
		// Already over. Not "now": the program's coarse clock may lag
		// the precise one by a tick.
		return 0
	}
	return monoNow() + uint64(d)
}

func monoNow() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic("offload: clock_gettime(CLOCK_MONOTONIC): " + err.Error())
	}
	return uint64(ts.Nano())
}
