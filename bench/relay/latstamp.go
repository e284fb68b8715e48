//go:build linux

package main

import (
	"encoding/binary"
	"math"

	"golang.org/x/sys/unix"
)

// Kernel receive timestamps for the latency mode (-latload): every socket
// of the generator (the flows and the echo peer) sets SO_TIMESTAMPNS, so
// recvmmsg returns, per datagram, the CLOCK_REALTIME time the kernel
// stamped it on the way in; the user-space scheduling of the reading
// thread after that moment is not in the figure.

// Payload layout of a latency frame, after the 4-byte ChannelData header on
// the client side (the echo peer sees it from offset 0).
const (
	latOffStep = 0  // uint32: phase number; echoes of an earlier phase are late
	latOffFlow = 4  // uint32: flow index
	latOffSeq  = 8  // uint64: sequence number in the flow
	latOffSent = 16 // int64: CLOCK_REALTIME ns taken right before the client's sendmmsg
	latOffHold = 24 // int64: the echo's hold time, ns (written by the echo peer)
	latStamp   = 32 // bytes of the layout; payloads are at least this long
	// latOffEchoRx (int64, written by the echo peer into payloads of at
	// least latStamp+8 bytes): the echo's kernel receive stamp, which
	// splits a round trip into its way out (client to echo) and back.
	latOffEchoRx = 32

	// holdUnknown marks an echo whose kernel receive stamp was missing: its
	// hold time (and so its round trip) cannot be known.
	holdUnknown = math.MaxUint64
)

// rxControlLen is the control buffer per message: room for one
// SCM_TIMESTAMPNS (a struct timespec).
var rxControlLen = unix.CmsgSpace(sizeofTimespec)

// sizeofTimespec is struct timespec on 64-bit Linux (two int64s).
const sizeofTimespec = 16

// enableRxTimestamps asks the kernel to stamp every datagram fd receives.
func enableRxTimestamps(fd int) error {
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
}

// rxTimestamp returns the SCM_TIMESTAMPNS receive time, in CLOCK_REALTIME
// nanoseconds, from a control buffer as recvmsg filled it (ctrl cut to the
// returned msg_controllen), and false for a buffer without a well-formed
// one. It walks the messages with unix.ParseOneSocketControlMessage, which
// returns slices of ctrl (unix.ParseSocketControlMessage would allocate a
// list per datagram). The timespec is decoded in the 64-bit layout (two
// int64s); on 32-bit platforms it reports false.
func rxTimestamp(ctrl []byte) (int64, bool) {
	if unix.SizeofPtr != 8 {
		return 0, false
	}
	for len(ctrl) >= unix.CmsgLen(0) {
		h, data, rest, err := unix.ParseOneSocketControlMessage(ctrl)
		if err != nil {
			return 0, false
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && len(data) >= sizeofTimespec {
			sec := int64(binary.NativeEndian.Uint64(data[0:8]))
			nsec := int64(binary.NativeEndian.Uint64(data[8:16]))
			return sec*1e9 + nsec, true
		}
		ctrl = rest
	}
	return 0, false
}

// echoHold is what the echo peer writes at latOffHold: the time from the
// kernel's receive stamp to just before its sendmmsg (now), or
// holdUnknown when the datagram carried no stamp.
func echoHold(rx int64, stamped bool, now int64) uint64 {
	if !stamped || now < rx {
		return holdUnknown
	}
	return uint64(now - rx)
}

// latRTT is the round trip of one echo: kernel receive time at the client
// minus the send time in the payload minus the echo's hold. ok is false
// when the hold is unknown or the client's stamp is missing.
func latRTT(sent, clientRx int64, clientStamped bool, hold uint64) (rtt int64, ok bool) {
	if !clientStamped || hold == holdUnknown || hold > math.MaxInt64 {
		return 0, false
	}
	return clientRx - sent - int64(hold), true
}

// latWays splits a round trip at the echo's kernel receive stamp echoRx:
// out is send to echoRx (the relay's client→peer traversal), back is
// echoRx plus the hold to the client's stamp (peer→client); out+back is
// latRTT's figure. ok is false without an echo stamp (echoRx ≤ 0).
func latWays(sent, echoRx int64, hold uint64, clientRx int64) (out, back int64, ok bool) {
	if echoRx <= 0 || hold > math.MaxInt64 {
		return 0, 0, false
	}
	return echoRx - sent, clientRx - echoRx - int64(hold), true
}

// latHist is a fixed histogram of round-trip times: 1 µs buckets up to
// 10 ms, then 100 µs buckets up to 1 s; later ones count in the last. The
// exact maximum and the count of negative values (a clock step during the
// run; counted in the first bucket) are kept beside it.
type latHist struct {
	b   [latFineBuckets + latCoarseBuckets]uint64
	n   uint64
	max int64
	neg uint64
}

const (
	latFineNS        = 1_000
	latFineBuckets   = 10_000 // 1 µs up to 10 ms
	latCoarseNS      = 100_000
	latCoarseBuckets = 9_900 // 100 µs from 10 ms up to 1 s
	latFineTop       = latFineNS * latFineBuckets
)

func latBucket(d int64) int {
	switch {
	case d < 0:
		return 0
	case d < latFineTop:
		return int(d / latFineNS)
	}
	i := latFineBuckets + int((d-latFineTop)/latCoarseNS)
	return min(i, latFineBuckets+latCoarseBuckets-1)
}

// latUpper is bucket i's upper edge in ns.
func latUpper(i int) int64 {
	if i < latFineBuckets {
		return int64(i+1) * latFineNS
	}
	return latFineTop + int64(i-latFineBuckets+1)*latCoarseNS
}

func (h *latHist) add(d int64) {
	if d < 0 {
		h.neg++
	}
	h.b[latBucket(d)]++
	h.n++
	if h.n == 1 || d > h.max {
		h.max = d
	}
}

func (h *latHist) merge(o *latHist) {
	for i, v := range o.b {
		h.b[i] += v
	}
	if o.n > 0 && (h.n == 0 || o.max > h.max) {
		h.max = o.max
	}
	h.n += o.n
	h.neg += o.neg
}

// quantile returns the upper edge, in µs, of the bucket holding the
// nearest-rank quantile q (the ceil(q·n)-th smallest value), capped at the
// exact maximum; 0 for an empty histogram.
func (h *latHist) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(h.n)))
	want = max(want, 1)
	var acc uint64
	for i, v := range h.b {
		acc += v
		if acc >= want {
			return float64(min(latUpper(i), max(h.max, 0))) / 1e3
		}
	}
	return float64(h.max) / 1e3
}

// maxUS is the largest value added, in µs.
func (h *latHist) maxUS() float64 { return float64(h.max) / 1e3 }
