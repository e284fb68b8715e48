//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/pion/stun/v4"
	"golang.org/x/sys/unix"
)

// The batched load generator (-satload): a relay saturation test whose own
// cost per datagram is a share of one sendmmsg/recvmmsg, not a timer wake-up
// and a system call as in turnutils_uclient.
//
// Control plane: per flow, Allocate (answering the 401 with long-term
// credentials), CreatePermission and ChannelBind towards the echo peer,
// written with pion/stun on the flow's own socket. Data plane: raw
// non-blocking UDP sockets (golang.org/x/sys/unix); each sender worker owns
// a share of the flows on one locked OS thread, sends ChannelData frames
// with one sendmmsg per flow per tick, paced by a token bucket per tick,
// and reads echoes with recvmmsg when epoll says so. The echo peer reflects
// datagrams with recvmmsg/sendmmsg. Nothing allocates per datagram.

const (
	satBatch      = 64 // datagrams per sendmmsg/recvmmsg
	satChannel    = 0x4000
	satHeader     = 4      // ChannelData header
	satStamp      = 24     // step, flow, seq, send time
	rttBucketNS   = 10_000 // RTT histogram resolution: 10 µs
	rttBuckets    = 20_000 // up to 200 ms; later ones count in the last bucket
	rttSampleMask = 7      // every 8th echo is timed
)

// mmsghdr is struct mmsghdr (x/sys/unix has no type for it).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

func sendmmsg(fd int, m []mmsghdr) (int, error) {
	n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func recvmmsg(fd int, m []mmsghdr, flags int) (int, error) {
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(flags), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// mmsgRing is satBatch messages with their buffers (and, for the echo,
// their source addresses), built once.
type mmsgRing struct {
	msgs  []mmsghdr
	iovs  []unix.Iovec
	bufs  [][]byte
	names []unix.RawSockaddrInet4
	ctrls [][]byte // control buffers (kernel receive stamps), when withControl
}

// withControl gives every message a control buffer for one receive
// timestamp (latstamp.go), built once.
func (r *mmsgRing) withControl() *mmsgRing {
	r.ctrls = make([][]byte, len(r.msgs))
	for i := range r.msgs {
		r.ctrls[i] = make([]byte, rxControlLen)
		r.msgs[i].hdr.Control = &r.ctrls[i][0]
	}
	return r
}

// rearm resets what recvmmsg overwrote: buffer lengths, name and control
// lengths.
func (r *mmsgRing) rearm() {
	for i := range r.msgs {
		r.iovs[i].SetLen(len(r.bufs[i]))
		if r.names != nil {
			r.msgs[i].hdr.Namelen = unix.SizeofSockaddrInet4
		}
		if r.ctrls != nil {
			r.msgs[i].hdr.SetControllen(len(r.ctrls[i]))
		}
	}
}

// stamp returns message i's kernel receive time, if it carries one.
func (r *mmsgRing) stamp(i int) (int64, bool) {
	if r.ctrls == nil {
		return 0, false
	}
	return rxTimestamp(r.ctrls[i][:min(int(r.msgs[i].hdr.Controllen), len(r.ctrls[i]))])
}

func newRing(bufSize int, withNames bool) *mmsgRing {
	r := &mmsgRing{msgs: make([]mmsghdr, satBatch), iovs: make([]unix.Iovec, satBatch), bufs: make([][]byte, satBatch)}
	if withNames {
		r.names = make([]unix.RawSockaddrInet4, satBatch)
	}
	for i := range r.msgs {
		r.bufs[i] = make([]byte, bufSize)
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(bufSize)
		r.msgs[i].hdr.Iov = &r.iovs[i]
		r.msgs[i].hdr.SetIovlen(1)
		if withNames {
			r.msgs[i].hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
			r.msgs[i].hdr.Namelen = unix.SizeofSockaddrInet4
		}
	}
	return r
}

func udpSocket(local netip.AddrPort, rcvbuf int) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	// Root may exceed rmem_max/wmem_max: a generator that drops in its own
	// buffers would measure itself.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, rcvbuf)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: local.Addr().As4(), Port: int(local.Port())}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind %s: %w", local, err)
	}
	return fd, nil
}

// satFlow is one allocation with a channel to the echo peer.
type satFlow struct {
	fd    int
	index uint32
	sent  uint64 // owned by the flow's worker during a step
}

// setupFlow opens a socket on local, connects it to server and makes the
// allocation, permission and channel binding for peer.
func setupFlow(index int, local, server, peer netip.AddrPort) (*satFlow, error) {
	fd, err := udpSocket(local, 4<<20)
	if err != nil {
		return nil, err
	}
	f := &satFlow{fd: fd, index: uint32(index)}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: server.Addr().As4(), Port: int(server.Port())}); err != nil {
		f.close()
		return nil, err
	}
	if err := f.control(peer); err != nil {
		f.close()
		return nil, fmt.Errorf("flow %d: %w", index, err)
	}
	return f, nil
}

func (f *satFlow) close() { unix.Close(f.fd) }

// control runs the TURN control plane: Allocate (twice: the first one
// fetches realm and nonce), CreatePermission, ChannelBind.
func (f *satFlow) control(peer netip.AddrPort) error {
	transport := stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}
	res, err := f.transact(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), transport, stun.Fingerprint)
	if err != nil {
		return fmt.Errorf("allocate: %w", err)
	}
	var realm stun.Realm
	var nonce stun.Nonce
	if err := realm.GetFrom(res); err != nil {
		return fmt.Errorf("allocate: no realm in the first answer (%s): %w", res.Type, err)
	}
	if err := nonce.GetFrom(res); err != nil {
		return fmt.Errorf("allocate: no nonce: %w", err)
	}
	auth := []stun.Setter{stun.NewUsername(benchUser), realm, nonce, stun.NewLongTermIntegrity(benchUser, string(realm), benchPass), stun.Fingerprint}
	authed := func(t stun.MessageType, s ...stun.Setter) error {
		res, err := f.transact(append(append([]stun.Setter{stun.TransactionID, t}, s...), auth...)...)
		if err != nil {
			return err
		}
		if res.Type.Class != stun.ClassSuccessResponse {
			var code stun.ErrorCodeAttribute
			_ = code.GetFrom(res)
			return fmt.Errorf("%s: %s", res.Type, code)
		}
		return nil
	}
	if err := authed(stun.NewType(stun.MethodAllocate, stun.ClassRequest), transport); err != nil {
		return fmt.Errorf("allocate: %w", err)
	}
	xpeer := xorPeerAddress{peer}
	if err := authed(stun.NewType(stun.MethodCreatePermission, stun.ClassRequest), xpeer); err != nil {
		return fmt.Errorf("create permission: %w", err)
	}
	ch := stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{satChannel >> 8, satChannel & 0xff, 0, 0}}
	if err := authed(stun.NewType(stun.MethodChannelBind, stun.ClassRequest), ch, xpeer); err != nil {
		return fmt.Errorf("channel bind: %w", err)
	}
	return nil
}

// xorPeerAddress is the XOR-PEER-ADDRESS attribute (RFC 8656).
type xorPeerAddress struct{ netip.AddrPort }

func (a xorPeerAddress) AddTo(m *stun.Message) error {
	return stun.XORMappedAddress{IP: a.Addr().AsSlice(), Port: int(a.Port())}.AddToAs(m, stun.AttrXORPeerAddress)
}

// transact sends a request and waits for the answer with its transaction
// ID: five tries, 300 ms apart.
func (f *satFlow) transact(s ...stun.Setter) (*stun.Message, error) {
	req, err := stun.Build(s...)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 2048)
	for try := 0; try < 5; try++ {
		if _, err := unix.Write(f.fd, req.Raw); err != nil {
			return nil, err
		}
		deadline := time.Now().Add(300 * time.Millisecond)
		for time.Now().Before(deadline) {
			pfd := []unix.PollFd{{Fd: int32(f.fd), Events: unix.POLLIN}}
			if n, _ := unix.Poll(pfd, int(time.Until(deadline)/time.Millisecond)+1); n <= 0 {
				continue
			}
			n, err := unix.Read(f.fd, buf)
			if err != nil || !stun.IsMessage(buf[:n]) {
				continue
			}
			res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if res.Decode() == nil && res.TransactionID == req.TransactionID {
				return res, nil
			}
		}
	}
	return nil, errors.New("no answer")
}

// rttHist is a fixed histogram of sampled round-trip times.
type rttHist [rttBuckets]uint32

func (h *rttHist) add(d int64) {
	i := d / rttBucketNS
	if i < 0 {
		i = 0
	}
	if i >= rttBuckets {
		i = rttBuckets - 1
	}
	h[i]++
}

func (h *rttHist) merge(o *rttHist) {
	for i, v := range o {
		h[i] += v
	}
}

// quantile returns the upper edge of the bucket holding quantile q, in ms.
func (h *rttHist) quantile(q float64) float64 {
	var total uint64
	for _, v := range h {
		total += uint64(v)
	}
	if total == 0 {
		return 0
	}
	want := uint64(q*float64(total)) + 1
	var acc uint64
	for i, v := range h {
		acc += uint64(v)
		if acc >= want {
			return float64((i+1)*rttBucketNS) / 1e6
		}
	}
	return float64(rttBuckets*rttBucketNS) / 1e6
}

// stepCounts is what one worker saw in one step.
type stepCounts struct {
	sent, echoed, late, sendFull uint64
	hist                         rttHist
}

// flowEpoll returns an epoll set holding every flow's socket (event data:
// the flow's index in flows) and resets the flows' send counts: a sender
// thread's set-up, shared by the saturation and latency workers.
func flowEpoll(flows []*satFlow) (int, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return -1, err
	}
	for i, f := range flows {
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, f.fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)}); err != nil {
			unix.Close(ep)
			return -1, err
		}
		f.sent = 0
	}
	return ep, nil
}

// channelRings returns a sender's rings: tx with the ChannelData header
// for payload bytes written once into every buffer, rx with room for a
// frame and some.
func channelRings(payload int) (tx, rx *mmsgRing) {
	frame := satHeader + payload
	tx, rx = newRing(frame, false), newRing(frame+64, false)
	for _, b := range tx.bufs {
		binary.BigEndian.PutUint16(b[0:], satChannel)
		binary.BigEndian.PutUint16(b[2:], uint16(payload))
	}
	return tx, rx
}

// satWorker sends for its flows at rate round trips/s (its share) until
// stop, then reads echoes for drain more, counting those of this step.
func satWorker(flows []*satFlow, step uint32, rate float64, payload int, start time.Time, stop, drain, tick time.Duration, out *stepCounts) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ep, err := flowEpoll(flows)
	if err != nil {
		return err
	}
	defer unix.Close(ep)
	tx, rx := channelRings(payload)
	events := make([]unix.EpollEvent, len(flows))
	perFlow := rate / float64(len(flows))
	var tokens float64 // per flow, so every flow sends the same count
	last := time.Now()
	next := 0
	for {
		now := time.Now()
		el := now.Sub(start)
		if el >= stop+drain {
			return nil
		}
		if el < stop {
			tokens += perFlow * now.Sub(last).Seconds()
			// A stall of this thread is not made up in one burst: at most
			// two ticks of sending are owed (and then shows as sent < offered).
			tokens = min(tokens, max(perFlow*(2*tick).Seconds(), 2))
			last = now
			for int(tokens) >= 1 {
				n := min(int(tokens), satBatch)
				tokens -= float64(n)
				ts := time.Since(start).Nanoseconds()
				for fi := range flows {
					f := flows[(next+fi)%len(flows)]
					for i := 0; i < n; i++ {
						b := tx.bufs[i][satHeader:]
						binary.BigEndian.PutUint32(b[0:], step)
						binary.BigEndian.PutUint32(b[4:], f.index)
						binary.BigEndian.PutUint64(b[8:], f.sent+uint64(i))
						binary.BigEndian.PutUint64(b[16:], uint64(ts))
					}
					k, err := sendmmsg(f.fd, tx.msgs[:n])
					if err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.ENOBUFS) {
						return fmt.Errorf("sendmmsg: %w", err)
					}
					if k < n {
						out.sendFull += uint64(n - k)
					}
					f.sent += uint64(n) // a datagram its own socket refused counts as sent and lost
					out.sent += uint64(n)
				}
				next++
			}
		}
		// One pass per tick: send what the bucket earned, read every flow
		// epoll reports readable, sleep to the next tick. Waking per echo
		// instead would cost a wake-up and a system call per few datagrams;
		// this keeps batches large, at the price of up to one tick of read
		// delay in the measured round trip.
		ne, err := unix.EpollWait(ep, events, 0)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
		for e := 0; e < ne; e++ {
			f := flows[events[e].Fd]
			for {
				rx.rearm()
				k, err := recvmmsg(f.fd, rx.msgs, unix.MSG_DONTWAIT)
				if err != nil || k == 0 {
					break
				}
				rnow := time.Since(start).Nanoseconds()
				for i := 0; i < k; i++ {
					b := rx.bufs[i][:rx.msgs[i].n]
					if len(b) < satHeader+satStamp || binary.BigEndian.Uint16(b) != satChannel {
						continue // not ours: STUN answers, stale frames
					}
					p := b[satHeader:]
					if binary.BigEndian.Uint32(p) != step {
						out.late++
						continue
					}
					out.echoed++
					if binary.BigEndian.Uint64(p[8:])&rttSampleMask == 0 {
						out.hist.add(rnow - int64(binary.BigEndian.Uint64(p[16:])))
					}
				}
				if k < len(rx.msgs) {
					break
				}
			}
		}
		if d := tick - time.Since(now); d > 0 {
			ts := unix.NsecToTimespec(d.Nanoseconds())
			_ = unix.Nanosleep(&ts, nil)
		}
	}
}

// echoPeer reflects every datagram to its sender with recvmmsg/sendmmsg on
// one socket and one locked OS thread, until stopped. A stamped echo
// (the latency mode) also writes its hold time into every datagram of at
// least latStamp bytes: from the kernel's receive stamp to just before
// the sendmmsg that returns it.
type echoPeer struct {
	fd      int
	addr    netip.AddrPort
	stamped bool
	holdAt  int // where the hold goes in a datagram
	stopped atomic.Bool
	done    chan struct{}
	echoed  atomic.Uint64
	dropped atomic.Uint64
	tid     atomic.Int64
}

func startEchoPeer(addr netip.AddrPort, stamped bool) (*echoPeer, error) {
	return startEchoPeerAt(addr, stamped, latOffHold)
}

// startEchoPeerAt is startEchoPeer writing the hold at holdAt: the latency
// mode's direct baseline, whose datagrams still carry the 4-byte
// ChannelData header, passes satHeader+latOffHold.
func startEchoPeerAt(addr netip.AddrPort, stamped bool, holdAt int) (*echoPeer, error) {
	fd, err := udpSocket(addr, 16<<20)
	if err != nil {
		return nil, err
	}
	if stamped {
		if err := enableRxTimestamps(fd); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("SO_TIMESTAMPNS: %w", err)
		}
	}
	// Blocking reads with a timeout, so the loop notices stop.
	_ = unix.SetNonblock(fd, false)
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100_000})
	e := &echoPeer{fd: fd, addr: addr, stamped: stamped, holdAt: holdAt, done: make(chan struct{})}
	go e.loop()
	return e, nil
}

func (e *echoPeer) loop() {
	defer close(e.done)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	e.tid.Store(int64(unix.Gettid()))
	r := newRing(2048, true)
	var rxs []rxStamp
	if e.stamped {
		r.withControl()
		rxs = make([]rxStamp, len(r.msgs))
	}
	for !e.stopped.Load() {
		r.rearm()
		k, err := recvmmsg(e.fd, r.msgs, unix.MSG_WAITFORONE)
		if err != nil || k == 0 {
			continue
		}
		for i := 0; i < k; i++ {
			r.iovs[i].SetLen(int(r.msgs[i].n))
			if e.stamped {
				// The stamp is read now: the message goes back out with
				// no control data (a received SCM_TIMESTAMPNS is not a
				// valid cmsg to send).
				rxs[i].ns, rxs[i].ok = r.stamp(i)
				r.msgs[i].hdr.SetControllen(0)
			}
		}
		sent := 0
		for sent < k {
			if e.stamped {
				e.writeHolds(r, rxs, sent, k)
			}
			n, err := sendmmsg(e.fd, r.msgs[sent:k])
			if err != nil || n == 0 {
				e.dropped.Add(uint64(k - sent))
				break
			}
			sent += n
		}
		e.echoed.Add(uint64(sent))
	}
}

// writeHolds writes the hold time of messages [from, to) of r, taken
// against one clock read right before the sendmmsg that sends them.
func (e *echoPeer) writeHolds(r *mmsgRing, rxs []rxStamp, from, to int) {
	now := time.Now().UnixNano()
	for i := from; i < to; i++ {
		if int(r.msgs[i].n) < e.holdAt+8 {
			continue
		}
		binary.BigEndian.PutUint64(r.bufs[i][e.holdAt:], echoHold(rxs[i].ns, rxs[i].ok, now))
		if int(r.msgs[i].n) >= e.holdAt+16 && rxs[i].ok {
			// The echo's own receive stamp, for the per-hop timeline.
			binary.BigEndian.PutUint64(r.bufs[i][e.holdAt+8:], uint64(rxs[i].ns))
		}
	}
}

// rxStamp is one datagram's kernel receive time, if it had one.
type rxStamp struct {
	ns int64
	ok bool
}

func (e *echoPeer) close() {
	e.stopped.Store(true)
	<-e.done
	unix.Close(e.fd)
}

// runStep offers rate round trips/s over flows, split over workers, for
// dur, and returns the merged counts.
func runStep(flows []*satFlow, workers int, step uint32, rate float64, payload int, dur, drain, tick time.Duration) (stepCounts, error) {
	workers = min(workers, len(flows))
	outs := make([]stepCounts, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		var mine []*satFlow
		for i := w; i < len(flows); i += workers {
			mine = append(mine, flows[i])
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = satWorker(mine, step, rate*float64(len(mine))/float64(len(flows)), payload, start, dur, drain, tick, &outs[w])
		}()
	}
	wg.Wait()
	var total stepCounts
	for i := range outs {
		total.sent += outs[i].sent
		total.echoed += outs[i].echoed
		total.late += outs[i].late
		total.sendFull += outs[i].sendFull
		total.hist.merge(&outs[i].hist)
	}
	return total, errors.Join(errs...)
}
