//go:build linux

package natlab

import (
	"context"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/testenv"
)

func needLab(t *testing.T) {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ip", "iproute2")
	testenv.NeedCommand(t, "nft", "nftables")
}

// TestRawProbe checks every lab case with the raw reflector probe: the lab
// does what its Case says, before any classifier is asked about it.
func TestRawProbe(t *testing.T) {
	needLab(t)
	ForEachCase(t, Cases(), 8, func(t *testing.T, c Case) {
		lab := New(t, c)
		if _, err := lab.StartReflector(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		o, err := lab.RawProbe(ctx)
		if err != nil {
			t.Fatalf("raw probe: %v", err)
		}
		t.Logf("observed: %s", o)
		if err := o.Matches(c); err != nil {
			t.Errorf("lab %s does not behave as its case says:\n%v\nruleset:\n%s", c.Name(), err, Ruleset(c))
		}
	})
}

// TestCleanup checks that Close removes the namespaces and stops the
// processes a lab started, and that Sweep leaves a live owner's labs alone.
func TestCleanup(t *testing.T) {
	needLab(t)
	lab, err := Build(context.Background(), Case{Mapping: EndpointIndependent, Filtering: EndpointIndependent})
	if err != nil {
		if lab != nil {
			lab.Close()
		}
		t.Fatal(err)
	}
	p, err := lab.Start(Public, "sleep", "600")
	if err != nil {
		lab.Close()
		t.Fatal(err)
	}
	if removed := Sweep(); len(removed) != 0 {
		t.Errorf("Sweep removed %v while their owner runs", removed)
	}
	if err := lab.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	default:
		t.Error("process still running after Close")
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []Role{Public, Router, LAN} {
		if strings.Contains(string(out), lab.NS(r)) {
			t.Errorf("namespace %s still exists after Close", lab.NS(r))
		}
	}
	if err := lab.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestSweepStale makes a namespace named as if by a process that has
// exited and checks Sweep deletes it.
func TestSweepStale(t *testing.T) {
	needLab(t)
	// A pid that ran and exited: ours reaped it, so it is free (the kernel
	// does not reuse it this soon in practice; if it did, Sweep would only
	// skip the namespace and the test would report that).
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	name := Prefix + strconv.Itoa(cmd.Process.Pid) + "-abcdef-" + string(Public)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", name).Run() })
	removed := Sweep()
	found := false
	for _, n := range removed {
		found = found || n == name
	}
	if !found {
		t.Fatalf("Sweep removed %v, not the stale %s", removed, name)
	}
}

func TestCaseValidate(t *testing.T) {
	for _, tc := range []struct {
		c    Case
		want string // substring of the error; "" for valid
	}{
		{Case{Mapping: EndpointIndependent, Filtering: AddressDependent, PortPreserve: true}, ""},
		{Case{Mapping: AddressDependent, Filtering: AddressPortDependent, Hairpin: true, LossPercent: 20}, ""},
		{Case{NoNAT: true, Filtering: EndpointIndependent}, ""},
		{Case{Filtering: EndpointIndependent}, "mapping"},
		{Case{Mapping: "cone", Filtering: EndpointIndependent}, "mapping"},
		{Case{Mapping: EndpointIndependent}, "filtering"},
		{Case{Mapping: AddressDependent, Filtering: EndpointIndependent, PortPreserve: true}, "PortPreserve"},
		{Case{NoNAT: true, Filtering: AddressDependent}, "NoNAT"},
		{Case{NoNAT: true, Filtering: EndpointIndependent, Hairpin: true}, "Hairpin"},
		{Case{Mapping: EndpointIndependent, Filtering: EndpointIndependent, LossPercent: 100}, "LossPercent"},
	} {
		err := tc.c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", tc.c, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: error %v, want one mentioning %q", tc.c, err, tc.want)
		}
	}
	names := map[string]bool{}
	for _, c := range Cases() {
		if err := c.Validate(); err != nil {
			t.Errorf("standard case %s invalid: %v", c.Name(), err)
		}
		if names[c.Name()] {
			t.Errorf("two standard cases named %s", c.Name())
		}
		names[c.Name()] = true
	}
}

// TestRulesetShape pins the rules each behaviour relies on, so a refactor
// cannot silently turn a case into another (the netns tests prove the
// behaviour; this one runs everywhere).
func TestRulesetShape(t *testing.T) {
	for _, tc := range []struct {
		c       Case
		want    []string
		notWant []string
	}{
		{Case{Mapping: EndpointIndependent, Filtering: AddressPortDependent, PortPreserve: true},
			[]string{`oifname "wan0" meta l4proto udp snat ip to 198.51.100.2` + "\n"},
			[]string{"dnat", "fully-random", "numgen"}},
		{Case{Mapping: EndpointIndependent, Filtering: EndpointIndependent},
			[]string{"udp sport ^ 0x1f00", "dnat ip to udp dport map @byport"}, nil},
		{Case{Mapping: AddressDependent, Filtering: AddressDependent},
			[]string{"ip daddr & 0.0.0.15 == 0.0.0.10 snat", "dnat ip to ip saddr . udp dport map @byaddr"}, []string{"@byport\n"}},
		{Case{Mapping: AddressPortDependent, Filtering: EndpointIndependent, Hairpin: true},
			[]string{"fully-random", `iifname "lan0" ip daddr 198.51.100.2 meta l4proto udp dnat`}, nil},
		{Case{Mapping: EndpointIndependent, Filtering: EndpointIndependent, LossPercent: 20, UDPBlocked: true},
			[]string{"numgen random mod 100 < 20 drop", "meta l4proto udp drop"}, nil},
		{Case{NoNAT: true, Filtering: AddressPortDependent},
			[]string{"ct state established,related accept"}, []string{"snat", "dnat"}},
	} {
		rs := Ruleset(tc.c)
		for _, w := range tc.want {
			if !strings.Contains(rs, w) {
				t.Errorf("%s: ruleset lacks %q:\n%s", tc.c.Name(), w, rs)
			}
		}
		for _, w := range tc.notWant {
			if strings.Contains(rs, w) {
				t.Errorf("%s: ruleset has %q:\n%s", tc.c.Name(), w, rs)
			}
		}
	}
}

func TestParseMessage(t *testing.T) {
	ap := netip.MustParseAddrPort("203.0.113.10:7000")
	for _, m := range []message{
		{Kind: kindRequest, Nonce: "ab"},
		{Kind: kindRequest, Nonce: "ab", Via: ap},
		{Kind: kindReply, Nonce: "cd", Observed: netip.MustParseAddrPort("198.51.100.2:40001"), From: ap},
		{Kind: kindAck, Nonce: "cd", Observed: netip.MustParseAddrPort("198.51.100.2:40001"), From: ap},
		{Kind: kindHairpin, Nonce: "ef"},
	} {
		got, err := parseMessage(m.bytes())
		if err != nil || got != m {
			t.Errorf("round trip of %+v: got %+v, %v", m, got, err)
		}
	}
	for _, bad := range []string{"", "NLQ1", "NLQ1 x", "NLQ1 x 1.2.3.4", "NLR1 x - -", "XXXX x -", "NLH1 x y",
		"NLQ1 " + strings.Repeat("a", 33) + " -"} {
		if _, err := parseMessage([]byte(bad)); err == nil {
			t.Errorf("parseMessage(%q) accepted", bad)
		}
	}
}

func FuzzParseMessage(f *testing.F) {
	f.Add([]byte("NLQ1 ab 203.0.113.10:7001"))
	f.Add([]byte("NLR1 ab 198.51.100.2:4000 203.0.113.10:7000"))
	f.Add([]byte("NLH1 ab"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseMessage(b)
		if err != nil {
			return
		}
		again, err := parseMessage(m.bytes())
		if err != nil || again != m {
			t.Fatalf("%q parsed to %+v, which does not round-trip (%+v, %v)", b, m, again, err)
		}
	})
}

// TestLoss checks that LossPercent drops packets at about the rate asked:
// 200 single-copy requests through a 20%-each-way router get about 64%
// answers. The bounds are over 7 standard deviations wide (nft's random
// drop cannot be seeded, so this is as exact as it can be).
func TestLoss(t *testing.T) {
	needLab(t)
	lab := New(t, Case{Mapping: EndpointIndependent, Filtering: EndpointIndependent, PortPreserve: true, LossPercent: 20})
	if _, err := lab.StartReflector(); err != nil {
		t.Fatal(err)
	}
	c, err := lab.ListenUDP(LAN, netip.AddrPortFrom(LANIP, 0))
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := range n {
		req := message{Kind: kindRequest, Nonce: strconv.Itoa(i)}.bytes()
		if _, err := c.WriteToUDPAddrPort(req, ReflectorAddr(PublicIP1, 0)); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	buf := make([]byte, 512)
	for len(seen) < n {
		// The lab answers in well under a millisecond; a second of silence
		// means the rest were dropped.
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		k, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			break
		}
		if m, err := parseMessage(buf[:k]); err == nil && m.Kind == kindReply {
			seen[m.Nonce] = true
		}
	}
	t.Logf("%d of %d answered with 20%% loss each way (expected about 64%%)", len(seen), n)
	if len(seen) < n*40/100 || len(seen) > n*85/100 {
		t.Errorf("%d of %d answered; 20%% loss each way should give 64%% (40..85%% accepted)", len(seen), n)
	}
}
