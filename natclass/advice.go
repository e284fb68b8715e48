package natclass

import (
	"fmt"
	"strings"
)

// PeerClass is one kind of network a peer may sit behind. The advice natprobe
// prints, `natprobe predict`, docs/nat.md's table and the measured traversal
// matrix (docs/traversal.md) all use these classes and Predict, so they
// cannot contradict each other.
type PeerClass struct {
	// Key is a short stable name ("eim-apdf").
	Key string
	// Name is what users call it ("port-restricted cone").
	Name string
	// Result is the classification a host in this class gets.
	Result Result
}

func classResult(nat Answer, m, f Behavior) Result {
	return Result{Family: "ipv4", Verdict: VerdictComplete, NAT: nat, Mapping: m, Filtering: f,
		Hairpinning: Unknown, PortPreservation: Unknown, Classic: classicName(nat, m, f)}
}

// PeerClasses are the classes the advice names, from the easiest to the
// hardest: the cases of RFC 4787 that home, mobile and corporate networks
// show, and a firewall that drops UDP.
var PeerClasses = []PeerClass{
	{"nonat", "no NAT", classResult(No, EndpointIndependent, EndpointIndependent)},
	{"eim-eif", "full cone (EIM+EIF)", classResult(Yes, EndpointIndependent, EndpointIndependent)},
	{"eim-adf", "restricted cone (EIM+ADF)", classResult(Yes, EndpointIndependent, AddressDependent)},
	{"eim-apdf", "port-restricted cone (EIM+APDF)", classResult(Yes, EndpointIndependent, AddressAndPortDependent)},
	{"adm-adf", "address-dependent NAT (ADM+ADF)", classResult(Yes, AddressDependent, AddressDependent)},
	{"apdm-apdf", "symmetric (APDM+APDF)", classResult(Yes, AddressAndPortDependent, AddressAndPortDependent)},
	{"blocked", "UDP blocked", Result{Family: "ipv4", Verdict: VerdictUDPBlocked, UDPBlocked: true, NAT: Unknown,
		Mapping: BehaviorUnknown, Filtering: BehaviorUnknown, Hairpinning: Unknown, PortPreservation: Unknown, Classic: ClassicBlocked}},
}

// PeerAdvice is the predicted outcome between a host and one peer class.
type PeerAdvice struct {
	Class      PeerClass
	Prediction Prediction
}

// Advise predicts the outcome between a host classified as r and a peer of
// every PeerClass.
func Advise(r Result) []PeerAdvice {
	out := make([]PeerAdvice, len(PeerClasses))
	for i, c := range PeerClasses {
		out[i] = PeerAdvice{Class: c, Prediction: Predict(r, c.Result)}
	}
	return out
}

// AdviceText says in a few sentences which peers r's host reaches directly
// and which need a relay: Advise grouped by outcome. Outcomes that depend on
// an unknown behaviour are listed as such, never as the worst or best case.
func AdviceText(r Result) string {
	groups := map[string][]string{}
	var order []string
	for _, a := range Advise(r) {
		key := string(a.Prediction.Outcome)
		if !a.Prediction.Certain {
			key = "depends"
		}
		if a.Class.Key == "blocked" && key == string(OutcomeRelay) {
			key = "tcp"
		}
		if _, ok := groups[key]; !ok {
			order = append(order, key)
		}
		groups[key] = append(groups[key], a.Class.Name)
	}
	var parts []string
	for _, k := range order {
		names := strings.Join(groups[k], ", ")
		switch k {
		case string(OutcomeDirect):
			parts = append(parts, "direct with STUN alone for peers behind: "+names)
		case string(OutcomePeerReflexive):
			parts = append(parts, "direct via peer-reflexive candidates (no relay, if ICE keeps checking) with "+names)
		case string(OutcomeRelay):
			parts = append(parts, "a TURN relay is needed with "+names)
		case "tcp":
			parts = append(parts, "a TURN relay over TCP or TLS is needed with "+names)
		case "depends":
			parts = append(parts, "unknown (it depends on the behaviour this probe could not decide: plan for a TURN relay) with "+names)
		}
	}
	s := strings.Join(parts, "; ")
	return strings.ToUpper(s[:1]) + s[1:] + "."
}

// OutcomeShort is the one-word form used in tables: "direct", "prflx",
// "relay", or "relay?" for an uncertain worst case.
func OutcomeShort(p Prediction) string {
	s := "relay"
	switch p.Outcome {
	case OutcomeDirect:
		s = "direct"
	case OutcomePeerReflexive:
		s = "prflx"
	}
	if !p.Certain {
		s = "depends (" + s + " at worst)"
	}
	return s
}

// AdviceTable is the markdown table of Predict over every pair of
// PeerClasses, as docs/nat.md shows it.
func AdviceTable() string {
	var b strings.Builder
	b.WriteString("| this host \\ peer |")
	for _, c := range PeerClasses {
		fmt.Fprintf(&b, " %s |", c.Key)
	}
	b.WriteString("\n|---|")
	for range PeerClasses {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, a := range PeerClasses {
		fmt.Fprintf(&b, "| %s (%s) |", a.Key, a.Name)
		for _, c := range PeerClasses {
			fmt.Fprintf(&b, " %s |", OutcomeShort(Predict(a.Result, c.Result)))
		}
		b.WriteString("\n")
	}
	return b.String()
}
