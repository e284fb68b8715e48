//go:build linux

package relay

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ringSlots is how many peer datagrams a relay loop holds between reading
// them and sending them on: the frames for clients of one round of ready
// sockets leave in one sendmmsg per listener socket instead of a sendto
// each.
const ringSlots = 32

// sendBatch collects a relay loop's ChannelData frames for clients. The
// frames live in the loop's ring until send. It belongs to the loop's
// goroutine.
type sendBatch struct {
	sock    *udpSock // the listener socket every queued frame leaves from
	n       int
	hdrs    [ringSlots]unix.Mmsghdr
	iovs    [ringSlots]unix.Iovec
	bs      [ringSlots]*binding
	sizes   [ringSlots]uint64 // payload bytes of each frame
	pending counts            // full buffers
	m       *metrics
	fn      func(fd uintptr) bool
}

func (o *sendBatch) init(m *metrics) {
	o.m = m
	for i := range o.hdrs {
		o.hdrs[i].Hdr.Iov = &o.iovs[i]
		o.hdrs[i].Hdr.SetIovlen(1)
	}
	o.fn = func(fd uintptr) bool {
		o.sendmmsg(fd)
		return true // never wait for writability: a relay drops instead
	}
}

// add queues frame (a ChannelData message of binding b) for `to` on sock.
// A frame for another socket sends the batch first.
func (o *sendBatch) add(sock *udpSock, to *sockaddr, b *binding, frame []byte) {
	if o.n > 0 && o.sock != sock || o.n == ringSlots {
		o.send()
	}
	o.sock = sock
	i := o.n
	o.iovs[i].Base = &frame[0]
	o.iovs[i].SetLen(len(frame))
	o.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&to.raw))
	o.hdrs[i].Hdr.Namelen = to.len
	o.bs[i] = b
	o.sizes[i] = uint64(len(frame) - 4)
	o.n++
}

// send sends every queued frame without waiting: a frame the socket
// buffer has no room for is dropped and counted, as a single send would.
func (o *sendBatch) send() {
	if o.n == 0 {
		return
	}
	if c := o.sock.raw; c != nil {
		c.mu.RLock()
		if c.closed {
			o.pending.sendFull += uint64(o.n)
		} else {
			o.sendmmsg(uintptr(c.fd))
		}
		c.mu.RUnlock()
	} else if err := o.sock.rc.Write(o.fn); err != nil {
		o.pending.sendFull += uint64(o.n)
	}
	clear(o.bs[:o.n])
	o.n, o.sock = 0, nil
	o.m.addTallies(&o.pending, dirPeerToClient) // a no-op without drops
}

func (o *sendBatch) sendmmsg(fd uintptr) {
	for start := 0; start < o.n; {
		// Raw: MSG_DONTWAIT never blocks, and entersyscall would wake an
		// idle sysmon (relayLoop.serve).
		r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&o.hdrs[start])),
			uintptr(o.n-start), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case e == unix.EINTR:
			continue
		case e != 0 || r == 0:
			// The frame at start cannot go (a full buffer: EAGAIN):
			// drop it and go on with the rest.
			o.pending.sendFull++
			start++
			continue
		}
		for i := start; i < start+int(r); i++ {
			b := o.bs[i]
			b.pktsP2C.Add(1)
			b.bytesP2C.Add(o.sizes[i])
		}
		start += int(r)
	}
}
