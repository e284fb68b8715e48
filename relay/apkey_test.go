package relay

import (
	"net/netip"
	"testing"
)

// The table's byte keys match exactly the addresses that matched before,
// plus an IPv4 address in its IPv4-mapped form (the same endpoint).
func TestAPKeyOf(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		a, b netip.AddrPort
		same bool
	}{
		{ap("192.0.2.1:3478"), ap("192.0.2.1:3478"), true},
		{ap("192.0.2.1:3478"), ap("[::ffff:192.0.2.1]:3478"), true},
		{ap("192.0.2.1:3478"), ap("192.0.2.1:3479"), false},
		{ap("192.0.2.1:3478"), ap("192.0.2.2:3478"), false},
		{ap("[2001:db8::1]:5000"), ap("[2001:db8::1]:5000"), true},
		{ap("[2001:db8::1]:5000"), ap("[2001:db8::2]:5000"), false},
		// Shared, and harmless: no binding has the unspecified address
		// (peer policy refuses it), and parseSockaddr yields the zero
		// AddrPort only for a family it does not know.
		{ap("[::]:0"), netip.AddrPort{}, true},
	} {
		if got := apKeyOf(tc.a) == apKeyOf(tc.b); got != tc.same {
			t.Errorf("apKeyOf(%v) == apKeyOf(%v): %v, want %v", tc.a, tc.b, got, tc.same)
		}
	}
	k := c2pKey{listener: ap("127.0.0.1:3478"), client: ap("127.0.0.2:40000"), channel: 0x4000}
	other := k
	other.channel = 0x4001
	if k.index() == other.index() {
		t.Error("two channels of one client share an index")
	}
}
