package relay

import (
	"net"
	"net/netip"

	"github.com/pion/stun/v4"
)

// streamFast is a TCP/TLS client connection's share of the data plane:
// the stream framer offers it every ChannelData frame (forward) and every
// request and answer (the snooper). Peer data for a stream client stays on
// pion's path: its stream is pion's to write, and the shared relay readers
// must never wait on a slow stream. It belongs to the connection's reading
// goroutine.
type streamFast struct {
	snooper
	remote  netip.AddrPort
	snd     *nbSender
	pending counts
}

// newStream returns the data-plane state of stream c, or nil when the fast
// path is off (or absent: servers assembled by tests).
func (fp *fastPath) newStream(c net.Conn) *streamFast {
	if fp == nil || !fp.enabled {
		return nil
	}
	return &streamFast{
		snooper: snooper{fp: fp, local: unmapAP(toAddrPort(c.LocalAddr())),
			snoop: map[[stun.TransactionIDSize]byte]pendingRequest{}},
		remote: unmapAP(toAddrPort(c.RemoteAddr())),
		snd:    newNBSender(),
	}
}

// forward relays one ChannelData frame (padding included) of a known
// binding and reports whether it did (or dropped it by a rule); false
// leaves the frame to pion.
func (sf *streamFast) forward(frame []byte) bool {
	return sf.fp.forward(sf.local, sf.remote, frame, sf.snd, &sf.pending)
}

// flush adds the tallies to Prometheus; the framer calls it before it
// blocks for more bytes, so once per burst.
func (sf *streamFast) flush() { sf.fp.s.metrics.addTallies(&sf.pending, dirClientToPeer) }

// close flushes the last tallies.
func (sf *streamFast) close() { sf.flush() }
