package relay

import (
	"net"
	"net/netip"
)

// streamFast is a TCP/TLS client connection's share of the data plane:
// the stream framer offers it every ChannelData frame (forward) and every
// request and answer (the snooper). Peer data for a stream client is
// framed by the relay socket's reader and written through the connection's
// output path (streamOut), which pion's writes share and which never makes
// a relay reader wait. forward and flush (snd, pending) belong to whoever
// reads the socket: the connection's goroutine, or the relay loop once it
// took the socket over; the snooper stays with pion's goroutines.
type streamFast struct {
	snooper
	remote  netip.AddrPort
	snd     *nbSender
	pending counts
	out     *streamOut // registered in fp.streams; nil: peer data takes pion's path
}

// newStream returns the data-plane state of stream c (out: its output
// path), or nil when the fast path is off (or absent: servers assembled by
// tests).
func (fp *fastPath) newStream(c net.Conn, out *streamOut) *streamFast {
	if fp == nil || !fp.enabled {
		return nil
	}
	sf := &streamFast{
		snooper: newSnooper(fp, c.LocalAddr()),
		remote:  unmapAP(toAddrPort(c.RemoteAddr())),
		snd:     newNBSender(),
		out:     out,
	}
	if out != nil {
		fp.mu.Lock()
		fp.streams[clientKey{sf.local, sf.remote}] = out
		fp.mu.Unlock()
	}
	return sf
}

// stream returns the output path of the stream client at (listener,
// client), or nil.
func (fp *fastPath) stream(listener, client netip.AddrPort) *streamOut {
	fp.mu.RLock()
	defer fp.mu.RUnlock()
	return fp.streams[clientKey{unmapAP(listener), unmapAP(client)}]
}

// forward relays one ChannelData frame (padding included) of a known
// binding and reports whether it did (or dropped it by a rule); false
// leaves the frame to pion.
func (sf *streamFast) forward(frame []byte) bool {
	return sf.fp.forward(sf.local, sf.lid, sf.remote, frame, sf.snd, &sf.pending)
}

// flush adds the tallies to Prometheus; the framer calls it before it
// blocks for more bytes, so once per burst.
func (sf *streamFast) flush() { sf.fp.s.metrics.addTallies(&sf.pending, dirClientToPeer) }

// close flushes the last tallies and withdraws the output path.
func (sf *streamFast) close() {
	sf.flush()
	if sf.out != nil {
		fp := sf.fp
		key := clientKey{sf.local, sf.remote}
		fp.mu.Lock()
		if fp.streams[key] == sf.out {
			delete(fp.streams, key)
		}
		fp.mu.Unlock()
	}
}
