package natclass

import (
	"fmt"
	"strings"
	"sync"
)

// Outcome is Predict's answer.
type Outcome string

const (
	// OutcomeDirect: hole punching between the server-reflexive candidates
	// works from either side.
	OutcomeDirect Outcome = "direct"
	// OutcomePeerReflexive: a direct path exists only because ICE learns
	// the far side's real port from its incoming checks (a peer-reflexive
	// candidate).
	OutcomePeerReflexive Outcome = "direct via peer-reflexive candidates"
	// OutcomeRelay: no direct path; a TURN relay is needed.
	OutcomeRelay Outcome = "relay needed"
)

// Prediction is Predict's result.
type Prediction struct {
	Outcome Outcome `json:"outcome"`
	// Reason explains the outcome in plain words.
	Reason string `json:"reason"`
	// Certain is false when unknown behaviours left several outcomes
	// possible; Outcome is then the worst of them and BestCase the best.
	Certain bool `json:"certain"`
	// BestCase is set only when Certain is false.
	BestCase Outcome `json:"best_case,omitempty"`
}

func rank(o Outcome) int {
	switch o {
	case OutcomeDirect:
		return 0
	case OutcomePeerReflexive:
		return 1
	}
	return 2
}

// Predict says whether two hosts with results a and b can connect directly
// with ICE (UDP). It plays ICE connectivity checks between two modelled NATs
// with the measured behaviours; where a behaviour is unknown it tries every
// possibility and reports the worst, with Certain false.
func Predict(a, b Result) Prediction {
	if a.UDPBlocked || b.UDPBlocked {
		who := "side a"
		switch {
		case a.UDPBlocked && b.UDPBlocked:
			who = "both sides"
		case b.UDPBlocked:
			who = "side b"
		}
		return Prediction{Outcome: OutcomeRelay, Certain: true,
			Reason: fmt.Sprintf("UDP is blocked for %s: only a TURN relay reached over TCP or TLS can carry the media.", who)}
	}
	ma, fa := possible(a.Mapping, true), possible(a.Filtering, false)
	mb, fb := possible(b.Mapping, true), possible(b.Filtering, false)
	worst, best := OutcomeDirect, OutcomeRelay
	var worstCase [4]Behavior
	for _, x := range ma {
		for _, y := range fa {
			for _, z := range mb {
				for _, w := range fb {
					o := simulate(natModel{x, y}, natModel{z, w})
					if rank(o) >= rank(worst) {
						if rank(o) > rank(worst) || worstCase[0] == "" {
							worstCase = [4]Behavior{x, y, z, w}
						}
						worst = o
					}
					if rank(o) < rank(best) {
						best = o
					}
				}
			}
		}
	}
	p := Prediction{Outcome: worst, Certain: worst == best}
	if !p.Certain {
		p.BestCase = best
	}
	p.Reason = explain(worst, natModel{worstCase[0], worstCase[1]}, natModel{worstCase[2], worstCase[3]}, describePair(a, b))
	if !p.Certain {
		var unknown []string
		for _, u := range []struct {
			side string
			what string
			v    Behavior
		}{{"a", "mapping", a.Mapping}, {"a", "filtering", a.Filtering}, {"b", "mapping", b.Mapping}, {"b", "filtering", b.Filtering}} {
			if len(possible(u.v, u.what == "mapping")) > 1 {
				unknown = append(unknown, fmt.Sprintf("%s's %s (%s)", u.side, u.what, u.v))
			}
		}
		p.Reason = fmt.Sprintf("Not certain: %s could be anything from %q to %q; assuming the worst case (a: %s mapping, %s filtering; b: %s mapping, %s filtering). %s",
			strings.Join(unknown, ", "), best, worst, worstCase[0], worstCase[1], worstCase[2], worstCase[3], p.Reason)
	}
	if a.PublicAddr.IsValid() && b.PublicAddr.IsValid() && a.PublicAddr.Addr() == b.PublicAddr.Addr() {
		p.Reason += fmt.Sprintf(" Both sides share the public IP %v: if they are on the same LAN their host candidates connect directly; otherwise the path needs hairpinning (a: %s, b: %s).",
			a.PublicAddr.Addr(), a.Hairpinning, b.Hairpinning)
	}
	return p
}

// possible lists the concrete behaviours v may stand for.
func possible(v Behavior, mapping bool) []Behavior {
	switch v {
	case EndpointIndependent, AddressDependent, AddressAndPortDependent:
		return []Behavior{v}
	case EndpointDependent:
		if mapping {
			return []Behavior{AddressDependent, AddressAndPortDependent}
		}
	}
	return []Behavior{EndpointIndependent, AddressDependent, AddressAndPortDependent}
}

// describePair names both sides' behaviours as measured: an unknown stays
// "unknown" even where the simulation had to pick a value for it.
func describePair(a, b Result) string {
	return fmt.Sprintf("(a: %s mapping, %s filtering; b: %s mapping, %s filtering)", a.Mapping, a.Filtering, b.Mapping, b.Filtering)
}

// explain says why the modelled pair a, b has outcome o; desc names the
// measured behaviours.
func explain(o Outcome, a, b natModel, desc string) string {
	switch o {
	case OutcomeDirect:
		return "Both sides keep one public address per local port (endpoint-independent mapping), so the server-reflexive candidates they exchange are the addresses the far side sees, and each side's checks open its own filter for the other's: hole punching works from either side " + desc + "."
	case OutcomePeerReflexive:
		hard := "a"
		if a.m == EndpointIndependent {
			hard = "b"
		}
		return fmt.Sprintf("Side %s's mapping depends on the destination, so its checks arrive from a port it never advertised; the far side's filtering lets them in and ICE learns that port from the incoming check (a peer-reflexive candidate) and answers there %s.", hard, desc)
	}
	switch {
	case a.m != EndpointIndependent && b.m != EndpointIndependent:
		return "Both mappings depend on the destination, so neither side's checks arrive from an address the other has sent to or can predict, and the filters drop them: a TURN relay is needed " + desc + "."
	default:
		hard, other := "a", "b"
		if a.m == EndpointIndependent {
			hard, other = "b", "a"
		}
		return fmt.Sprintf("Side %s's mapping depends on the destination, so its checks arrive from a new port, and side %s's filtering only admits the exact address it sent to; side %s's own filter drops what %s sends to its advertised address: a TURN relay is needed %s.",
			hard, other, hard, other, desc)
	}
}

// natModel is one side: its mapping and filtering behaviour. "No NAT" is
// endpoint-independent mapping with the firewall's filtering.
type natModel struct{ m, f Behavior }

// endpoint is an address in the simulation: ip 1 is side a's public IP, 2 is
// side b's, 3 the STUN server's.
type endpoint struct{ ip, port int }

type simNAT struct {
	model natModel
	ip    int
	next  int
	ports map[endpoint]int   // mapping key -> public port
	sent  map[int][]endpoint // public port -> destinations sent through it
}

func newSimNAT(m natModel, ip int) *simNAT {
	return &simNAT{model: m, ip: ip, next: 40000, ports: map[endpoint]int{}, sent: map[int][]endpoint{}}
}

// out translates a packet to dst and returns its public source.
func (n *simNAT) out(dst endpoint) endpoint {
	key := dst
	switch n.model.m {
	case EndpointIndependent:
		key = endpoint{}
	case AddressDependent:
		key = endpoint{ip: dst.ip}
	}
	p, ok := n.ports[key]
	if !ok {
		n.next++
		p = n.next
		n.ports[key] = p
	}
	n.sent[p] = append(n.sent[p], dst)
	return endpoint{n.ip, p}
}

// in reports whether a packet from src to public port may enter.
func (n *simNAT) in(port int, src endpoint) bool {
	dsts, ok := n.sent[port]
	if !ok {
		return false
	}
	for _, d := range dsts {
		switch n.model.f {
		case EndpointIndependent:
			return true
		case AddressDependent:
			if d.ip == src.ip {
				return true
			}
		default:
			if d == src {
				return true
			}
		}
	}
	return false
}

type simPacket struct {
	src, dst endpoint
	request  bool
	id       int
}

type simAgent struct {
	nat     *simNAT
	remotes []endpoint
	valid   bool
	pending map[int]endpoint // check id -> remote it went to
}

// concrete lists the behaviours the simulation knows, in table order.
var concrete = [3]Behavior{EndpointIndependent, AddressDependent, AddressAndPortDependent}

func index(b Behavior) int {
	for i, c := range concrete {
		if c == b {
			return i
		}
	}
	return 2
}

// outcomes is the simulation's result for every pair of concrete models,
// computed once: [a.m][a.f][b.m][b.f].
var outcomes = sync.OnceValue(func() (t [3][3][3][3]Outcome) {
	for i, am := range concrete {
		for j, af := range concrete {
			for k, bm := range concrete {
				for l, bf := range concrete {
					t[i][j][k][l] = runSimulation(natModel{am, af}, natModel{bm, bf})
				}
			}
		}
	}
	return t
})

// simulate returns the outcome of ICE between a and b.
func simulate(a, b natModel) Outcome {
	return outcomes()[index(a.m)][index(a.f)][index(b.m)][index(b.f)]
}

// runSimulation plays ICE between a and b twice: without peer-reflexive
// learning (direct) and with it.
func runSimulation(a, b natModel) Outcome {
	if runICE(a, b, false) {
		return OutcomeDirect
	}
	if runICE(a, b, true) {
		return OutcomePeerReflexive
	}
	return OutcomeRelay
}

func runICE(ma, mb natModel, learn bool) bool {
	stunServer := endpoint{3, 3478}
	agents := [2]*simAgent{
		{nat: newSimNAT(ma, 1), pending: map[int]endpoint{}},
		{nat: newSimNAT(mb, 2), pending: map[int]endpoint{}},
	}
	// Gather server-reflexive candidates and exchange them.
	srflx := [2]endpoint{agents[0].nat.out(stunServer), agents[1].nat.out(stunServer)}
	agents[0].remotes = []endpoint{srflx[1]}
	agents[1].remotes = []endpoint{srflx[0]}

	nextID := 0
	var queue []simPacket
	send := func(from int, dst endpoint, request bool, id int) {
		src := agents[from].nat.out(dst)
		queue = append(queue, simPacket{src: src, dst: dst, request: request, id: id})
	}
	check := func(from int, dst endpoint) {
		nextID++
		agents[from].pending[nextID] = dst
		send(from, dst, true, nextID)
	}
	deliver := func() {
		for steps := 0; len(queue) > 0 && steps < 2000; steps++ {
			p := queue[0]
			queue = queue[1:]
			to := p.dst.ip - 1
			if to < 0 || to > 1 || !agents[to].nat.in(p.dst.port, p.src) {
				continue
			}
			ag := agents[to]
			if p.request {
				send(to, p.src, false, p.id)
				known := false
				for _, r := range ag.remotes {
					if r == p.src {
						known = true
					}
				}
				if known {
					check(to, p.src) // triggered check
				} else if learn && len(ag.remotes) < 16 {
					ag.remotes = append(ag.remotes, p.src)
					check(to, p.src)
				}
				continue
			}
			// A response is valid only from where the check went.
			if dst, ok := ag.pending[p.id]; ok && dst == p.src {
				ag.valid = true
			}
		}
		queue = queue[:0]
	}
	for round := 0; round < 4; round++ {
		for side := range 2 {
			for _, r := range agents[side].remotes {
				check(side, r)
			}
			deliver()
		}
		if agents[0].valid && agents[1].valid {
			return true
		}
	}
	return false
}
