//go:build linux

package natlab

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/testenv"
)

// natDiscoveryVerdicts maps the verdict lines of coturn's
// turnutils_natdiscovery (4.6.1) to behaviours.
var natDiscoveryVerdicts = map[string]Behavior{
	"No NAT! (Endpoint Independent Mapping)":         EndpointIndependent,
	"NAT with Endpoint Independent Mapping!":         EndpointIndependent,
	"NAT with Address Dependent Mapping!":            AddressDependent,
	"NAT with Address and Port Dependent Mapping!":   AddressPortDependent,
	"NAT with Endpoint Independent Filtering!":       EndpointIndependent,
	"NAT with Address Dependent Filtering!":          AddressDependent,
	"NAT with Address and Port Dependent Filtering!": AddressPortDependent,
}

// natDiscoveryVerdict returns the verdict line of out that mentions kind
// ("Mapping" or "Filtering").
func natDiscoveryVerdict(out []byte, kind string) (Behavior, string) {
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if b, ok := natDiscoveryVerdicts[line]; ok && strings.Contains(line, kind) {
			return b, line
		}
	}
	return "", ""
}

// TestNatDiscovery cross-checks every lab case with an independent client,
// coturn's turnutils_natdiscovery, against coturn in RFC 5780 mode in the
// public namespace (asked on its primary address).
func TestNatDiscovery(t *testing.T) {
	needLab(t)
	testenv.NeedCommand(t, "turnserver", "coturn")
	testenv.NeedCommand(t, "turnutils_natdiscovery", "coturn")
	ForEachCase(t, Cases(), 8, func(t *testing.T, c Case) {
		lab := New(t, c)
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		if _, err := lab.StartCoturn(ctx, t.TempDir()); err != nil {
			t.Fatal(err)
		}
		run := func(flag string) []byte {
			// -L: with the local address known it can tell "no NAT".
			out, err := lab.Exec(ctx, LAN, "turnutils_natdiscovery", flag, "-L", LANIP.String(), PublicIP1.String())
			if err != nil && !c.UDPBlocked { // blocked: -H exits 255 ("Bad file descriptor")
				t.Errorf("turnutils_natdiscovery %s: %v", flag, err)
			}
			return out
		}
		mOut, fOut, hOut := run("-m"), run("-f"), run("-H")
		mapping, mLine := natDiscoveryVerdict(mOut, "Mapping")
		filtering, fLine := natDiscoveryVerdict(fOut, "Filtering")
		hairpin := strings.Contains(string(hOut), "maybe a successful hairpinning")
		noNAT := strings.Contains(string(mOut), "No NAT!")
		t.Logf("turnutils_natdiscovery: mapping %q, filtering %q, hairpin %t", mLine, fLine, hairpin)
		if c.UDPBlocked {
			if mLine != "" || fLine != "" || hairpin {
				t.Errorf("UDP blocked, but natdiscovery found %q / %q / hairpin %t", mLine, fLine, hairpin)
			}
			return
		}
		if noNAT != c.NoNAT {
			t.Errorf("no NAT: natdiscovery %t, case %t\n%s", noNAT, c.NoNAT, mOut)
		}
		if !c.NoNAT && mapping != c.Mapping {
			t.Errorf("mapping: natdiscovery %q, case %s\n%s", mLine, c.Mapping, mOut)
		}
		if filtering != c.Filtering {
			t.Errorf("filtering: natdiscovery %q, case %s\n%s", fLine, c.Filtering, fOut)
		}
		if !c.NoNAT && hairpin != c.Hairpin {
			t.Errorf("hairpin: natdiscovery %t, case %t\n%s", hairpin, c.Hairpin, hOut)
		}
	})
}
