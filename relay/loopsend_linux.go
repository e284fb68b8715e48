//go:build linux

package relay

import (
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ringSlots is how many peer datagrams a relay loop holds between reading
// them and sending them on: the frames for clients of one round of ready
// sockets leave in one sendmmsg per listener socket instead of a sendto
// each.
const ringSlots = 32

// Segmentation offload (UDP_SEGMENT, Linux 4.18): datagrams for the same
// destination with the same size leave in one send as one large buffer,
// which the kernel cuts into the datagrams after the routing, netfilter
// and device layers, or the receiving socket does (loopback, veth). A
// relay sees runs of such datagrams whenever a flow sends faster than the
// relay wakes up: video frames and bulk data channels, and saturation.
// The receiver still gets the datagrams one by one.
const (
	// gsoMaxSegs bounds the datagrams of one send (UDP_MAX_SEGMENTS was
	// 64 before Linux 6.9).
	gsoMaxSegs = 64
	// gsoMaxBytes bounds one send's payload, under the 65,507 bytes of one
	// IPv4 UDP datagram that the kernel checks the whole buffer against.
	gsoMaxBytes = 65000
)

// gsoCtrl is a UDP_SEGMENT control message (uint64s for the cmsghdr's
// alignment).
type gsoCtrl [3]uint64

// gsoCtrlLen is the length of the control message gsoCtrl holds.
var gsoCtrlLen = unix.CmsgSpace(2)

// set makes c ask for segments of size bytes.
func (c *gsoCtrl) set(size int) {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
	h.Level = unix.SOL_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(uintptr(unsafe.Pointer(&c[0])) + uintptr(unix.CmsgLen(0)))) = uint16(size)
}

// gsoRun tracks one message that merges frames of one size: every frame
// but the last must have the size of the first, the last may be shorter.
type gsoRun struct {
	to   *sockaddr
	size int // of the first frame: the segment size
	last int // of the last frame
	segs int
}

// takes reports whether a frame of n bytes for `to` can join the run.
func (r *gsoRun) takes(to *sockaddr, n int) bool {
	return r.to == to && r.last == r.size && n <= r.size &&
		r.segs < gsoMaxSegs && (r.segs+1)*r.size <= gsoMaxBytes
}

// sendBatch collects a relay loop's ChannelData frames for clients. The
// frames live in the loop's ring until send. It belongs to the loop's
// goroutine.
//
// Consecutive frames for the same client address with the same size
// share one message with segmentation offload (gsoRun), unless gso is off
// or the kernel refused it for the first frame's binding.
type sendBatch struct {
	sock  *udpSock                // the listener socket every queued frame leaves from
	n     int                     // frames
	msgs  int                     // messages they form
	gso   bool                    // merge frames (the kernel has UDP_SEGMENT)
	hdrs  [ringSlots]unix.Mmsghdr // per message
	runs  [ringSlots]gsoRun       // per message
	first [ringSlots]int          // per message: its first frame
	ctrl  [ringSlots]gsoCtrl      // per message
	iovs  [ringSlots]unix.Iovec   // per frame: a message's frames are consecutive
	bs    [ringSlots]*binding     // per frame
	sizes [ringSlots]uint64       // per frame: payload bytes
	one   *nbSender               // sends a refused message's frames one by one

	pending   counts // full buffers
	segmented uint64 // frames sent merged, not yet in Prometheus
	m         *metrics
	fn        func(fd uintptr) bool
}

func (o *sendBatch) init(m *metrics, gso bool) {
	o.m = m
	o.gso = gso
	o.one = newNBSender()
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
	o.bs[i] = b
	o.sizes[i] = uint64(len(frame) - 4)
	o.n++
	if m := o.msgs - 1; m >= 0 && o.gso && o.runs[m].takes(to, len(frame)) && !o.bs[o.first[m]].noGSO.Load() {
		r := &o.runs[m]
		r.segs++
		r.last = len(frame)
		o.hdrs[m].Hdr.SetIovlen(r.segs)
		return
	}
	m := o.msgs
	o.msgs++
	h := &o.hdrs[m].Hdr
	h.Iov = &o.iovs[i]
	h.SetIovlen(1)
	h.Name = (*byte)(unsafe.Pointer(&to.raw))
	h.Namelen = to.len
	h.Control = nil
	h.SetControllen(0)
	o.runs[m] = gsoRun{to: to, size: len(frame), last: len(frame), segs: 1}
	o.first[m] = i
}

// send sends every queued frame without waiting: a frame the socket
// buffer has no room for is dropped and counted, as a single send would.
func (o *sendBatch) send() {
	if o.n == 0 {
		return
	}
	for m := 0; m < o.msgs; m++ {
		if r := &o.runs[m]; r.segs > 1 {
			o.ctrl[m].set(r.size)
			h := &o.hdrs[m].Hdr
			h.Control = (*byte)(unsafe.Pointer(&o.ctrl[m][0]))
			h.SetControllen(gsoCtrlLen)
		}
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
	clear(o.runs[:o.msgs])
	o.n, o.msgs, o.sock = 0, 0, nil
	o.m.addTallies(&o.pending, dirPeerToClient) // a no-op without drops
	if o.segmented > 0 {
		o.m.segP2C.Add(float64(o.segmented))
		o.segmented = 0
	}
}

func (o *sendBatch) sendmmsg(fd uintptr) {
	for start := 0; start < o.msgs; {
		// Raw: MSG_DONTWAIT never blocks, and entersyscall would wake an
		// idle sysmon (relayLoop.serve).
		r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&o.hdrs[start])),
			uintptr(o.msgs-start), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case e == unix.EINTR:
			continue
		case e != 0 || r == 0:
			o.failed(fd, start, e)
			start++
			continue
		}
		for m := start; m < start+int(r); m++ {
			o.count(m)
			if segs := o.runs[m].segs; segs > 1 {
				o.segmented += uint64(segs)
			}
		}
		start += int(r)
	}
}

// count adds message m's frames to their bindings' counters.
func (o *sendBatch) count(m int) {
	for i := o.first[m]; i < o.first[m]+o.runs[m].segs; i++ {
		b := o.bs[i]
		b.pktsP2C.Add(1)
		b.bytesP2C.Add(o.sizes[i])
	}
}

// failed handles message m, which could not go. A full buffer (EAGAIN)
// drops its frames. Any other error on a merged message is the kernel
// refusing segmentation for this destination (a route MTU below the
// segment size, an IPsec route, a device without checksum offload): its
// frames go one by one, and the binding's frames are not merged again.
func (o *sendBatch) failed(fd uintptr, m int, e unix.Errno) {
	r := &o.runs[m]
	if r.segs == 1 || e == unix.EAGAIN || e == 0 {
		o.pending.sendFull += uint64(r.segs)
		return
	}
	o.bs[o.first[m]].noGSO.Store(true)
	for i := o.first[m]; i < o.first[m]+r.segs; i++ {
		o.one.buf, o.one.to = unsafe.Slice(o.iovs[i].Base, o.iovs[i].Len), r.to
		o.one.send(fd)
		if o.one.err != nil {
			o.pending.sendFull++
			continue
		}
		o.bs[i].pktsP2C.Add(1)
		o.bs[i].bytesP2C.Add(o.sizes[i])
	}
	o.one.buf, o.one.to = nil, nil
}

// gsoSupported reports whether the kernel segments UDP sends
// (UDP_SEGMENT).
func gsoSupported() bool {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	_, err = unix.GetsockoptInt(fd, unix.SOL_UDP, unix.UDP_SEGMENT)
	return err == nil
}

// c2pRun merges a relay loop's consecutive client→peer datagrams of one
// binding with one size (a gsoRun) into one segmented send from the
// binding's relay socket; a run of one is a plain sendto. The datagrams
// stay in the loop's ring until flush, which the loop calls before it
// reads into those slots again. It belongs to the loop's goroutine.
type c2pRun struct {
	gso   bool
	bd    *binding
	run   gsoRun
	bytes uint64
	iovs  [loopSlots]unix.Iovec
	msg   unix.Msghdr
	ctrl  gsoCtrl
	snd   *nbSender
	tally *counts
	// segmented counts datagrams sent merged until the loop adds them to
	// Prometheus (once per listener drain).
	segmented uint64
}

// add queues payload p for bd's peer, whose relay socket is bd.raw; snd
// and tally are the reading listener's.
func (r *c2pRun) add(bd *binding, p []byte, snd *nbSender, tally *counts) {
	if r.run.segs > 0 && (r.bd != bd || r.run.segs == len(r.iovs) || !r.gso ||
		!r.run.takes(&bd.peerSA, len(p)) || bd.noGSO.Load()) {
		r.flush()
	}
	if r.run.segs == 0 {
		r.bd, r.snd, r.tally = bd, snd, tally
		r.run = gsoRun{to: &bd.peerSA, size: len(p)}
	}
	r.iovs[r.run.segs].Base = unsafe.SliceData(p)
	r.iovs[r.run.segs].SetLen(len(p))
	r.run.segs++
	r.run.last = len(p)
	r.bytes += uint64(len(p))
}

// flush sends the run.
func (r *c2pRun) flush() {
	segs := r.run.segs
	if segs == 0 {
		return
	}
	bd := r.bd
	var err error
	if segs == 1 {
		err = r.snd.sendRaw(bd.raw, unsafe.Slice(r.iovs[0].Base, r.iovs[0].Len), &bd.peerSA)
	} else {
		err = r.sendGSO()
	}
	switch {
	case err == nil:
		bd.pktsC2P.Add(uint64(segs))
		bd.bytesC2P.Add(r.bytes)
		r.tally.pkts += uint64(segs)
		r.tally.bytes += r.bytes
		if segs > 1 {
			r.segmented += uint64(segs)
		}
	case errors.Is(err, errGSORefused):
		r.oneByOne()
	default:
		r.tally.sendFull += uint64(segs)
	}
	r.bd, r.snd, r.tally, r.run, r.bytes = nil, nil, nil, gsoRun{}, 0
}

// errGSORefused: the kernel would not segment a merged send.
var errGSORefused = errors.New("relay: segmented send refused")

// sendGSO sends the run as one segmented sendmsg.
func (r *c2pRun) sendGSO() error {
	bd := r.bd
	r.ctrl.set(r.run.size)
	r.msg.Name = (*byte)(unsafe.Pointer(&bd.peerSA.raw))
	r.msg.Namelen = bd.peerSA.len
	r.msg.Iov = &r.iovs[0]
	r.msg.SetIovlen(r.run.segs)
	r.msg.Control = (*byte)(unsafe.Pointer(&r.ctrl[0]))
	r.msg.SetControllen(gsoCtrlLen)
	c := bd.raw
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return errRawClosed
	}
	for {
		// Raw, as nbSender.send.
		_, _, e := unix.RawSyscall(unix.SYS_SENDMSG, uintptr(c.fd), uintptr(unsafe.Pointer(&r.msg)), unix.MSG_DONTWAIT)
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return errSendFull
		default:
			return errGSORefused
		}
	}
}

// oneByOne sends a run the kernel would not segment datagram by datagram,
// and stops merging the binding's datagrams (sendBatch.failed says why).
func (r *c2pRun) oneByOne() {
	bd := r.bd
	bd.noGSO.Store(true)
	for i := 0; i < r.run.segs; i++ {
		p := unsafe.Slice(r.iovs[i].Base, r.iovs[i].Len)
		if err := r.snd.sendRaw(bd.raw, p, &bd.peerSA); err != nil {
			r.tally.sendFull++
			continue
		}
		bd.pktsC2P.Add(1)
		bd.bytesC2P.Add(uint64(len(p)))
		r.tally.pkts++
		r.tally.bytes += uint64(len(p))
	}
}
