//go:build linux

package e2e

// natprobe in the single-NAT lab beyond classification: the mapping
// lifetime against a known NAT timeout, and a closed server port told
// apart from a network that drops UDP.

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/rtcsuite/rtcsuite/e2e/natlab"
	"github.com/rtcsuite/rtcsuite/internal/testenv"
)

// TestNATLabLifetime checks natprobe --lifetime against a NAT whose mapping
// timeout is known: the lab router's conntrack forgets idle UDP flows after
// 8 s (EIM + APDF, so nothing but conntrack lets an answer back in). With
// idle steps of 5, 10 and 20 s, natprobe must report the mapping alive
// after 5 s and gone after 10 s.
func TestNATLabLifetime(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ip", "iproute2")
	testenv.NeedCommand(t, "nft", "nftables")
	dir := t.TempDir()
	natprobe := natlab_build(t, dir, "natprobe")
	turnd := natlab_build(t, dir, "turnd")
	lab := natlab.New(t, natlab.Case{Mapping: natlab.EndpointIndependent, Filtering: natlab.AddressPortDependent, PortPreserve: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, kv := range []string{"net.netfilter.nf_conntrack_udp_timeout=8", "net.netfilter.nf_conntrack_udp_timeout_stream=8"} {
		if out, err := lab.Exec(ctx, natlab.Router, "sysctl", "-q", "-w", kv); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	if _, err := lab.StartTurnd(ctx, turnd, "--rfc5780-rate=-1", "--unauth-rate=-1"); err != nil {
		t.Fatal(err)
	}
	rep, raw, err := natlab_probeArgs(ctx, lab, natprobe, netip.AddrPortFrom(natlab.PublicIP1, natlab.TurndPort), "--lifetime", "--lifetime-max", "20s")
	if err != nil {
		t.Fatalf("natprobe: %v\n%s", err, raw)
	}
	r, ok := rep.Result("ipv4")
	if !ok || r.MappingLifetime == nil {
		t.Fatalf("no mapping lifetime measured: %+v\nreasons %q", r.MappingLifetime, r.Reasons)
	}
	if lt := r.MappingLifetime; lt.AliveS != 5 || lt.ExpiredS != 10 {
		t.Fatalf("mapping lifetime alive %gs, expired %gs; want alive 5s, gone after 10s (conntrack timeout 8s)\nreasons %q", lt.AliveS, lt.ExpiredS, r.Reasons)
	}
}

// TestNATLabServerPortClosed: behind a NAT, a server address whose port is
// closed (the host answers ICMP port unreachable, which the NAT translates
// back) is "server port closed", not "UDP blocked"; behind a firewall that
// drops UDP, silence stays "UDP blocked".
func TestNATLabServerPortClosed(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ip", "iproute2")
	testenv.NeedCommand(t, "nft", "nftables")
	natprobe := natlab_build(t, t.TempDir(), "natprobe")
	for _, tc := range []struct {
		c    natlab.Case
		want string
	}{
		{natlab.Case{Mapping: natlab.AddressPortDependent, Filtering: natlab.AddressPortDependent}, "server-port-closed"},
		{natlab.Case{Mapping: natlab.EndpointIndependent, Filtering: natlab.AddressPortDependent, PortPreserve: true, UDPBlocked: true}, "udp-blocked"},
	} {
		t.Run(tc.c.Name(), func(t *testing.T) {
			lab := natlab.New(t, tc.c)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			// Nothing listens on this port in the public namespace.
			rep, raw, err := natlab_probe(ctx, lab, natprobe, netip.AddrPortFrom(natlab.PublicIP1, 3499))
			if err != nil {
				t.Fatalf("natprobe: %v\n%s", err, raw)
			}
			r, _ := rep.Result("ipv4")
			if string(r.Verdict) != tc.want || r.Mapping != "unknown" || r.Filtering != "unknown" {
				t.Fatalf("verdict %s (mapping %s, filtering %s), want %s\nreasons %q", r.Verdict, r.Mapping, r.Filtering, tc.want, r.Reasons)
			}
		})
	}
}
