package netlab

import (
	"encoding/binary"
	"net/netip"
)

// UDPChecksum computes the UDP checksum of datagram (the UDP header, whose
// checksum field is ignored, and the payload) from scratch, as RFC 768 and
// RFC 8200 define it; 0 is sent as 0xffff.
func UDPChecksum(src, dst netip.Addr, datagram []byte) uint16 {
	s := PseudoHeaderSum(src, dst, len(datagram))
	s += sum16(datagram[:6])
	s += sum16(datagram[8:])
	c := ^Fold(s)
	if c == 0 {
		c = 0xffff
	}
	return c
}

// PseudoHeaderSum is the unfolded one's-complement sum of the UDP
// pseudo-header for a datagram of udpLen bytes. Folded, it is what a
// CHECKSUM_PARTIAL packet carries in its checksum field until the stack or
// the NIC completes it.
func PseudoHeaderSum(src, dst netip.Addr, udpLen int) uint32 {
	var s uint32
	if src.Is4() {
		a, b := src.As4(), dst.As4()
		s = sum16(a[:]) + sum16(b[:])
	} else {
		a, b := src.As16(), dst.As16()
		s = sum16(a[:]) + sum16(b[:])
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

// sum16 adds b as big-endian 16-bit words (an odd tail is padded with zero).
func sum16(b []byte) uint32 {
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
