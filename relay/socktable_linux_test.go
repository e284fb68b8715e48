//go:build linux

package relay

import (
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSockTable(t *testing.T) {
	var tab sockTable
	a, b := loopSock{rf: &relayFast{}}, loopSock{lf: &listenerFast{}}
	ka, kb := tab.add(a), tab.add(b)
	if ka == wakeKey || kb == wakeKey || ka == kb {
		t.Fatalf("keys %v %v: want distinct and not the eventfd's", ka, kb)
	}
	if tab.get(ka) != a || tab.get(kb) != b {
		t.Fatal("get does not return what add stored")
	}
	if tab.get(wakeKey) != (loopSock{}) {
		t.Error("the eventfd's key names a socket")
	}

	// A removed socket's slot is reused with a new generation: an event
	// fetched for the old socket names nothing, not the new one.
	tab.remove(ka)
	if tab.get(ka) != (loopSock{}) {
		t.Error("a removed key still names its socket")
	}
	c := loopSock{st: &loopStream{}}
	kc := tab.add(c)
	if kc.slot != ka.slot || kc.gen == ka.gen {
		t.Errorf("reused slot: key %v after %v, want the same slot, another generation", kc, ka)
	}
	if tab.get(ka) != (loopSock{}) || tab.get(kc) != c {
		t.Error("a stale key reaches the socket that took its slot")
	}
	tab.remove(ka) // stale: must not free kc's slot
	if tab.get(kc) != c {
		t.Error("removing a stale key removed the slot's new socket")
	}
	if got := tab.get(sockKey{slot: 99, gen: 1}); got != (loopSock{}) {
		t.Error("a key beyond the table names a socket")
	}

	var seen []loopSock
	for ls := range tab.all() {
		seen = append(seen, ls)
	}
	if len(seen) != 2 || !slices.Contains(seen, b) || !slices.Contains(seen, c) {
		t.Errorf("all yields %d sockets, want b and c", len(seen))
	}
}

// The key survives the round trip through an epoll event, every bit of it.
func TestSockKeyEvent(t *testing.T) {
	for _, k := range []sockKey{wakeKey, {1, 1}, {0xffffffff, 0x80000000}, {7, 0xffffffff}} {
		ev := k.event(unix.EPOLLIN)
		if got := keyOf(ev); got != k || ev.Events != unix.EPOLLIN {
			t.Errorf("key %v: event carries %v, events %#x", k, got, ev.Events)
		}
	}
}
