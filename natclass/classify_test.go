package natclass

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

var (
	tP     = netip.MustParseAddrPort("198.51.100.1:3478")
	tA     = netip.MustParseAddrPort("198.51.100.2:3479")
	tPub   = netip.MustParseAddr("203.0.113.5")
	tLocal = netip.MustParseAddr("192.0.2.10")
)

func ap(ip netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(ip, port) }

// answered builds an answered exchange as the probe records it from an
// honest RFC 5780 server.
func answered(test Test, sock int, local, to, mapped, from netip.AddrPort, change Change) Exchange {
	other := ap(tA.Addr(), tA.Port())
	if to.Addr() == tA.Addr() {
		other = ap(tP.Addr(), other.Port())
	}
	if to.Port() == tA.Port() {
		other = ap(other.Addr(), tP.Port())
	}
	return Exchange{Test: test, Socket: sock, Local: local, Server: 0, To: to, Change: change, Transmissions: 1,
		Answered: true, ReceivedOn: sock, From: from, Mapped: mapped, ResponseOrigin: from, OtherAddress: other}
}

func lost(test Test, sock int, local, to netip.AddrPort, change Change) Exchange {
	return Exchange{Test: test, Socket: sock, Local: local, Server: 0, To: to, Change: change, Transmissions: 8}
}

// synth builds the observations an RFC 5780 probe makes behind a NAT with
// mapping m and filtering f (nat false: no NAT, the firewall filters f).
func synth(m, f Behavior, nat bool) Observations {
	pub := tPub
	if !nat {
		pub = tLocal
	}
	l1, l2, l3 := ap(netip.IPv4Unspecified(), 40000), ap(netip.IPv4Unspecified(), 40001), ap(netip.IPv4Unspecified(), 40002)
	m1 := ap(pub, 40000)
	m2, m3 := m1, m1
	if nat {
		switch m {
		case AddressDependent:
			m2 = ap(pub, 50001)
			m3 = m2
		case AddressAndPortDependent:
			m2, m3 = ap(pub, 50001), ap(pub, 50002)
		}
	}
	alt2 := ap(tA.Addr(), tP.Port())
	obs := Observations{
		Family: "ipv4", Servers: []Server{{Name: "stun.example:3478", Addr: tP}}, RFC5780Server: 0,
		LocalAddrs: []netip.Addr{tLocal},
		Exchanges: []Exchange{
			answered(TestMapping, 1, l1, tP, m1, tP, ChangeNone),
			answered(TestMapping, 1, l1, alt2, m2, alt2, ChangeNone),
			answered(TestMapping, 1, l1, tA, m3, tA, ChangeNone),
		},
	}
	if f == EndpointIndependent {
		obs.Exchanges = append(obs.Exchanges, answered(TestFiltering, 2, l2, tP, ap(pub, 40001), tA, ChangeIPPort))
	} else {
		obs.Exchanges = append(obs.Exchanges, lost(TestFiltering, 2, l2, tP, ChangeIPPort))
	}
	if f != AddressAndPortDependent {
		obs.Exchanges = append(obs.Exchanges, answered(TestFiltering, 3, l3, tP, ap(pub, 40002), ap(tP.Addr(), tA.Port()), ChangePort))
	} else {
		obs.Exchanges = append(obs.Exchanges, lost(TestFiltering, 3, l3, tP, ChangePort))
	}
	return obs
}

func TestClassifyEveryCombination(t *testing.T) {
	t.Parallel()
	bs := []Behavior{EndpointIndependent, AddressDependent, AddressAndPortDependent}
	want := map[[2]Behavior]string{
		{EndpointIndependent, EndpointIndependent}:     ClassicFullCone,
		{EndpointIndependent, AddressDependent}:        ClassicRestrictedCone,
		{EndpointIndependent, AddressAndPortDependent}: ClassicPortRestrictedCone,
	}
	for _, m := range bs {
		for _, f := range bs {
			r := Classify(synth(m, f, true))
			classic := want[[2]Behavior{m, f}]
			if classic == "" {
				classic = ClassicSymmetric
			}
			if r.Mapping != m || r.Filtering != f || r.Classic != classic || r.Verdict != VerdictComplete || r.NAT != Yes || len(r.Problems) > 0 {
				t.Errorf("%s/%s: got %s/%s %q %s nat=%s problems=%v", m, f, r.Mapping, r.Filtering, r.Classic, r.Verdict, r.NAT, r.Problems)
			}
			if r.PublicAddr != ap(tPub, 40000) {
				t.Errorf("%s/%s: public %v", m, f, r.PublicAddr)
			}
			if r.PortPreservation != Yes {
				t.Errorf("%s/%s: port preservation %s", m, f, r.PortPreservation)
			}
			if len(r.Reasons) < 4 {
				t.Errorf("%s/%s: too few reasons: %v", m, f, r.Reasons)
			}
		}
	}
}

func TestClassifyCases(t *testing.T) {
	t.Parallel()
	type want struct {
		verdict   Verdict
		nat       Answer
		mapping   Behavior
		filtering Behavior
		classic   string
		hairpin   Answer
		ports     Answer
		problem   string // substring of some problem, "" = none allowed
		reason    string // substring of some reason
	}
	mod := func(o Observations, f func(*Observations)) Observations { f(&o); return o }
	plain := func(servers int, mapped ...uint16) Observations {
		o := Observations{Family: "ipv4", RFC5780Server: -1, LocalAddrs: []netip.Addr{tLocal}}
		for i := range servers {
			addr := ap(netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)}), 19302)
			o.Servers = append(o.Servers, Server{Name: addr.String(), Addr: addr})
			e := Exchange{Test: TestMapping, Socket: 1, Local: ap(netip.IPv4Unspecified(), 40000), Server: i, To: addr, Transmissions: 1}
			if i < len(mapped) {
				e.Answered, e.ReceivedOn, e.From, e.Mapped = true, 1, addr, ap(tPub, mapped[i])
			}
			o.Exchanges = append(o.Exchanges, e)
		}
		return o
	}
	for _, tc := range []struct {
		name string
		obs  Observations
		want want
	}{
		{"no NAT, open", synth(EndpointIndependent, EndpointIndependent, false),
			want{VerdictComplete, No, EndpointIndependent, EndpointIndependent, ClassicOpenInternet, Unknown, Yes, "", "no NAT"}},
		{"no NAT, firewall", synth(EndpointIndependent, AddressAndPortDependent, false),
			want{VerdictComplete, No, EndpointIndependent, AddressAndPortDependent, ClassicSymmetricUDPFirewall, Unknown, Yes, "", "no NAT"}},
		{"no NAT, address-dependent firewall", synth(EndpointIndependent, AddressDependent, false),
			want{VerdictComplete, No, EndpointIndependent, AddressDependent, ClassicSymmetricUDPFirewall, Unknown, Yes, "", ""}},
		{"blocked", mod(synth(EndpointIndependent, EndpointIndependent, true), func(o *Observations) {
			for i := range o.Exchanges {
				o.Exchanges[i] = lost(o.Exchanges[i].Test, o.Exchanges[i].Socket, o.Exchanges[i].Local, o.Exchanges[i].To, o.Exchanges[i].Change)
			}
		}), want{VerdictUDPBlocked, Unknown, BehaviorUnknown, BehaviorUnknown, ClassicBlocked, Unknown, Unknown, "", "blocked"}},
		{"nothing sent", Observations{Family: "ipv4", RFC5780Server: -1},
			want{VerdictPartial, Unknown, BehaviorUnknown, BehaviorUnknown, ClassicUnknown, Unknown, Unknown, "", "nothing was observed"}},
		{"one plain server", plain(1, 40000),
			want{VerdictPartial, Yes, BehaviorUnknown, BehaviorUnknown, ClassicUnknown, Unknown, Yes, "", "two plain STUN servers"}},
		{"two plain servers, same mapping", plain(2, 40000, 40000),
			want{VerdictPartial, Yes, EndpointIndependent, BehaviorUnknown, ClassicUnknown, Unknown, Yes, "", "no server sent a usable OTHER-ADDRESS"}},
		{"two plain servers, different mapping", plain(2, 40000, 40001),
			want{VerdictPartial, Yes, EndpointDependent, BehaviorUnknown, ClassicSymmetric, Unknown, Yes, "", "endpoint-dependent"}},
		{"two plain servers, one silent", plain(2, 40000),
			want{VerdictPartial, Yes, BehaviorUnknown, BehaviorUnknown, ClassicUnknown, Unknown, Yes, "", ""}},
		{"three plain servers contradict", plain(3, 40000, 40000, 40001),
			want{VerdictPartial, Yes, BehaviorUnknown, BehaviorUnknown, ClassicUnknown, Unknown, Yes, "contradictory mapping", ""}},
		{"mapping II and III lost", mod(synth(AddressDependent, AddressDependent, true), func(o *Observations) {
			o.Exchanges[1] = lost(TestMapping, 1, o.Exchanges[1].Local, o.Exchanges[1].To, ChangeNone)
			o.Exchanges[2] = lost(TestMapping, 1, o.Exchanges[2].Local, o.Exchanges[2].To, ChangeNone)
		}), want{VerdictPartial, Yes, BehaviorUnknown, BehaviorUnknown, ClassicUnknown, Unknown, Yes, "", "prove nothing about the filter"}},
		{"mapping II and III lost, filtering open", mod(synth(AddressDependent, EndpointIndependent, true), func(o *Observations) {
			o.Exchanges[1] = lost(TestMapping, 1, o.Exchanges[1].Local, o.Exchanges[1].To, ChangeNone)
			o.Exchanges[2] = lost(TestMapping, 1, o.Exchanges[2].Local, o.Exchanges[2].To, ChangeNone)
		}), want{VerdictPartial, Yes, BehaviorUnknown, EndpointIndependent, ClassicUnknown, Unknown, Yes, "", "got no answer"}},
		{"mapping III lost, port-dependent filtering unprovable", mod(synth(AddressAndPortDependent, AddressAndPortDependent, true), func(o *Observations) {
			o.Exchanges[2] = lost(TestMapping, 1, o.Exchanges[2].Local, o.Exchanges[2].To, ChangeNone)
		}), want{VerdictPartial, Yes, EndpointDependent, BehaviorUnknown, ClassicSymmetric, Unknown, Yes, "", "prove nothing"}},
		{"mapping III lost", mod(synth(AddressAndPortDependent, AddressDependent, true), func(o *Observations) {
			o.Exchanges[2] = lost(TestMapping, 1, o.Exchanges[2].Local, o.Exchanges[2].To, ChangeNone)
		}), want{VerdictPartial, Yes, EndpointDependent, AddressDependent, ClassicSymmetric, Unknown, Yes, "", ""}},
		{"mapping contradiction I=II, III differs", mod(synth(EndpointIndependent, AddressDependent, true), func(o *Observations) {
			o.Exchanges[2].Mapped = ap(tPub, 50009)
		}), want{VerdictPartial, Yes, BehaviorUnknown, AddressDependent, ClassicUnknown, Unknown, Yes, "contradictory mapping", ""}},
		{"filtering contradiction", mod(synth(EndpointIndependent, EndpointIndependent, true), func(o *Observations) {
			o.Exchanges[4] = lost(TestFiltering, 3, o.Exchanges[4].Local, tP, ChangePort)
		}), want{VerdictPartial, Yes, EndpointIndependent, BehaviorUnknown, ClassicUnknown, Unknown, Yes, "contradictory filtering", ""}},
		{"filtering tests missing", mod(synth(EndpointIndependent, EndpointIndependent, true), func(o *Observations) {
			o.Exchanges = o.Exchanges[:3]
		}), want{VerdictPartial, Yes, EndpointIndependent, BehaviorUnknown, ClassicUnknown, Unknown, Yes, "", "not (all) run"}},
		{"filtering 420", mod(synth(EndpointIndependent, EndpointIndependent, true), func(o *Observations) {
			o.Exchanges[3].ErrorCode, o.Exchanges[3].Error, o.Exchanges[3].Mapped = 420, "Unknown Attribute", netip.AddrPort{}
			o.Exchanges[3].From = tP
			o.Exchanges[3].ResponseOrigin = netip.AddrPort{}
		}), want{VerdictPartial, Yes, EndpointIndependent, BehaviorUnknown, ClassicUnknown, Unknown, Yes, "", "error 420"}},
		{"OTHER-ADDRESS same IP", mod(synth(EndpointIndependent, EndpointIndependent, true), func(o *Observations) {
			o.Exchanges[0].OtherAddress = ap(tP.Addr(), tA.Port())
			o.RFC5780Server = -1
			o.Exchanges = o.Exchanges[:1]
		}), want{VerdictMisconfigured, Yes, BehaviorUnknown, BehaviorUnknown, ClassicUnknown, Unknown, Yes, "must differ from the address asked", ""}},
		{"OTHER-ADDRESS same port", mod(synth(EndpointIndependent, EndpointIndependent, true), func(o *Observations) {
			o.Exchanges[0].OtherAddress = ap(tA.Addr(), tP.Port())
			o.RFC5780Server = -1
			o.Exchanges = o.Exchanges[:1]
		}), want{VerdictMisconfigured, Yes, BehaviorUnknown, BehaviorUnknown, ClassicUnknown, Unknown, Yes, "in both IP and port", ""}},
		{"wrong RESPONSE-ORIGIN", mod(synth(EndpointIndependent, AddressAndPortDependent, true), func(o *Observations) {
			o.Exchanges[0].ResponseOrigin = netip.MustParseAddrPort("10.0.0.1:3478")
		}), want{VerdictMisconfigured, Yes, BehaviorUnknown, BehaviorUnknown, ClassicUnknown, Unknown, Yes, "RESPONSE-ORIGIN", ""}},
		{"CHANGE-REQUEST ignored", mod(synth(EndpointIndependent, AddressAndPortDependent, true), func(o *Observations) {
			o.Exchanges[3] = answered(TestFiltering, 2, o.Exchanges[3].Local, tP, ap(tPub, 40001), tP, ChangeIPPort)
		}), want{VerdictMisconfigured, Yes, BehaviorUnknown, BehaviorUnknown, ClassicUnknown, Unknown, Yes, "ignored CHANGE-REQUEST", ""}},
		{"change answer from a fifth address", mod(synth(EndpointIndependent, EndpointIndependent, true), func(o *Observations) {
			o.Exchanges[3].From = netip.MustParseAddrPort("198.51.100.3:3479")
			o.Exchanges[3].ResponseOrigin = o.Exchanges[3].From
		}), want{VerdictMisconfigured, Yes, BehaviorUnknown, BehaviorUnknown, ClassicUnknown, Unknown, Yes, "expected", ""}},
		{"hairpin yes", mod(synth(EndpointIndependent, AddressAndPortDependent, true), func(o *Observations) {
			o.Exchanges = append(o.Exchanges,
				Exchange{Test: TestHairpin, Socket: 4, Server: -1, To: ap(tPub, 40005), Transmissions: 2, Answered: true, ReceivedOn: 5, From: ap(tPub, 40004)})
		}), want{VerdictComplete, Yes, EndpointIndependent, AddressAndPortDependent, ClassicPortRestrictedCone, Yes, Yes, "", "hairpinning:"}},
		{"hairpin no", mod(synth(EndpointIndependent, AddressAndPortDependent, true), func(o *Observations) {
			o.Exchanges = append(o.Exchanges, Exchange{Test: TestHairpin, Socket: 4, Server: -1, To: ap(tPub, 40005), Transmissions: 8})
		}), want{VerdictComplete, Yes, EndpointIndependent, AddressAndPortDependent, ClassicPortRestrictedCone, No, Yes, "", "no hairpinning"}},
		{"hairpin undecidable behind symmetric NAT", mod(synth(AddressAndPortDependent, AddressAndPortDependent, true), func(o *Observations) {
			o.Exchanges = append(o.Exchanges, Exchange{Test: TestHairpin, Socket: 4, Server: -1, To: ap(tPub, 40005), Transmissions: 8})
		}), want{VerdictComplete, Yes, AddressAndPortDependent, AddressAndPortDependent, ClassicSymmetric, Unknown, Yes, "", "could have dropped"}},
		{"no port preservation", mod(synth(EndpointIndependent, EndpointIndependent, true), func(o *Observations) {
			for i := range o.Exchanges {
				if o.Exchanges[i].Mapped.IsValid() {
					o.Exchanges[i].Mapped = ap(tPub, o.Exchanges[i].Mapped.Port()+1000)
				}
			}
		}), want{VerdictComplete, Yes, EndpointIndependent, EndpointIndependent, ClassicFullCone, Unknown, No, "", "no port preservation"}},
		{"mapped IP local, port rewritten", mod(synth(EndpointIndependent, EndpointIndependent, false), func(o *Observations) {
			for i := range o.Exchanges {
				if o.Exchanges[i].Mapped.IsValid() {
					o.Exchanges[i].Mapped = ap(tLocal, o.Exchanges[i].Mapped.Port()+7)
				}
			}
		}), want{VerdictComplete, Yes, EndpointIndependent, EndpointIndependent, ClassicFullCone, Unknown, No, "", "rewrites ports"}},
		{"coturn-style OTHER-ADDRESS on the other addresses is only a note", mod(synth(EndpointIndependent, EndpointIndependent, true), func(o *Observations) {
			o.Exchanges[1].OtherAddress = ap(tA.Addr(), tA.Port())
		}), want{VerdictComplete, Yes, EndpointIndependent, EndpointIndependent, ClassicFullCone, Unknown, Yes, "", "coturn 4.6.1 does this"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Classify(tc.obs)
			w := tc.want
			if r.Verdict != w.verdict || r.NAT != w.nat || r.Mapping != w.mapping || r.Filtering != w.filtering || r.Classic != w.classic ||
				r.Hairpinning != w.hairpin || r.PortPreservation != w.ports {
				t.Errorf("got verdict=%s nat=%s mapping=%s filtering=%s classic=%q hairpin=%s ports=%s\nwant %+v\nreasons:\n  %s\nproblems:\n  %s",
					r.Verdict, r.NAT, r.Mapping, r.Filtering, r.Classic, r.Hairpinning, r.PortPreservation, w,
					strings.Join(r.Reasons, "\n  "), strings.Join(r.Problems, "\n  "))
			}
			if w.problem == "" && len(r.Problems) > 0 {
				t.Errorf("unexpected problems %v", r.Problems)
			}
			if w.problem != "" && !slices.ContainsFunc(r.Problems, func(p string) bool { return strings.Contains(p, w.problem) }) {
				t.Errorf("no problem mentions %q: %v", w.problem, r.Problems)
			}
			if w.reason != "" && !slices.ContainsFunc(r.Reasons, func(p string) bool { return strings.Contains(p, w.reason) }) {
				t.Errorf("no reason mentions %q: %v", w.reason, r.Reasons)
			}
			if r.WebRTC == "" {
				t.Error("no WebRTC meaning")
			}
			if err := r.validate(); err != nil {
				t.Errorf("result does not validate: %v", err)
			}
		})
	}
}

func TestClassifyLifetime(t *testing.T) {
	t.Parallel()
	base := synth(EndpointIndependent, AddressAndPortDependent, true)
	base.Lifetime = true
	step := func(idle float64, ok bool, receivedOn int) Exchange {
		e := Exchange{Test: TestLifetime, Socket: 9, Server: 0, To: tP, ResponsePort: 40100, IdleSeconds: idle, Transmissions: 3}
		if ok {
			e.Answered, e.ReceivedOn, e.From, e.Mapped = true, receivedOn, tP, ap(tPub, 40100)
		}
		return e
	}
	with := func(es ...Exchange) Observations {
		o := base
		o.Exchanges = append(slices.Clone(base.Exchanges), es...)
		return o
	}
	for _, tc := range []struct {
		name string
		obs  Observations
		want *Lifetime
	}{
		{"between", with(step(0, true, 10), step(10, true, 11), step(20, true, 12), step(30, false, 0)), &Lifetime{AliveS: 20, ExpiredS: 30}},
		{"never expired", with(step(0, true, 10), step(10, true, 11)), &Lifetime{AliveS: 10}},
		{"expired at the first step", with(step(0, true, 10), step(10, false, 0)), &Lifetime{AliveS: 0, ExpiredS: 10}},
		{"no RESPONSE-PORT support", with(step(0, true, 9)), nil},
		{"control lost", with(step(0, false, 0), step(10, true, 11)), nil},
		{"contradiction", with(step(0, true, 10), step(10, false, 0), step(20, true, 12)), nil},
	} {
		r := Classify(tc.obs)
		if (r.MappingLifetime == nil) != (tc.want == nil) || r.MappingLifetime != nil && *r.MappingLifetime != *tc.want {
			t.Errorf("%s: lifetime %+v, want %+v (%v)", tc.name, r.MappingLifetime, tc.want, r.Reasons)
		}
		if r.Mapping != EndpointIndependent || r.Filtering != AddressAndPortDependent {
			t.Errorf("%s: lifetime exchanges changed the classification: %s/%s", tc.name, r.Mapping, r.Filtering)
		}
	}
}

func TestClassifyIsPure(t *testing.T) {
	t.Parallel()
	obs := synth(AddressDependent, EndpointIndependent, true)
	before := slices.Clone(obs.Exchanges)
	a, b := Classify(obs), Classify(obs)
	if !slices.Equal(a.Reasons, b.Reasons) || a.Mapping != b.Mapping || !slices.Equal(obs.Exchanges, before) {
		t.Fatal("Classify is not deterministic or changed its input")
	}
	if len(a.Observations.Exchanges) != len(obs.Exchanges) {
		t.Fatal("result does not carry the observations")
	}
}
