//go:build linux

package offload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/checksum"
)

// Bindings the table tests install. The program redirects both remote and
// local destinations (BPF_PROG_TEST_RUN only records the verdict); Local
// changes how CHECKSUM_PARTIAL packets are treated.
var (
	remote = Route{Ifindex: 1, MTU: 1500}
	local  = Route{Local: true}

	b4 = Binding{Client: ap("192.0.2.1:40000"), Listener: ap("192.0.2.2:3478"),
		Relay: ap("192.0.2.2:49152"), Peer: ap("198.51.100.1:5000"), Channel: 0x4000,
		ToPeer: remote, ToClient: remote}
	b6 = Binding{Client: ap("[2001:db8::1]:40000"), Listener: ap("[2001:db8::2]:5349"),
		Relay: ap("[2001:db8::2]:49153"), Peer: ap("[2001:db8:1::1]:5000"), Channel: 0x7fff,
		ToPeer: remote, ToClient: remote}
	b4local = Binding{Client: ap("192.0.2.1:40001"), Listener: ap("192.0.2.2:3478"),
		Relay: ap("192.0.2.2:49154"), Peer: ap("192.0.2.50:6000"), Channel: 0x4001,
		ToPeer: local, ToClient: local}
	b6local = Binding{Client: ap("[2001:db8::1]:40001"), Listener: ap("[2001:db8::2]:3478"),
		Relay: ap("[2001:db8::2]:49154"), Peer: ap("[2001:db8::50]:6000"), Channel: 0x4001,
		ToPeer: local, ToClient: local}
	b4r2r = Binding{Client: ap("192.0.2.1:40002"), Listener: ap("192.0.2.2:3478"),
		Relay: ap("192.0.2.2:49155"), Peer: ap("192.0.2.99:49160"), Channel: 0x4002,
		ToPeer: remote, ToClient: remote}
	b4mtu = Binding{Client: ap("192.0.2.1:40003"), Listener: ap("192.0.2.2:3478"),
		Relay: ap("192.0.2.2:49156"), Peer: ap("198.51.100.1:5001"), Channel: 0x4003,
		ToPeer: Route{Ifindex: 1, MTU: 100}, ToClient: Route{Ifindex: 1, MTU: 100}}
	b4chanExp = Binding{Client: ap("192.0.2.1:40004"), Listener: ap("192.0.2.2:3478"),
		Relay: ap("192.0.2.2:49157"), Peer: ap("198.51.100.1:5002"), Channel: 0x4004,
		ToPeer: remote, ToClient: remote, ChannelExpiry: time.Now().Add(-time.Second)}
	b4permExp = Binding{Client: ap("192.0.2.1:40005"), Listener: ap("192.0.2.2:3478"),
		Relay: ap("192.0.2.2:49158"), Peer: ap("198.51.100.1:5003"), Channel: 0x4005,
		ToPeer: remote, ToClient: remote, PermissionExpiry: time.Now().Add(-time.Second)}
)

func c2pIn(b Binding, data, pad []byte) frame {
	return frame{src: b.Client, dst: b.Listener, payload: channelData(b.Channel, data, pad), ttl: 50}
}
func c2pOut(b Binding, data []byte) frame {
	return frame{src: b.Relay, dst: b.Peer, payload: data, ttl: outTTL}
}
func p2cIn(b Binding, data []byte) frame {
	return frame{src: b.Peer, dst: b.Relay, payload: data, ttl: 50}
}
func p2cOut(b Binding, data []byte) frame {
	return frame{src: b.Listener, dst: b.Client, payload: channelData(b.Channel, data, nil), ttl: outTTL}
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	return b
}

// Frame mutations for the pass cases; each keeps the IP header checksum valid.
func ip4Fix(b []byte) []byte {
	ip := b[ethLen:]
	ihl := int(ip[0]&0xf) * 4
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], ^checksum.Fold(checksum.Sum16(ip[:ihl])))
	return b
}

func withFrag(b []byte, fragOff uint16) []byte {
	binary.BigEndian.PutUint16(b[ethLen+6:], fragOff)
	return ip4Fix(b)
}

func withIPv4Options(b []byte) []byte {
	out := append([]byte{}, b[:ethLen+ip4Len]...)
	out = append(out, 1, 1, 1, 0) // NOP NOP NOP EOL
	out = append(out, b[ethLen+ip4Len:]...)
	out[ethLen] = 0x46
	binary.BigEndian.PutUint16(out[ethLen+2:], uint16(len(out)-ethLen))
	return ip4Fix(out)
}

// withIPv6Ext puts an 8-byte extension header of type nh before UDP.
func withIPv6Ext(b []byte, nh byte) []byte {
	ext := []byte{17, 0, 1, 4, 0, 0, 0, 0} // hop-by-hop/dest-opts: PadN
	if nh == 44 {
		ext = []byte{17, 0, 0, 1, 0, 0, 0, 42} // fragment, offset 0, M=1
	}
	out := append([]byte{}, b[:ethLen+ip6Len]...)
	out = append(out, ext...)
	out = append(out, b[ethLen+ip6Len:]...)
	out[ethLen+6] = nh
	binary.BigEndian.PutUint16(out[ethLen+4:], binary.BigEndian.Uint16(out[ethLen+4:])+8)
	return out
}

func withChannelLen(b []byte, off int, n uint16) []byte {
	binary.BigEndian.PutUint16(b[off+udpLen+2:], n) // checksum now stale; length is checked first
	return b
}

func zeroUDPChecksum(b []byte, iph int) []byte {
	b[ethLen+iph+6], b[ethLen+iph+7] = 0, 0
	return b
}

type progCase struct {
	name      string
	in        []byte
	ctx       any
	verdict   uint32
	out       []byte // nil: the frame must come out unchanged
	reason    Reason // counted once; noReason: nothing counted
	id        BindingID
	stats     Stats // expected change of id's counters
	allowZero bool  // output UDP checksum may be zero (IPv4 "none")
	setup     func(t *testing.T, e *Engine) func()
}

const noReason = Reason(1 << 31)

func TestProgram(t *testing.T) {
	e := loadTestEngine(t, testConfig)
	for _, b := range []Binding{b4, b6, b4local, b6local, b4r2r, b4mtu, b4chanExp, b4permExp} {
		if err := e.Upsert(b); err != nil {
			t.Fatalf("Upsert %v: %v", b.ID(), err)
		}
	}

	var cases []progCase
	// Forwarding: both directions, both families, padding 0-3 (with
	// non-zero pad bytes, odd and even data lengths).
	for _, b := range []Binding{b4, b6} {
		fam := "v4"
		if b.Client.Addr().Is6() {
			fam = "v6"
		}
		for _, c := range []struct{ dlen, pad int }{{8, 0}, {7, 1}, {6, 2}, {5, 3}, {5, 1}, {0, 0}, {1, 3}, {1200, 0}, {1199, 1}} {
			data, pad := payload(c.dlen), bytes.Repeat([]byte{0xa5}, c.pad)
			cases = append(cases, progCase{
				name: fmt.Sprintf("c2p %s len %d pad %d", fam, c.dlen, c.pad),
				in:   c2pIn(b, data, pad).bytes(), verdict: verdictRedirect, out: c2pOut(b, data).bytes(),
				reason: ForwardedToPeer, id: b.ID(), stats: Stats{ToPeerPackets: 1, ToPeerBytes: uint64(c.dlen)},
			})
		}
		for _, n := range []int{0, 1, 2, 3, 4, 1200, 1201} {
			data := payload(n)
			cases = append(cases, progCase{
				name: fmt.Sprintf("p2c %s len %d", fam, n),
				in:   p2cIn(b, data).bytes(), verdict: verdictRedirect, out: p2cOut(b, data).bytes(),
				reason: ForwardedToClient, id: b.ID(), stats: Stats{ToClientPackets: 1, ToClientBytes: uint64(n)},
			})
		}
	}
	data := payload(100)
	for _, b := range []Binding{b4local, b6local} {
		cases = append(cases,
			progCase{name: "c2p local " + b.Peer.String(), in: c2pIn(b, data, nil).bytes(), verdict: verdictRedirect,
				out: c2pOut(b, data).bytes(), reason: ForwardedToPeer, id: b.ID(), stats: Stats{ToPeerPackets: 1, ToPeerBytes: 100}},
			progCase{name: "p2c local " + b.Peer.String(), in: p2cIn(b, data).bytes(), verdict: verdictRedirect,
				out: p2cOut(b, data).bytes(), reason: ForwardedToClient, id: b.ID(), stats: Stats{ToClientPackets: 1, ToClientBytes: 100}},
		)
	}
	partial := func(f frame) frame { f.partial = true; return f }
	noCsum := func(f frame) frame { f.noCsum = true; return f }
	trailer := func(b []byte, n int) []byte { return append(b, make([]byte, n)...) }
	v6zero := zeroUDPChecksum(p2cIn(b6, data).bytes(), ip6Len)
	badUDPLen := p2cIn(b4, data).bytes()
	binary.BigEndian.PutUint16(badUDPLen[ethLen+ip4Len+4:], 100)
	stun := frame{src: b4.Client, dst: b4.Listener, payload: append([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42}, make([]byte, 12)...), ttl: 50}

	cases = append(cases, []progCase{
		// Checksums.
		{name: "c2p v4 UDP checksum 0 stays 0", in: noCsum(c2pIn(b4, data, []byte{1, 2})).bytes(), verdict: verdictRedirect,
			out: noCsum(c2pOut(b4, data)).bytes(), allowZero: true, reason: ForwardedToPeer, id: b4.ID(), stats: Stats{ToPeerPackets: 1, ToPeerBytes: 100}},
		{name: "p2c v4 UDP checksum 0 stays 0", in: noCsum(p2cIn(b4, data)).bytes(), verdict: verdictRedirect,
			out: noCsum(p2cOut(b4, data)).bytes(), allowZero: true, reason: ForwardedToClient, id: b4.ID(), stats: Stats{ToClientPackets: 1, ToClientBytes: 100}},
		{name: "p2c v6 UDP checksum 0 is malformed", in: v6zero, verdict: verdictNext, reason: Malformed},
		{name: "c2p v4 CHECKSUM_PARTIAL to a remote peer passes", in: partial(c2pIn(b4, data, nil)).bytes(), verdict: verdictNext, reason: ChecksumPartial},
		{name: "p2c v6 CHECKSUM_PARTIAL to a remote client passes", in: partial(p2cIn(b6, data)).bytes(), verdict: verdictNext, reason: ChecksumPartial},
		{name: "c2p v4 CHECKSUM_PARTIAL to a local peer passes", in: partial(c2pIn(b4local, data, nil)).bytes(), verdict: verdictNext, reason: ChecksumPartial},
		{name: "c2p v6 CHECKSUM_PARTIAL to a local peer passes", in: partial(c2pIn(b6local, data, nil)).bytes(), verdict: verdictNext, reason: ChecksumPartial},
		{name: "p2c v4 CHECKSUM_PARTIAL delivered locally", in: partial(p2cIn(b4local, data)).bytes(), verdict: verdictRedirect,
			out: partial(p2cOut(b4local, data)).bytes(), reason: ForwardedToClient, id: b4local.ID(), stats: Stats{ToClientPackets: 1, ToClientBytes: 100}},
		{name: "p2c v6 CHECKSUM_PARTIAL delivered locally", in: partial(p2cIn(b6local, data)).bytes(), verdict: verdictRedirect,
			out: partial(p2cOut(b6local, data)).bytes(), reason: ForwardedToClient, id: b6local.ID(), stats: Stats{ToClientPackets: 1, ToClientBytes: 100}},
		// Link-layer padding after the IP packet is trimmed, not forwarded.
		{name: "c2p v4 with Ethernet trailer", in: trailer(c2pIn(b4, payload(2), nil).bytes(), 12), verdict: verdictRedirect,
			out: c2pOut(b4, payload(2)).bytes(), reason: ForwardedToPeer, id: b4.ID(), stats: Stats{ToPeerPackets: 1, ToPeerBytes: 2}},
		{name: "p2c v4 with Ethernet trailer", in: trailer(p2cIn(b4, payload(2)).bytes(), 16), verdict: verdictRedirect,
			out: p2cOut(b4, payload(2)).bytes(), reason: ForwardedToClient, id: b4.ID(), stats: Stats{ToClientPackets: 1, ToClientBytes: 2}},

		// Framing.
		{name: "ChannelData length beyond the datagram", in: withChannelLen(c2pIn(b4, data, nil).bytes(), ethLen+ip4Len, 101), verdict: verdictNext, reason: BadLength},
		{name: "ChannelData with 4 bytes of padding", in: withChannelLen(c2pIn(b4, data, nil).bytes(), ethLen+ip4Len, 96), verdict: verdictNext, reason: BadLength},
		{name: "UDP length disagrees with IP", in: badUDPLen, verdict: verdictNext, reason: BadLength},
		{name: "channel 0x3FFF is not ChannelData", in: c2pIn(Binding{Client: b4.Client, Listener: b4.Listener, Channel: 0x3fff}, data, nil).bytes(), verdict: verdictNext, reason: NotChannelData},
		{name: "channel 0x8000 is not ChannelData", in: c2pIn(Binding{Client: b4.Client, Listener: b4.Listener, Channel: 0x8000}, data, nil).bytes(), verdict: verdictNext, reason: NotChannelData},
		{name: "STUN on the listener port", in: stun.bytes(), verdict: verdictNext, reason: NotChannelData},
		{name: "not ours: DNS", in: frame{src: b4.Client, dst: ap("192.0.2.2:53"), payload: data, ttl: 50}.bytes(), verdict: verdictNext, reason: noReason},
		{name: "not ours: below the relay range", in: frame{src: b4.Peer, dst: ap("192.0.2.2:49151"), payload: data, ttl: 50}.bytes(), verdict: verdictNext, reason: noReason},

		// Misses and lifetimes.
		{name: "c2p miss: unbound channel", in: c2pIn(Binding{Client: b4.Client, Listener: b4.Listener, Channel: 0x4100}, data, nil).bytes(), verdict: verdictNext, reason: Miss},
		{name: "p2c miss: unknown peer port", in: p2cIn(Binding{Peer: ap("198.51.100.1:5999"), Relay: b4.Relay}, data).bytes(), verdict: verdictNext, reason: Miss},
		{name: "c2p channel expired", in: c2pIn(b4chanExp, data, nil).bytes(), verdict: verdictNext, reason: Expired},
		{name: "p2c permission expired", in: p2cIn(b4permExp, data).bytes(), verdict: verdictNext, reason: Expired},
		{name: "c2p throttled", in: c2pIn(b4, data, nil).bytes(), verdict: verdictNext, reason: Throttled,
			setup: func(t *testing.T, e *Engine) func() {
				must(t, e.SetThrottled(b4.ID(), true))
				return func() { must(t, e.SetThrottled(b4.ID(), false)) }
			}},
		{name: "p2c throttled", in: p2cIn(b6, data).bytes(), verdict: verdictNext, reason: Throttled,
			setup: func(t *testing.T, e *Engine) func() {
				must(t, e.SetThrottled(b6.ID(), true))
				return func() { must(t, e.SetThrottled(b6.ID(), false)) }
			}},
		{name: "c2p kill switch", in: c2pIn(b4, data, nil).bytes(), verdict: verdictNext, reason: Disabled,
			setup: func(t *testing.T, e *Engine) func() {
				must(t, e.SetEnabled(false))
				return func() { must(t, e.SetEnabled(true)) }
			}},
		{name: "p2c permission revoked", in: p2cIn(b4, data).bytes(), verdict: verdictNext, reason: Disabled,
			setup: func(t *testing.T, e *Engine) func() {
				if n, err := e.RevokePermission(b4.Relay, b4.Peer.Addr()); n != 1 || err != nil {
					t.Fatalf("RevokePermission = %d, %v", n, err)
				}
				return func() {
					if n, err := e.SetPermission(b4.Relay, b4.Peer.Addr(), time.Now().Add(time.Hour)); n != 1 || err != nil {
						t.Fatalf("SetPermission = %d, %v", n, err)
					}
				}
			}},
		{name: "c2p deadline moved into the past", in: c2pIn(b6, data, nil).bytes(), verdict: verdictNext, reason: Expired,
			setup: func(t *testing.T, e *Engine) func() {
				must(t, e.SetDeadlines(b6.ID(), time.Now().Add(-time.Millisecond), time.Time{}))
				return func() { must(t, e.SetDeadlines(b6.ID(), time.Now().Add(time.Hour), time.Now().Add(time.Hour))) }
			}},

		// Packets user space must see.
		{name: "v4 first fragment", in: withFrag(c2pIn(b4, data, nil).bytes(), 0x2000), verdict: verdictNext, reason: Fragment},
		{name: "v4 later fragment to our address", in: withFrag(c2pIn(b4, data, nil).bytes(), 0x0010), verdict: verdictNext, reason: Fragment},
		{name: "v6 fragment header", in: withIPv6Ext(c2pIn(b6, data, nil).bytes(), 44), verdict: verdictNext, reason: Fragment},
		{name: "v4 IP options", in: withIPv4Options(c2pIn(b4, data, nil).bytes()), verdict: verdictNext, reason: IPOptions},
		{name: "v6 hop-by-hop header", in: withIPv6Ext(p2cIn(b6, data).bytes(), 0), verdict: verdictNext, reason: IPv6Ext},
		{name: "v6 destination options header", in: withIPv6Ext(c2pIn(b6, data, nil).bytes(), 60), verdict: verdictNext, reason: IPv6Ext},
		{name: "GSO packet", in: c2pIn(b4, data, nil).bytes(), ctx: skbContext(t, 2, 100), verdict: verdictNext, reason: GSO},
		{name: "p2c over the MTU after +4", in: p2cIn(b4mtu, payload(100-ip4Len-udpLen-chanLen+1)).bytes(), verdict: verdictNext, reason: OverMTU},
		{name: "p2c exactly the MTU after +4", in: p2cIn(b4mtu, payload(100-ip4Len-udpLen-chanLen)).bytes(), verdict: verdictRedirect,
			out: p2cOut(b4mtu, payload(100-ip4Len-udpLen-chanLen)).bytes(), reason: ForwardedToClient, id: b4mtu.ID(), stats: Stats{ToClientPackets: 1, ToClientBytes: 68}},
		{name: "c2p over the peer link's MTU", in: c2pIn(b4mtu, payload(100-ip4Len-udpLen+1), nil).bytes(), verdict: verdictNext, reason: OverMTU},
		{name: "c2p exactly the peer link's MTU", in: c2pIn(b4mtu, payload(100-ip4Len-udpLen), nil).bytes(), verdict: verdictRedirect,
			out: c2pOut(b4mtu, payload(100-ip4Len-udpLen)).bytes(), reason: ForwardedToPeer, id: b4mtu.ID(), stats: Stats{ToPeerPackets: 1, ToPeerBytes: 72}},
		{name: "c2p relay to relay", in: c2pIn(b4r2r, data, nil).bytes(), verdict: verdictNext, reason: RelayToRelay},
		{name: "p2c relay to relay", in: p2cIn(b4r2r, data).bytes(), verdict: verdictNext, reason: RelayToRelay},
	}...)

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.setup != nil {
				defer c.setup(t, e)()
			}
			before, err := e.Counters()
			must(t, err)
			in := append([]byte{}, c.in...)
			v, got, err := e.run(in, c.ctx)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if v != c.verdict {
				t.Errorf("verdict %d, want %d", int32(v), int32(c.verdict))
			}
			want := c.out
			if want == nil {
				want = c.in
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output\n% x\nwant\n% x", got, want)
			}
			if c.out != nil && !c.in2partial() {
				checkFrame(t, got, c.allowZero)
			}
			after, err := e.Counters()
			must(t, err)
			for r := range numReasons {
				d := after.Reasons[r] - before.Reasons[r]
				if w := uint64(0); Reason(r) == c.reason && d != 1 || Reason(r) != c.reason && d != w {
					t.Errorf("reason %v counted %d times", Reason(r), d)
				}
			}
			for id, s := range after.Bindings {
				b := before.Bindings[id]
				d := Stats{s.ToPeerPackets - b.ToPeerPackets, s.ToPeerBytes - b.ToPeerBytes,
					s.ToClientPackets - b.ToClientPackets, s.ToClientBytes - b.ToClientBytes}
				w := Stats{}
				if id == c.id {
					w = c.stats
				}
				if d != w {
					t.Errorf("binding %v counters moved by %+v, want %+v", id, d, w)
				}
			}
		})
	}
}

// in2partial reports whether the case's input carries a partial checksum
// (whose output keeps the partial form rather than a full checksum).
func (c progCase) in2partial() bool {
	src, dst, udp, ok := parseFrame(c.in)
	return ok && binary.BigEndian.Uint16(udp[6:]) == checksum.Fold(checksum.PseudoHeader(src, dst, len(udp)))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestUpsertRejects(t *testing.T) {
	e := loadTestEngine(t, testConfig)
	mixed := b4
	mixed.Peer = ap("[2001:db8:1::1]:5000")
	wild := b4
	wild.Listener = ap("0.0.0.0:3478")
	badChan := b4
	badChan.Channel = 0x3fff
	for name, b := range map[string]Binding{"mixed families": mixed, "wildcard listener": wild, "channel 0x3FFF": badChan} {
		if err := e.Upsert(b); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Upsert = %v, want ErrInvalid", name, err)
		}
	}
	if len(e.Bindings()) != 0 {
		t.Errorf("rejected bindings were installed: %v", e.Bindings())
	}
	if _, err := e.Remove(b4.ID()); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove of an unknown binding = %v, want ErrNotFound", err)
	}
}

var _ = netip.Addr{}

// TestChecksumLookalike pins the documented false positive of the
// CHECKSUM_PARTIAL test: a fully checksummed datagram whose checksum happens
// to equal its pseudo-header sum goes to user space (never gets rewritten
// wrongly), and the netns test's lookalike predicate agrees with the program.
func TestChecksumLookalike(t *testing.T) {
	e := loadTestEngine(t, testConfig)
	must(t, e.Upsert(b4))
	data := payload(40)
	found := false
	for v := range 1 << 16 {
		binary.BigEndian.PutUint16(data[8:], uint16(v))
		if lookalike(b4.Peer, b4.Relay, data) {
			found = true
			break
		}
	}
	if !found {
		t.Fatal("no payload value makes the checksum equal the pseudo-header sum")
	}
	in := p2cIn(b4, data).bytes()
	checkFrame(t, in, false) // a correct, complete checksum
	before, err := e.Counters()
	must(t, err)
	v, out, err := e.run(append([]byte{}, in...), nil)
	must(t, err)
	after, err := e.Counters()
	must(t, err)
	if v != verdictNext || !bytes.Equal(out, in) || after.Reasons[ChecksumPartial]-before.Reasons[ChecksumPartial] != 1 {
		t.Errorf("lookalike datagram: verdict %d, unchanged %v, reasons %s; want TCX_NEXT, unchanged, checksum_partial",
			int32(v), bytes.Equal(out, in), reasonDelta(before, after))
	}
	binary.BigEndian.PutUint16(data[8:], binary.BigEndian.Uint16(data[8:])+1)
	if v, _, err := e.run(p2cIn(b4, data).bytes(), nil); err != nil || v != verdictRedirect {
		t.Errorf("the next payload value: verdict %d, %v; want redirect", int32(v), err)
	}
}
