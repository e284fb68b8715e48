package e2e

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
