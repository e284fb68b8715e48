package relay

import (
	"net"
	"net/netip"

	"github.com/pion/stun/v4"
)

// streamFast is a TCP/TLS client connection's share of the data plane:
// the stream framer offers it every ChannelData frame (forward), and the
// relay side writes peer data for this client's bindings straight to the
// connection (registerStream). It belongs to the connection's reading
// goroutine.
type streamFast struct {
	snooper
	remote  netip.AddrPort
	snd     *nbSender
	pending counts
	forget  func()
}

// newStream returns the stream's data-plane state, or nil when the fast
// path is off. c is the connection pion reads through the framer (TLS
// included); peer data is written to it whole, frame by frame.
func (fp *fastPath) newStream(c net.Conn) *streamFast {
	if !fp.enabled {
		return nil
	}
	return &streamFast{
		snooper: snooper{fp: fp, local: unmapAP(toAddrPort(c.LocalAddr())),
			snoop: map[[stun.TransactionIDSize]byte]pendingRequest{}},
		remote: unmapAP(toAddrPort(c.RemoteAddr())),
		snd:    newNBSender(),
		forget: fp.registerStream(c),
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

// close flushes and forgets the connection.
func (sf *streamFast) close() {
	sf.flush()
	sf.forget()
}
