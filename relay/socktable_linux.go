//go:build linux

package relay

import (
	"iter"

	"golang.org/x/sys/unix"
)

// sockKey is what a loop's epoll set reports for one of its sockets: a
// slot in the loop's sockTable and the generation of the socket in it.
// The generation makes an event that was already fetched for a socket
// removed since miss, instead of reaching whatever took its slot.
type sockKey struct {
	slot, gen uint32
}

// wakeKey is the eventfd's key: slot 0 is never given to a socket.
var wakeKey = sockKey{}

// event is the epoll registration of the socket with key k.
func (k sockKey) event(events uint32) *unix.EpollEvent {
	// The 64 bits of epoll_data: Fd and Pad only name them (G115 is
	// excluded: these are bit patterns, not numbers).
	return &unix.EpollEvent{Events: events, Fd: int32(k.slot), Pad: int32(k.gen)}
}

// keyOf reads the key an epoll event carries.
func keyOf(ev *unix.EpollEvent) sockKey {
	return sockKey{slot: uint32(ev.Fd), gen: uint32(ev.Pad)}
}

// sockTable holds a loop's sockets by key. A slice indexed by slot, not a
// map: the loop looks a socket up for every epoll event, and at low rates
// every lookup starts with cold caches (a map lookup was 2% of turnd's CPU
// at 10 flows). The loop's mutex guards it.
type sockTable struct {
	slots []sockSlot // slots[0] is the eventfd's
	free  []uint32   // slots to reuse
}

type sockSlot struct {
	ls  loopSock // zero when free
	gen uint32
}

// add stores ls and returns its key.
func (t *sockTable) add(ls loopSock) sockKey {
	if len(t.slots) == 0 {
		t.slots = append(t.slots, sockSlot{}) // wakeKey's
	}
	var i uint32
	if n := len(t.free); n > 0 {
		i = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		i = uint32(len(t.slots))
		t.slots = append(t.slots, sockSlot{})
	}
	s := &t.slots[i]
	s.gen++
	s.ls = ls
	return sockKey{slot: i, gen: s.gen}
}

// get returns the socket with key k, or the zero loopSock when k names
// none (removed since the event was fetched, or the eventfd).
func (t *sockTable) get(k sockKey) loopSock {
	if k.slot == 0 || int(k.slot) >= len(t.slots) {
		return loopSock{}
	}
	s := &t.slots[k.slot]
	if s.gen != k.gen {
		return loopSock{}
	}
	return s.ls
}

// remove frees k's slot; a key that names nothing is ignored.
func (t *sockTable) remove(k sockKey) {
	if t.get(k) == (loopSock{}) {
		return
	}
	t.slots[k.slot].ls = loopSock{}
	t.free = append(t.free, k.slot)
}

// all yields every socket in the table.
func (t *sockTable) all() iter.Seq[loopSock] {
	return func(yield func(loopSock) bool) {
		for i := range t.slots {
			if ls := t.slots[i].ls; ls != (loopSock{}) && !yield(ls) {
				return
			}
		}
	}
}
