package signaling

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// detachEvents makes th report peers whose connection broke and who now
// wait for a resume.
func detachEvents(th *testHub) <-chan string {
	ch := make(chan string, 16)
	th.onDetach = func(id string) { ch <- id }
	return ch
}

func awaitDetach(t *testing.T, ch <-chan string, id string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != id {
			t.Fatalf("detached %s, want %s", got, id)
		}
	case <-ctxT(t).Done():
		t.Fatalf("peer %s never detached", id)
	}
}

func seqOf(t *testing.T, m ServerMessage) int {
	t.Helper()
	var d struct{ Seq int }
	if m.Type != TypeSignal || json.Unmarshal(m.Data, &d) != nil {
		t.Fatalf("got %+v, want a signal with seq", m)
	}
	return d.Seq
}

func TestResumeWithinGrace(t *testing.T) {
	th := newTestHub(t, Config{ResumeGrace: time.Hour})
	detached := detachEvents(th)
	a, wa := th.join(t, "res")
	b, wb := th.join(t, "res")
	expect(t, a, TypePeerJoined)

	b.drop() // the network fails: no close frame
	awaitDetach(t, detached, wb.ID)
	for i := range 3 {
		if err := a.Signal(wb.ID, map[string]int{"seq": i}); err != nil {
			t.Fatal(err)
		}
	}

	b2 := th.dial(t)
	r, err := b2.Resume(ctxT(t), wb.Resume)
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if r.ID != wb.ID || r.Room != "res" || r.Resume != wb.Resume {
		t.Fatalf("resumed = %+v, want id %s", r, wb.ID)
	}
	for i := range 3 {
		if m := next(t, b2); seqOf(t, m) != i || m.From != wa.ID {
			t.Fatalf("held signal %d = %+v", i, m)
		}
	}
	// A saw neither an error (unknown-peer) nor a leave/join flap: the next
	// thing it gets is b's signal sent after the resume.
	if err := b2.Signal(wa.ID, map[string]int{"seq": 99}); err != nil {
		t.Fatal(err)
	}
	if m := next(t, a); seqOf(t, m) != 99 || m.From != wb.ID {
		t.Fatalf("a got %+v first, want b's signal", m)
	}
	if v := th.metric(t, `signal_resumes_total{result="ok"}`); v != "1" {
		t.Fatalf("resumes ok = %q", v)
	}
}

func TestResumeReplacesOpenConnection(t *testing.T) {
	// The client notices the broken connection before the hub does and
	// resumes while the old socket is still open on the hub's side.
	th := newTestHub(t, Config{ResumeGrace: time.Hour})
	a, wa := th.join(t, "rep")
	b, wb := th.join(t, "rep")
	expect(t, a, TypePeerJoined)
	b2 := th.dial(t)
	if _, err := b2.Resume(ctxT(t), wb.Resume); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if code := waitClosed(t, b); code != CloseReplaced {
		t.Fatalf("old connection closed with %d, want %d", code, CloseReplaced)
	}
	if err := a.Signal(wb.ID, map[string]int{"seq": 7}); err != nil {
		t.Fatal(err)
	}
	if m := next(t, b2); seqOf(t, m) != 7 {
		t.Fatalf("b2 got %+v", m)
	}
	if err := b2.Signal(wa.ID, map[string]int{"seq": 8}); err != nil {
		t.Fatal(err)
	}
	if m := next(t, a); seqOf(t, m) != 8 {
		t.Fatalf("a got %+v, want no presence flap", m)
	}
}

func TestResumeAfterGrace(t *testing.T) {
	th := newTestHub(t, Config{ResumeGrace: 50 * time.Millisecond})
	detached := detachEvents(th)
	a, _ := th.join(t, "late")
	b, wb := th.join(t, "late")
	expect(t, a, TypePeerJoined)
	b.drop()
	awaitDetach(t, detached, wb.ID)
	// After the grace window the room hears that b left ...
	if m := expect(t, a, TypePeerLeft); m.ID != wb.ID {
		t.Fatalf("peer-left = %+v", m)
	}
	// ... signals to b fail ...
	if err := a.Signal(wb.ID, map[string]int{"seq": 1}); err != nil {
		t.Fatal(err)
	}
	if m := expect(t, a, TypeError, CodeUnknownPeer); m.Peer != wb.ID {
		t.Fatalf("unknown-peer error names %q", m.Peer)
	}
	// ... and resuming fails: join again.
	b2 := th.dial(t)
	_, err := b2.Resume(ctxT(t), wb.Resume)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeResumeFailed {
		t.Fatalf("late resume = %v, want resume-failed", err)
	}
	if _, err := b2.Join(ctxT(t), "late", ""); err != nil {
		t.Fatal(err)
	}
}

func TestHeldMessagesBounded(t *testing.T) {
	// A held signal here is 60 bytes: four fit, the fifth does not.
	th := newTestHub(t, Config{ResumeGrace: time.Hour, HeldBytes: 4*60 + 30})
	detached := detachEvents(th)
	a, _ := th.join(t, "held")
	b, wb := th.join(t, "held")
	expect(t, a, TypePeerJoined)
	b.drop()
	awaitDetach(t, detached, wb.ID)
	for i := range 5 {
		if err := a.Signal(wb.ID, map[string]int{"seq": i}); err != nil {
			t.Fatal(err)
		}
	}
	// The fifth does not fit: b is removed rather than resumed with a gap.
	// The error and the peer-left race each other; both arrive.
	got := map[string]bool{}
	for range 2 {
		m := next(t, a)
		got[m.Type+"/"+m.Code] = true
	}
	if !got[TypeError+"/"+CodeUnknownPeer] || !got[TypePeerLeft+"/"] {
		t.Fatalf("a got %v, want an unknown-peer error and a peer-left", got)
	}
	b2 := th.dial(t)
	if _, err := b2.Resume(ctxT(t), wb.Resume); err == nil {
		t.Fatal("resume succeeded after held messages overflowed")
	}
}

func TestCleanCloseLeavesAtOnce(t *testing.T) {
	th := newTestHub(t, Config{ResumeGrace: time.Hour})
	a, _ := th.join(t, "bye")
	b, wb := th.join(t, "bye")
	expect(t, a, TypePeerJoined)
	b.Close() // close frame 1000: no grace
	if m := expect(t, a, TypePeerLeft); m.ID != wb.ID {
		t.Fatalf("peer-left = %+v", m)
	}
	b2 := th.dial(t)
	if _, err := b2.Resume(ctxT(t), wb.Resume); err == nil {
		t.Fatal("resumed a session that left")
	}
}

func TestDeadPeerRemoved(t *testing.T) {
	// Pings every 100ms; a peer silent for 100ms+1s after a ping is dead.
	// The intervals are short for the test, not bounds it checks.
	th := newTestHub(t, Config{PingInterval: 100 * time.Millisecond, PongTimeout: time.Second, ResumeGrace: 10 * time.Millisecond})
	a, _ := th.join(t, "dead")
	_, wz := th.join(t, "dead", withoutPongs())
	expect(t, a, TypePeerJoined)
	if m := expect(t, a, TypePeerLeft); m.ID != wz.ID {
		t.Fatalf("peer-left = %+v, want the silent peer %s", m, wz.ID)
	}
	if v := th.metric(t, `signal_disconnects_total{reason="timeout"}`); v != "1" {
		t.Fatalf("timeout disconnects = %q", v)
	}
	alive(t, a) // the live peer, answering pings, is still there
}
