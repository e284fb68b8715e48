//go:build linux

package netlab

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/rtcsuite/rtcsuite/internal/checksum"
)

// frame4 builds an Ethernet/IPv4/UDP frame with the given UDP checksum
// field (the IP header checksum is not looked at here).
func frame4(src, dst netip.AddrPort, payload []byte, csum func(udp []byte) uint16) []byte {
	b := make([]byte, ethLen+ip4Len+udpLen+len(payload))
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[ethLen:]
	ip[0], ip[9] = 0x45, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(ip4Len+udpLen+len(payload)))
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	udp := ip[ip4Len:]
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(udpLen+len(payload)))
	copy(udp[udpLen:], payload)
	binary.BigEndian.PutUint16(udp[6:], csum(udp))
	return b
}

func TestVerifyUDP(t *testing.T) {
	src, dst := netip.MustParseAddrPort("203.0.113.1:49152"), netip.MustParseAddrPort("203.0.113.2:3480")
	other := netip.MustParseAddrPort("198.51.100.2:40000")
	good := func(udp []byte) uint16 { return checksum.UDP(src.Addr(), dst.Addr(), udp) }
	partial := func(udp []byte) uint16 {
		return checksum.Fold(checksum.PseudoHeader(src.Addr(), dst.Addr(), len(udp)))
	}
	bad := func(udp []byte) uint16 { return good(udp) ^ 0x0100 }
	frames := []Frame{
		{Bytes: frame4(src, dst, []byte("hello relay"), good)},
		{Bytes: frame4(src, dst, []byte("hello relay"), partial), NotReady: true},
		{Bytes: frame4(src, dst, []byte("corrupted"), bad)},
		// A full checksum on a frame marked not ready is as wrong.
		{Bytes: frame4(src, dst, []byte("hello relay"), good), NotReady: true},
		{Bytes: frame4(other, dst, []byte("not matched"), bad)},
		{Bytes: []byte("runt")},
		// A segmentation offload frame of 1200-byte datagrams, the last
		// 300: four datagrams, one pseudo-header sum over the whole frame.
		{Bytes: frame4(src, dst, make([]byte, 3*1200+300), partial), NotReady: true, GSOSize: 1200},
	}
	r := VerifyUDP(frames, func(s, d netip.AddrPort) bool { return s == src && d == dst })
	if r.Checked != 8 || r.NotReady != 3 || r.Merged != 1 || len(r.Bad) != 2 {
		t.Fatalf("VerifyUDP = %+v, want 8 checked, 3 not ready, 1 merged, 2 bad", r)
	}
	if !strings.Contains(r.Bad[0], "17 bytes") {
		t.Errorf("bad line %q does not name the datagram's length", r.Bad[0])
	}
}

func TestParseUDPRejects(t *testing.T) {
	src, dst := netip.MustParseAddrPort("203.0.113.1:1"), netip.MustParseAddrPort("203.0.113.2:2")
	f := frame4(src, dst, []byte("x"), func([]byte) uint16 { return 0 })
	if _, _, _, ok := ParseUDP(f); !ok {
		t.Fatal("a well-formed frame did not parse")
	}
	short := append([]byte(nil), f...)
	binary.BigEndian.PutUint16(short[ethLen+ip4Len+4:], 100) // UDP length beyond the IP length
	opts := append([]byte(nil), f...)
	opts[ethLen] = 0x46 // IPv4 options
	for name, b := range map[string][]byte{"udp length": short, "ip options": opts, "truncated": f[:30]} {
		if _, _, _, ok := ParseUDP(b); ok {
			t.Errorf("%s: parsed", name)
		}
	}
}
