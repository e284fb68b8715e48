package relay

import (
	"net/netip"
	"testing"
)

func TestPeerPolicyDefaultDenies(t *testing.T) {
	p := newPeerPolicy(PeerPolicy{}, nil, nil)
	tests := []struct {
		addr string
		want string
	}{
		{"127.0.0.1", denyLoopback},
		{"127.255.255.254", denyLoopback},
		{"::1", denyLoopback},
		{"::ffff:127.0.0.1", denyLoopback},
		{"::ffff:7f00:1", denyLoopback},
		{"::127.0.0.1", denyLoopback},        // IPv4-compatible
		{"64:ff9b::7f00:1", denyLoopback},    // NAT64 of 127.0.0.1
		{"64:ff9b::a9fe:a9fe", denyMetadata}, // NAT64 of 169.254.169.254
		{"64:ff9b::a00:1", denyPrivate},      // NAT64 of 10.0.0.1
		{"64:ff9b:1::1", denyReserved},       // local-use NAT64
		{"2002:7f00:1::1", denyLoopback},     // 6to4 of 127.0.0.1
		{"2002:c0a8:101::1", denyPrivate},    // 6to4 of 192.168.1.1
		{"2002:a9fe:a9fe::", denyMetadata},   // 6to4 of 169.254.169.254
		{"0.0.0.0", denyUnspecified},
		{"0.1.2.3", denyUnspecified},
		{"::", denyUnspecified},
		{"::ffff:0.0.0.0", denyUnspecified},
		{"10.1.2.3", denyPrivate},
		{"172.16.0.1", denyPrivate},
		{"172.31.255.255", denyPrivate},
		{"192.168.0.1", denyPrivate},
		{"::ffff:192.168.0.1", denyPrivate},
		{"fc00::1", denyPrivate},
		{"fd12:3456::1", denyPrivate},
		{"169.254.1.1", denyLinkLocal},
		{"169.254.169.254", denyMetadata},
		{"::ffff:169.254.169.254", denyMetadata},
		{"fd00:ec2::254", denyMetadata},
		{"fe80::1", denyLinkLocal},
		{"fe80::1%eth0", denyLinkLocal},
		{"100.64.0.1", denyCGNAT},
		{"100.127.255.255", denyCGNAT},
		{"224.0.0.1", denyMulticast},
		{"239.255.255.250", denyMulticast},
		{"ff02::1", denyMulticast},
		{"255.255.255.255", denyReserved},
		{"240.0.0.1", denyReserved},
		{"192.0.2.1", denyReserved},
		{"198.51.100.7", denyReserved},
		{"203.0.113.9", denyReserved},
		{"198.18.0.1", denyReserved},
		{"198.19.255.255", denyReserved},
		{"2001:db8::1", denyReserved},
		{"2001:2::1", denyReserved},   // benchmarking
		{"2001:0:1::1", denyReserved}, // Teredo
		{"100::1", denyReserved},
		{"192.0.0.170", denyReserved},
		// Public addresses pass.
		{"8.8.8.8", ""},
		{"1.1.1.1", ""},
		{"172.32.0.1", ""},
		{"100.128.0.1", ""},
		{"2606:4700::1111", ""},
		{"::ffff:8.8.8.8", ""},
		{"64:ff9b::808:808", ""}, // NAT64 of 8.8.8.8
		{"2002:808:808::1", ""},  // 6to4 of 8.8.8.8
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.addr)
		if got := p.checkIP(ip); got != tt.want {
			t.Errorf("checkIP(%s) = %q, want %q", tt.addr, got, tt.want)
		}
		if got := p.checkAddrPort(netip.AddrPortFrom(ip, 5000), protoUDP); got != tt.want {
			t.Errorf("checkAddrPort(%s:5000) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

func TestPeerPolicyOperatorRules(t *testing.T) {
	pfx := netip.MustParsePrefix
	p := newPeerPolicy(PeerPolicy{
		Allowed: []netip.Prefix{pfx("10.5.0.0/16"), pfx("8.8.4.0/24")},
		Denied:  []netip.Prefix{pfx("8.8.0.0/16"), pfx("2606:4700::/32")},
	}, nil, nil)
	tests := []struct {
		addr, want string
	}{
		{"10.5.1.1", ""},          // allowed exception inside a private range
		{"::ffff:10.5.1.1", ""},   // mapped form is the same address
		{"10.6.1.1", denyPrivate}, // rest of the range stays denied
		{"8.8.8.8", denyOperator}, // operator deny
		{"8.8.4.4", ""},           // allow beats deny, as in coturn
		{"2606:4700::1111", denyOperator},
		{"64:ff9b::808:808", denyOperator}, // embedded IPv4 judged too
	}
	for _, tt := range tests {
		if got := p.checkIP(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("checkIP(%s) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

func TestPeerPolicySwitches(t *testing.T) {
	p := newPeerPolicy(PeerPolicy{AllowLoopback: true, AllowPrivate: true}, nil, nil)
	for _, a := range []string{"127.0.0.1", "::1", "::ffff:127.0.0.1", "10.0.0.1", "fd00::1"} {
		if got := p.checkIP(netip.MustParseAddr(a)); got != "" {
			t.Errorf("%s denied (%s) with loopback+private allowed", a, got)
		}
	}
	for _, a := range []string{"169.254.169.254", "0.0.0.0", "100.64.0.1", "224.0.0.1", "fe80::1"} {
		if got := p.checkIP(netip.MustParseAddr(a)); got == "" {
			t.Errorf("%s allowed; the switches must not open it", a)
		}
	}
}

func TestPeerPolicySelfAndRelays(t *testing.T) {
	self := newSelfSet(nil, netip.MustParseAddr("8.8.8.8"))
	p := newPeerPolicy(PeerPolicy{AllowLoopback: true},
		[]selfPort{{protoUDP, 3478}, {protoTCP, 3478}, {protoTCP, 9090}, {protoTCP, 5349}}, self)
	ap := netip.MustParseAddrPort
	tests := []struct {
		addr, want string
	}{
		{"8.8.8.8:3478", denySelf},
		{"[::ffff:8.8.8.8]:3478", denySelf},
		{"127.0.0.1:9090", ""}, // the admin port is TCP: checked below
		{"[64:ff9b::808:808]:3478", denySelf},
		{"8.8.8.8:3479", denySelf}, // every port of an own address the operator did not open
		{"127.0.0.1:3479", ""},     // loopback was opened
		{"8.8.4.4:3478", ""},
	}
	for _, tt := range tests {
		if got := p.checkAddrPort(ap(tt.addr), protoUDP); got != tt.want {
			t.Errorf("checkAddrPort(%s) = %q, want %q", tt.addr, got, tt.want)
		}
	}
	// Own ports count for their transport only: a UDP peer on the number of
	// a TCP listener (TLS on 5349 here) or of the admin port is another
	// socket, which the loopback switch opened. In the test suite such a
	// peer on an ephemeral port that matched the TLS listener's lost its
	// datagrams as "self" (TestStreamPeerDataThroughFastPath, rarely).
	for _, tt := range []struct {
		addr  string
		proto uint8
		want  string
	}{
		{"127.0.0.1:5349", protoUDP, ""},
		{"127.0.0.1:5349", protoTCP, denySelf},
		{"127.0.0.1:9090", protoTCP, denySelf},
		{"127.0.0.1:3478", protoUDP, denySelf},
		{"127.0.0.1:3478", protoTCP, denySelf},
		{"8.8.8.8:5349", protoUDP, denySelf}, // an own address the operator did not open, whatever the port
	} {
		if got := p.checkAddrPort(ap(tt.addr), tt.proto); got != tt.want {
			t.Errorf("checkAddrPort(%s, proto %d) = %q, want %q", tt.addr, tt.proto, got, tt.want)
		}
	}

	// Another relay address of this server is reachable even in a denied range.
	strict := newPeerPolicy(PeerPolicy{}, nil, nil)
	relay := ap("10.0.0.5:50000")
	if strict.checkAddrPort(relay, protoUDP) == "" {
		t.Fatal("private address allowed before it is a relay")
	}
	strict.addRelay(protoUDP, relay)
	if got := strict.checkAddrPort(ap("[::ffff:10.0.0.5]:50000"), protoUDP); got != "" {
		t.Fatalf("own relay address denied: %s", got)
	}
	if strict.checkAddrPort(ap("10.0.0.5:50001"), protoUDP) == "" {
		t.Fatal("neighbouring port of a relay allowed")
	}
	strict.removeRelay(protoUDP, relay)
	if strict.checkAddrPort(relay, protoUDP) == "" {
		t.Fatal("relay address still allowed after removal")
	}
}

func FuzzPeerPolicy(f *testing.F) {
	f.Add([]byte{127, 0, 0, 1}, uint16(80))
	f.Add(netip.MustParseAddr("::ffff:10.0.0.1").AsSlice(), uint16(3478))
	f.Fuzz(func(t *testing.T, raw []byte, port uint16) {
		ip, ok := netip.AddrFromSlice(raw)
		if !ok {
			return
		}
		p := newPeerPolicy(PeerPolicy{}, []selfPort{{protoUDP, 3478}}, newSelfSet(nil, ip))
		a := p.checkAddrPort(netip.AddrPortFrom(ip, port), protoUDP)
		b := p.checkAddrPort(netip.AddrPortFrom(ip.Unmap(), port), protoUDP)
		if a != b {
			t.Fatalf("mapped and unmapped forms disagree for %v: %q vs %q", ip, a, b)
		}
		if ip.Unmap().IsLoopback() && a == "" {
			t.Fatalf("loopback %v allowed by default", ip)
		}
	})
}

// TestSelfPortsByTransport: the server lists each own port with the
// transport it listens on, so the policy above sees TLS and admin ports as
// TCP and the UDP listener as UDP.
func TestSelfPortsByTransport(t *testing.T) {
	srv := newTestServer(t, func(c *Config) {
		c.Listeners = append(c.Listeners, Listener{Network: "tls", Addr: "127.0.0.1:0"})
		c.Certificate = selfSigned(t)
		c.AdminPorts = []int{9999}
	})
	got := map[selfPort]bool{}
	for _, sp := range srv.selfPorts() {
		got[sp] = true
	}
	port := func(network string) uint16 { return toAddrPort(srv.Addr(network)).Port() }
	for _, tt := range []struct {
		sp   selfPort
		want bool
	}{
		{selfPort{protoUDP, port("udp")}, true},
		{selfPort{protoTCP, port("tcp")}, true},
		{selfPort{protoTCP, port("tls")}, true},
		{selfPort{protoUDP, port("tls")}, port("tls") == port("udp")},
		{selfPort{protoTCP, 9999}, true},
		{selfPort{protoUDP, 9999}, false},
	} {
		if got[tt.sp] != tt.want {
			t.Errorf("self port %+v listed: %v, want %v (all: %v)", tt.sp, got[tt.sp], tt.want, got)
		}
	}
}
