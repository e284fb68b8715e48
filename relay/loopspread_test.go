//go:build linux

package relay

import (
	"testing"

	"golang.org/x/sys/unix"
)

// A listener drain that read a quarter of the socket's receive buffer
// (counted in full-size datagrams) spreads gathered loops at once, without
// waiting for busy windows, and the loops do not gather again until
// loopBacklogHolds windows have passed without a backlog, however idle they
// are. The loops are bare, as in TestRelayLoopsSpreadDecision.
func TestRelayLoopsSpreadOnListenerBacklog(t *testing.T) {
	fp := &fastPath{s: newTestServer(t, nil)}
	l0, l1 := &relayLoop{fp: fp, idx: 0}, &relayLoop{fp: fp, idx: 1}
	fp.loops = []*relayLoop{l0, l1}
	now := monoNow()
	quiet := func(l *relayLoop) { // one idle window, ended by a wake-up
		l.load.winStart = now
		now += loopWindowNS
		l.load.busyNS = 0
		l.woke(now)
	}

	const rcvbuf = 4 << 20 // what a 2 MiB SO_RCVBUF gives under rmem_max 4 MiB
	need := rcvbuf / (loopBacklogTruesize * loopBacklogShare)
	if rcvbuf%(loopBacklogTruesize*loopBacklogShare) != 0 {
		need++
	}
	l1.backlog(now, need-1, rcvbuf)
	l0.backlog(now, loopBacklogMin-1, 1) // a tiny buffer, but a burst too short to count
	if fp.loopSpread.Load() {
		t.Fatal("spread on a drain shorter than a quarter of the buffer")
	}
	l1.backlog(now, need, rcvbuf) // any loop's listener counts
	if !fp.loopSpread.Load() {
		t.Fatalf("a drain of %d datagrams from a %d-byte buffer did not spread the loops", need, rcvbuf)
	}

	// Idle windows: without the backlog loopGatherAfter of them gather.
	for i := 0; i < loopGatherAfter; i++ {
		quiet(l0)
	}
	if !fp.loopSpread.Load() {
		t.Fatalf("gathered %d idle windows after a backlog (hold %d)", loopGatherAfter, loopBacklogHolds)
	}
	for i := loopGatherAfter; i < loopBacklogHolds+loopGatherAfter; i++ {
		quiet(l0)
	}
	if fp.loopSpread.Load() {
		t.Fatal("idle loops did not gather once the backlog was old")
	}

	// One loop: nothing to spread to, and nothing changes.
	solo := &fastPath{s: fp.s}
	ls := &relayLoop{fp: solo}
	solo.loops = []*relayLoop{ls}
	ls.noteListenerDrain(-1, 1<<20)
	if solo.loopSpread.Load() {
		t.Fatal("a single loop spread")
	}
}

// noteListenerDrain reads the socket's receive buffer as the kernel set it.
func TestRelayLoopsBacklogReadsRcvbuf(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 256<<10); err != nil {
		t.Fatal(err)
	}
	rcvbuf, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		t.Fatal(err)
	}
	need := max(loopBacklogMin, (rcvbuf+loopBacklogTruesize*loopBacklogShare-1)/(loopBacklogTruesize*loopBacklogShare))
	fp := &fastPath{s: newTestServer(t, nil)}
	l0, l1 := &relayLoop{fp: fp, idx: 0}, &relayLoop{fp: fp, idx: 1}
	fp.loops = []*relayLoop{l0, l1}
	l0.noteListenerDrain(fd, need-1)
	if fp.loopSpread.Load() {
		t.Fatalf("spread on %d datagrams from a %d-byte buffer", need-1, rcvbuf)
	}
	l0.noteListenerDrain(fd, need)
	if !fp.loopSpread.Load() {
		t.Fatalf("no spread on %d datagrams from a %d-byte buffer", need, rcvbuf)
	}
	if l0.load.backlogAt.Load() == 0 {
		t.Fatal("the backlog's time was not recorded")
	}
}
