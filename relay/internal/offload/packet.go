//go:build linux

package offload

import (
	"encoding/binary"
	"net/netip"

	"github.com/rtcsuite/rtcsuite/internal/checksum"
)

// This file builds Ethernet/IP/UDP frames with checksums computed from
// scratch. The self-test compares the program's output against it, so it is
// written independently of the program's incremental checksum arithmetic.

const (
	ethLen  = 14
	ip4Len  = 20
	ip6Len  = 40
	udpLen  = 8
	chanLen = 4
	outTTL  = 64
)

// frame describes one UDP datagram on Ethernet.
type frame struct {
	src, dst netip.AddrPort
	payload  []byte
	ttl      uint8
	// noCsum leaves an IPv4 UDP checksum at zero ("none").
	noCsum bool
	// partial writes the folded pseudo-header sum instead of the checksum,
	// as a CHECKSUM_PARTIAL packet from a local sender carries it.
	partial bool
}

var (
	frameDstMAC = [6]byte{0x02, 0, 0, 0, 0, 0x01}
	frameSrcMAC = [6]byte{0x02, 0, 0, 0, 0, 0x02}
)

// bytes returns the frame with valid IP and UDP checksums.
func (f frame) bytes() []byte {
	v4 := f.src.Addr().Is4()
	iph := ip6Len
	ethType := uint16(0x86dd)
	if v4 {
		iph, ethType = ip4Len, 0x0800
	}
	ulen := udpLen + len(f.payload)
	b := make([]byte, ethLen+iph+ulen)
	copy(b[0:6], frameDstMAC[:])
	copy(b[6:12], frameSrcMAC[:])
	binary.BigEndian.PutUint16(b[12:], ethType)
	ip := b[ethLen:]
	if v4 {
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(ip4Len+ulen))
		binary.BigEndian.PutUint16(ip[4:], 0x1234) // ID
		binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
		ip[8] = f.ttl
		ip[9] = 17
		s, d := f.src.Addr().As4(), f.dst.Addr().As4()
		copy(ip[12:16], s[:])
		copy(ip[16:20], d[:])
		binary.BigEndian.PutUint16(ip[10:], ^checksum.Fold(checksum.Sum16(ip[:ip4Len])))
	} else {
		binary.BigEndian.PutUint32(ip[0:], 0x60012345) // flow label 0x12345
		binary.BigEndian.PutUint16(ip[4:], uint16(ulen))
		ip[6] = 17
		ip[7] = f.ttl
		s, d := f.src.Addr().As16(), f.dst.Addr().As16()
		copy(ip[8:24], s[:])
		copy(ip[24:40], d[:])
	}
	u := ip[iph:]
	binary.BigEndian.PutUint16(u[0:], f.src.Port())
	binary.BigEndian.PutUint16(u[2:], f.dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(ulen))
	copy(u[udpLen:], f.payload)
	switch {
	case f.noCsum && v4:
	case f.partial:
		binary.BigEndian.PutUint16(u[6:], checksum.Fold(checksum.PseudoHeader(f.src.Addr(), f.dst.Addr(), ulen)))
	default:
		binary.BigEndian.PutUint16(u[6:], checksum.UDP(f.src.Addr(), f.dst.Addr(), u[:ulen]))
	}
	return b
}

// channelData returns the 4-byte ChannelData header, data and pad bytes.
func channelData(ch uint16, data []byte, pad []byte) []byte {
	b := make([]byte, chanLen+len(data)+len(pad))
	binary.BigEndian.PutUint16(b[0:], ch)
	binary.BigEndian.PutUint16(b[2:], uint16(len(data)))
	copy(b[chanLen:], data)
	copy(b[chanLen+len(data):], pad)
	return b
}
