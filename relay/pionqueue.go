//go:build linux

package relay

import "sync"

// pionQueue carries a relay socket's datagrams from the relay event loop
// to pion's per-allocation goroutine: the datagrams the fast path leaves to
// pion (Data indications for UDP clients; everything for TCP/TLS clients,
// whose streams pion writes). The loop never waits on it: past
// pionQueueMax datagrams it refuses and the caller drops and counts.
//
// The bound is generous on purpose. A TCP/TLS client's whole peer→client
// leg runs through here, so the queue has to ride out pion's goroutine
// being kept off the CPU on a busy machine (a 16-slot channel lost one
// echo in 2,000 at 200 packets/s under a load average of 15), as the
// relay socket's own 2 MiB kernel buffer would for a socket pion read
// itself. It grows only while datagrams wait, so an idle allocation holds
// no queue memory.
type pionQueue struct {
	mu    sync.Mutex
	buf   []rawPkt
	head  int
	ready chan struct{} // one token: "buf may be non-empty"
}

// pionQueueMax bounds the datagrams waiting per relay socket: about 2.5 s
// at 200 packets/s, 0.5 s at 1,000.
const pionQueueMax = 512

func newPionQueue() pionQueue { return pionQueue{ready: make(chan struct{}, 1)} }

// push appends pk unless the queue is full; it never blocks.
func (q *pionQueue) push(pk rawPkt) bool {
	q.mu.Lock()
	if len(q.buf)-q.head >= pionQueueMax {
		q.mu.Unlock()
		return false
	}
	if q.head > 0 && len(q.buf) == cap(q.buf) {
		// Reuse the consumed front instead of growing.
		n := copy(q.buf, q.buf[q.head:])
		clear(q.buf[n:])
		q.buf, q.head = q.buf[:n], 0
	}
	q.buf = append(q.buf, pk)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

// pop returns the oldest datagram, waiting for one until done closes.
func (q *pionQueue) pop(done <-chan struct{}) (rawPkt, bool) {
	for {
		q.mu.Lock()
		if q.head < len(q.buf) {
			pk := q.buf[q.head]
			q.buf[q.head] = rawPkt{}
			q.head++
			if q.head == len(q.buf) {
				q.buf, q.head = q.buf[:0], 0
				if cap(q.buf) > 64 {
					q.buf = nil // a burst is over: give its memory back
				}
			}
			q.mu.Unlock()
			return pk, true
		}
		q.mu.Unlock()
		select {
		case <-q.ready:
		case <-done:
			return rawPkt{}, false
		}
	}
}
