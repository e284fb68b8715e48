//go:build linux

package natlab

// Want is what natprobe's JSON result (schema rtcsuite.natprobe/v1, see
// docs/nat.md) must say about a lab case, field by field, in that schema's
// words. It is written from RFC 4787/5780 and the documented schema, not
// from natclass's code, so that a classifier bug cannot hide in it.
type Want struct {
	Verdict          string // "complete", "udp-blocked"
	NAT              string // "yes", "no", "unknown"
	Mapping          string
	Filtering        string
	Hairpinning      string // "yes", "no", "unknown"
	PortPreservation string // "yes", "no", "unknown"
	Classic          string // RFC 3489 name
}

// Want returns the exact classification natprobe must give c when asked an
// RFC 5780 server in the public namespace.
func (c Case) Want() Want {
	if c.UDPBlocked {
		return Want{Verdict: "udp-blocked", NAT: "unknown", Mapping: "unknown", Filtering: "unknown",
			Hairpinning: "unknown", PortPreservation: "unknown", Classic: "blocked"}
	}
	w := Want{Verdict: "complete", Filtering: string(c.Filtering)}
	if c.NoNAT {
		// Without NAT the mapped address is the host's own: ports are
		// kept, and packets to it arrive (no NAT in the way: "hairpin" yes).
		w.NAT, w.Mapping, w.Hairpinning, w.PortPreservation = "no", string(EndpointIndependent), "yes", "yes"
		w.Classic = "symmetric UDP firewall"
		if c.Filtering == EndpointIndependent {
			w.Classic = "open internet"
		}
		return w
	}
	w.NAT, w.Mapping, w.PortPreservation = "yes", string(c.Mapping), "no"
	if c.PortPreserve {
		w.PortPreservation = "yes"
	}
	switch {
	case c.Hairpin:
		w.Hairpinning = "yes"
	case c.Mapping == EndpointIndependent || c.Filtering == EndpointIndependent:
		w.Hairpinning = "no"
	default:
		// Nothing comes back, but an endpoint-dependent mapping behind an
		// endpoint-dependent filter could be the cause rather than a lack
		// of hairpinning: a careful classifier says unknown.
		w.Hairpinning = "unknown"
	}
	switch {
	case c.Mapping != EndpointIndependent:
		w.Classic = "symmetric"
	case c.Filtering == EndpointIndependent:
		w.Classic = "full cone"
	case c.Filtering == AddressDependent:
		w.Classic = "restricted cone"
	default:
		w.Classic = "port-restricted cone"
	}
	return w
}

// Want6 is what natprobe -6 must say on a Pair side with case c: IPv6 is
// not translated, so "no NAT" with the firewall's filtering (the case's),
// or UDP blocked.
func (c Case) Want6() Want {
	if c.UDPBlocked {
		return c.Want()
	}
	w := Want{Verdict: "complete", NAT: "no", Mapping: string(EndpointIndependent), Filtering: string(c.Filtering),
		Hairpinning: "yes", PortPreservation: "yes", Classic: "symmetric UDP firewall"}
	if c.Filtering == EndpointIndependent {
		w.Classic = "open internet"
	}
	return w
}
