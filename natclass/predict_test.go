package natclass

import (
	"net/netip"
	"strings"
	"testing"
)

func res(m, f Behavior) Result {
	return Result{Family: "ipv4", Verdict: VerdictComplete, NAT: Yes, Mapping: m, Filtering: f, Hairpinning: Unknown, PortPreservation: Unknown}
}

func TestPredict(t *testing.T) {
	t.Parallel()
	const (
		EI  = EndpointIndependent
		AD  = AddressDependent
		APD = AddressAndPortDependent
		ED  = EndpointDependent
		U   = BehaviorUnknown
	)
	blocked := Result{Family: "ipv4", Verdict: VerdictUDPBlocked, UDPBlocked: true, Mapping: U, Filtering: U}
	for _, tc := range []struct {
		name    string
		a, b    Result
		want    Outcome
		certain bool
		reason  string
	}{
		{"full cone both", res(EI, EI), res(EI, EI), OutcomeDirect, true, "hole punching works"},
		{"port-restricted both", res(EI, APD), res(EI, APD), OutcomeDirect, true, "either side"},
		{"restricted vs port-restricted", res(EI, AD), res(EI, APD), OutcomeDirect, true, ""},
		{"symmetric vs full cone", res(APD, APD), res(EI, EI), OutcomePeerReflexive, true, "peer-reflexive"},
		{"full cone vs symmetric", res(EI, EI), res(APD, APD), OutcomePeerReflexive, true, "Side b"},
		{"symmetric vs restricted cone", res(APD, APD), res(EI, AD), OutcomePeerReflexive, true, ""},
		{"symmetric vs port-restricted", res(APD, APD), res(EI, APD), OutcomeRelay, true, "TURN relay is needed"},
		{"port-restricted vs address-dependent mapping", res(EI, APD), res(AD, AD), OutcomeRelay, true, ""},
		{"symmetric both", res(APD, APD), res(APD, APD), OutcomeRelay, true, "Both mappings depend"},
		{"address-dependent both, open filters", res(AD, EI), res(AD, EI), OutcomePeerReflexive, true, ""},
		{"address-dependent both, address filters", res(AD, AD), res(AD, AD), OutcomeRelay, true, ""},
		{"symmetric with open filter both", res(APD, EI), res(APD, EI), OutcomeRelay, true, ""},
		{"no NAT firewall vs port-restricted", Result{Family: "ipv4", NAT: No, Mapping: EI, Filtering: APD}, res(EI, APD), OutcomeDirect, true, ""},
		{"blocked", blocked, res(EI, EI), OutcomeRelay, true, "UDP is blocked for side a"},
		{"blocked b", res(EI, EI), blocked, OutcomeRelay, true, "side b"},
		{"blocked both", blocked, blocked, OutcomeRelay, true, "both sides"},
		// Unknown filtering does not matter when both map independently.
		{"cones, filtering unknown", res(EI, U), res(EI, U), OutcomeDirect, true, ""},
		{"endpoint-dependent vs full cone", res(ED, U), res(EI, EI), OutcomePeerReflexive, true, ""},
		{"endpoint-dependent vs port-restricted", res(ED, U), res(EI, APD), OutcomeRelay, true, ""},
		{"endpoint-dependent vs restricted", res(ED, U), res(EI, AD), OutcomePeerReflexive, true, ""},
		{"endpoint-dependent vs address-dependent open", res(ED, U), res(AD, EI), OutcomeRelay, false, "Not certain"},
		{"endpoint-dependent open vs full cone", res(ED, EI), res(EI, EI), OutcomePeerReflexive, true, ""},
		{"all unknown", res(U, U), res(U, U), OutcomeRelay, false, "assuming the worst"},
		{"cone with unknown filtering vs symmetric", res(EI, U), res(APD, APD), OutcomeRelay, false, "a's filtering"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Predict(tc.a, tc.b)
			if p.Outcome != tc.want || p.Certain != tc.certain || !strings.Contains(p.Reason, tc.reason) {
				t.Fatalf("got %q certain=%v reason %q; want %q certain=%v reason containing %q", p.Outcome, p.Certain, p.Reason, tc.want, tc.certain, tc.reason)
			}
		})
	}
}

func TestPredictSymmetric(t *testing.T) {
	t.Parallel()
	bs := []Behavior{EndpointIndependent, AddressDependent, AddressAndPortDependent}
	for _, m1 := range bs {
		for _, f1 := range bs {
			for _, m2 := range bs {
				for _, f2 := range bs {
					ab, ba := Predict(res(m1, f1), res(m2, f2)), Predict(res(m2, f2), res(m1, f1))
					if ab.Outcome != ba.Outcome {
						t.Errorf("%s/%s vs %s/%s: %s one way, %s the other", m1, f1, m2, f2, ab.Outcome, ba.Outcome)
					}
				}
			}
		}
	}
}

func TestPredictSharedPublicIP(t *testing.T) {
	t.Parallel()
	a, b := res(EndpointIndependent, AddressAndPortDependent), res(EndpointIndependent, AddressAndPortDependent)
	a.PublicAddr = netip.MustParseAddrPort("203.0.113.5:40000")
	b.PublicAddr = netip.MustParseAddrPort("203.0.113.5:40001")
	a.Hairpinning = No
	if p := Predict(a, b); !strings.Contains(p.Reason, "share the public IP 203.0.113.5") || !strings.Contains(p.Reason, "a: no") {
		t.Fatalf("reason %q", p.Reason)
	}
}

func TestPredictReports(t *testing.T) {
	t.Parallel()
	v4a, v4b := res(AddressAndPortDependent, AddressAndPortDependent), res(EndpointIndependent, AddressAndPortDependent)
	v6 := Result{Family: "ipv6", NAT: No, Mapping: EndpointIndependent, Filtering: AddressAndPortDependent}
	mine := Report{Results: []Result{v4a, v6}}
	theirs := Report{Results: []Result{v4b, v6}}
	p := PredictReports(mine, theirs)
	if p.Outcome != OutcomeDirect || len(p.Families) != 2 || p.Families[0].Outcome != OutcomeRelay || p.Families[1].Outcome != OutcomeDirect {
		t.Fatalf("got %+v", p)
	}
	if p := PredictReports(Report{Results: []Result{v6}}, Report{Results: []Result{v4a}}); p.Outcome != OutcomeRelay || len(p.Families) != 0 {
		t.Fatalf("no common family: %+v", p)
	}
}
