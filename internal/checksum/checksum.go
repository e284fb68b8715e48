// Package checksum computes Internet checksums from scratch (RFC 1071),
// for UDP over IPv4 and IPv6: the reference that the eBPF program's
// incremental arithmetic and captured packets are checked against.
package checksum

import (
	"encoding/binary"
	"net/netip"
)

// UDP computes the UDP checksum of datagram (the UDP header, whose
// checksum field is ignored, and the payload) from scratch, as RFC 768 and
// RFC 8200 define it; 0 is sent as 0xffff.
func UDP(src, dst netip.Addr, datagram []byte) uint16 {
	s := PseudoHeader(src, dst, len(datagram))
	s += Sum16(datagram[:6])
	s += Sum16(datagram[8:])
	c := ^Fold(s)
	if c == 0 {
		c = 0xffff
	}
	return c
}

// PseudoHeader is the unfolded one's-complement sum of the UDP
// pseudo-header for a datagram of udpLen bytes. Folded, it is what a
// CHECKSUM_PARTIAL packet carries in its checksum field until the stack or
// the NIC completes it.
func PseudoHeader(src, dst netip.Addr, udpLen int) uint32 {
	var s uint32
	if src.Is4() {
		a, b := src.As4(), dst.As4()
		s = Sum16(a[:]) + Sum16(b[:])
	} else {
		a, b := src.As16(), dst.As16()
		s = Sum16(a[:]) + Sum16(b[:])
	}
	return s + 17 + uint32(udpLen)
}

// Fold folds a 32-bit one's-complement sum into 16 bits.
func Fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// Sum16 adds b as big-endian 16-bit words (an odd tail is padded with zero).
func Sum16(b []byte) uint32 {
	var s uint32
	for len(b) >= 2 {
		s += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}
