package relay

import (
	"net/netip"
	"testing"
	"unsafe"
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

// The uint64 keys tell apart every field they pack and refuse what does not
// fit; an IPv4 address and its mapped form are one key, as with apKey.
// (The listener is not in the key: each listener id has its own table.)
func TestKeys64(t *testing.T) {
	ap := netip.MustParseAddrPort
	base, ok := c2pKey64(3, ap("192.0.2.1:40000"), 0x4ABC)
	if !ok {
		t.Fatal("an IPv4 client on channel 0x4ABC has no uint64 key")
	}
	for _, tc := range []struct {
		name   string
		lid    int
		client netip.AddrPort
		ch     uint16
		ok     bool
		same   bool
	}{
		{"mapped form", 3, ap("[::ffff:192.0.2.1]:40000"), 0x4ABC, true, true},
		{"other port", 3, ap("192.0.2.1:40001"), 0x4ABC, true, false},
		{"other address", 3, ap("192.0.2.2:40000"), 0x4ABC, true, false},
		{"other channel", 3, ap("192.0.2.1:40000"), 0x4ABD, true, false},
		{"RFC 5766 channel", 3, ap("192.0.2.1:40000"), 0x7ABC, true, false},
		{"no listener id", -1, ap("192.0.2.1:40000"), 0x4ABC, false, false},
		{"IPv6 client", 3, ap("[2001:db8::1]:40000"), 0x4ABC, false, false},
	} {
		k, ok := c2pKey64(tc.lid, tc.client, tc.ch)
		if ok != tc.ok || (ok && (k == base) != tc.same) {
			t.Errorf("%s: key %#x ok %v, want ok %v and same as base %v", tc.name, k, ok, tc.ok, tc.same)
		}
	}
	p1, _ := peerKey64(ap("198.51.100.7:5000"))
	for _, tc := range []struct {
		peer     netip.AddrPort
		ok, same bool
	}{
		{ap("[::ffff:198.51.100.7]:5000"), true, true},
		{ap("198.51.100.7:5001"), true, false},
		{ap("198.51.100.8:5000"), true, false},
		{ap("[2001:db8::7]:5000"), false, false},
	} {
		k, ok := peerKey64(tc.peer)
		if ok != tc.ok || (ok && (k == p1) != tc.same) {
			t.Errorf("peerKey64(%v) = %#x, %v; want ok %v, same %v", tc.peer, k, ok, tc.ok, tc.same)
		}
	}
}

// Listener ids are stable per address and run out after maxListenerIDs:
// later listeners' bindings stay in the byte-keyed table only.
func TestListenerIDs(t *testing.T) {
	fp := &fastPath{lids: map[apKey]int{}}
	for i := 0; i < maxListenerIDs; i++ {
		a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 3478)
		if id := fp.listenerID(a); id != i {
			t.Fatalf("listener %d got id %d", i, id)
		}
	}
	if id := fp.listenerID(netip.MustParseAddrPort("[::ffff:192.0.2.5]:3478")); id != 5 {
		t.Fatalf("a known listener in mapped form got id %d, want 5", id)
	}
	if id := fp.listenerID(netip.MustParseAddrPort("198.51.100.1:3478")); id != -1 {
		t.Fatalf("listener %d got id %d, want -1 (none left)", maxListenerIDs, id)
	}
}

// The per-datagram look-ups at 500 bindings: "uint64" is the IPv4 path,
// "bytes" the byte-keyed one every other address takes (docs/benchmarks.md,
// tenth pass).
func BenchmarkLookups(b *testing.B) {
	fp := &fastPath{c2p: map[c2pIndex]*binding{}, lids: map[apKey]int{}}
	listener := netip.MustParseAddrPort("192.0.2.1:3478")
	lid := fp.listenerID(listener)
	keys := make([]c2pKey, 500)
	for i := range keys {
		k := c2pKey{listener: listener, client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i % 7)}), uint16(20000+i)), channel: 0x4000 + uint16(i%4096)}
		bd := &binding{key: k}
		fp.c2p[k.index()] = bd
		k64, _ := c2pKey64(lid, k.client, k.channel)
		fp.c2p64[lid][k64] = bd
		keys[i] = k
	}
	peer := netip.MustParseAddrPort("203.0.113.9:5000")
	rf := &relayFast{byPeer: map[apKey]*binding{}, byPeer4: map[uint64]*binding{}}
	rf.byPeer[apKeyOf(peer)] = &binding{}
	k4, _ := peerKey64(peer)
	rf.byPeer4[k4] = rf.byPeer[apKeyOf(peer)]
	rf.syncPeerSlots()
	for _, bc := range []struct {
		name string
		lid  int
	}{{"c2p/uint64", lid}, {"c2p/bytes", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if fp.lookup(keys[i%len(keys)], bc.lid) == nil {
					b.Fatal("miss")
				}
			}
		})
	}
	b.Run("peer/uint64", func(b *testing.B) {
		for b.Loop() {
			if rf.peerLocked(peer) == nil {
				b.Fatal("miss")
			}
		}
	})
	b.Run("peer/bytes", func(b *testing.B) {
		for b.Loop() {
			if rf.byPeer[apKeyOf(peer)] == nil {
				b.Fatal("miss")
			}
		}
	})
}

// Peer look-ups agree with the map whether the slots or the map serve them:
// from no peer through one past the slots' capacity, and back.
func TestPeerSlots(t *testing.T) {
	rf := &relayFast{byPeer: map[apKey]*binding{}, byPeer4: map[uint64]*binding{}}
	peer := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), uint16(5000+i))
	}
	n := len(rf.peerSlots) + 2
	check := func(have int) {
		t.Helper()
		for i := 0; i < n; i++ {
			got := rf.peerLocked(peer(i))
			if want := i < have; (got != nil) != want || (got != nil && got.peer != peer(i)) {
				t.Fatalf("%d peers bound: peer %d found %v, want %v", have, i, got != nil, want)
			}
		}
		if ipv6 := netip.MustParseAddrPort("[2001:db8::1]:5000"); rf.peerLocked(ipv6) != nil {
			t.Fatalf("%d peers bound: an IPv6 peer found a binding", have)
		}
	}
	rf.syncPeerSlots()
	check(0)
	for i := 0; i < n; i++ {
		k, _ := peerKey64(peer(i))
		rf.byPeer4[k] = &binding{peer: peer(i)}
		rf.syncPeerSlots()
		check(i + 1)
	}
	for i := n - 1; i >= 0; i-- {
		k, _ := peerKey64(peer(i))
		delete(rf.byPeer4, k)
		rf.syncPeerSlots()
		check(i)
	}
}

// The hot fields of a binding and a relay sit where the comments on the
// structs say, and each struct fills an allocator size class that is a
// multiple of 64 bytes (binding 320, relayFast 576), so every object starts
// on a cache line and those fields stay within their lines.
func TestBindingLayout(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the layout is laid out for 64-bit platforms")
	}
	var b binding
	var rf relayFast
	for _, tc := range []struct {
		what     string
		got      uintptr
		min, max uintptr
	}{
		{"binding size (size class 320)", unsafe.Sizeof(b), 289, 320},
		{"end of binding.bytesC2P (first line)", unsafe.Offsetof(b.bytesC2P) + 8, 0, 64},
		{"end of binding.channel (second line)", unsafe.Offsetof(b.channel) + 2, 0, 128},
		{"relayFast size (size class 576)", unsafe.Sizeof(rf), 513, 576},
		{"end of relayFast.peerSlots (first line)", unsafe.Offsetof(rf.peerSlots) + unsafe.Sizeof(rf.peerSlots), 0, 64},
		{"end of relayFast.clientSA (third line)", unsafe.Offsetof(rf.clientSA) + unsafe.Sizeof(rf.clientSA), 0, 192},
	} {
		if tc.got < tc.min || tc.got > tc.max {
			t.Errorf("%s: %d, want %d-%d", tc.what, tc.got, tc.min, tc.max)
		}
	}
}
