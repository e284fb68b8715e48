//go:build linux

package relay

import (
	"net/netip"
	"testing"
)

func TestPionQueue(t *testing.T) {
	q := newPionQueue()
	done := make(chan struct{})
	src := netip.MustParseAddrPort("192.0.2.1:5000")
	// Fill to the bound in two bursts with a partial drain between, so
	// the consumed front is reused.
	for i := 0; i < pionQueueMax/2; i++ {
		if !q.push(rawPkt{b: []byte{byte(i)}, src: src}) {
			t.Fatalf("push %d refused below the bound", i)
		}
	}
	next := 0
	for ; next < 10; next++ {
		pk, ok := q.pop(done)
		if !ok || pk.b[0] != byte(next) {
			t.Fatalf("pop %d = %v, %v", next, pk.b, ok)
		}
	}
	for i := pionQueueMax / 2; i < pionQueueMax+10; i++ {
		if !q.push(rawPkt{b: []byte{byte(i)}, src: src}) {
			t.Fatalf("push %d refused below the bound", i)
		}
	}
	if q.push(rawPkt{b: []byte{0}, src: src}) {
		t.Fatal("push past pionQueueMax accepted")
	}
	for ; next < pionQueueMax+10; next++ {
		pk, ok := q.pop(done)
		if !ok || pk.b[0] != byte(next) || pk.src != src {
			t.Fatalf("pop %d = %v %v, %v: order lost", next, pk.b, pk.src, ok)
		}
	}
	close(done)
	if _, ok := q.pop(done); ok {
		t.Fatal("pop on an empty, closed queue returned a datagram")
	}
	if len(q.buf) != 0 || q.head != 0 {
		t.Fatalf("drained queue holds %d (head %d)", len(q.buf), q.head)
	}
}

func TestPionQueueWakesWaiter(t *testing.T) {
	q := newPionQueue()
	done := make(chan struct{})
	got := make(chan rawPkt)
	go func() {
		pk, _ := q.pop(done)
		got <- pk
	}()
	q.push(rawPkt{b: []byte("x")})
	if pk := <-got; string(pk.b) != "x" {
		t.Fatalf("waiter got %q", pk.b)
	}
}
