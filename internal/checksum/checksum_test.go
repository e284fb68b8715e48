package checksum

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func TestSum16AndFold(t *testing.T) {
	// RFC 1071 section 3's example: the words 0001 f203 f4f5 f6f7 sum to
	// 0x2ddf0, which folds to 0xddf2.
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if s := Sum16(b); s != 0x2ddf0 {
		t.Errorf("Sum16 = %#x, want 0x2ddf0", s)
	}
	if f := Fold(0x2ddf0); f != 0xddf2 {
		t.Errorf("Fold = %#x, want 0xddf2", f)
	}
	if s := Sum16([]byte{0x12}); s != 0x1200 {
		t.Errorf("odd tail: Sum16 = %#x, want 0x1200", s)
	}
}

// A datagram carrying its own checksum sums, with the pseudo-header, to
// 0xffff: the receiver's check.
func TestUDPVerifies(t *testing.T) {
	for _, c := range []struct{ src, dst string }{
		{"198.51.100.2", "203.0.113.2"},
		{"2001:db8::1", "2001:db8::2"},
	} {
		src, dst := netip.MustParseAddr(c.src), netip.MustParseAddr(c.dst)
		for n := range 40 {
			d := make([]byte, 8+n)
			binary.BigEndian.PutUint16(d[0:], 3478)
			binary.BigEndian.PutUint16(d[2:], 49152)
			binary.BigEndian.PutUint16(d[4:], uint16(len(d)))
			for i := 8; i < len(d); i++ {
				d[i] = byte(i * 37)
			}
			binary.BigEndian.PutUint16(d[6:], UDP(src, dst, d))
			if got := Fold(PseudoHeader(src, dst, len(d)) + Sum16(d)); got != 0xffff {
				t.Errorf("%s→%s, %d-byte payload: residual %#04x, want 0xffff", src, dst, n, got)
			}
		}
	}
}
