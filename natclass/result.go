package natclass

import "net/netip"

// Behavior is a mapping or filtering behaviour (RFC 4787 sections 4.1, 5).
type Behavior string

const (
	// EndpointIndependent: one public address per local port, whatever the
	// destination (mapping); anyone may send to it (filtering).
	EndpointIndependent Behavior = "endpoint-independent"
	// AddressDependent: a new public port per destination IP (mapping); only
	// IPs the host has sent to may send back, from any port (filtering).
	AddressDependent Behavior = "address-dependent"
	// AddressAndPortDependent: a new public port per destination IP and port
	// (mapping); only exactly the IP:port the host sent to may send back
	// (filtering).
	AddressAndPortDependent Behavior = "address-and-port-dependent"
	// EndpointDependent (mapping only): address-dependent or
	// address-and-port-dependent, undecided because the servers did not
	// offer two ports on one IP (plain STUN servers).
	EndpointDependent Behavior = "endpoint-dependent"
	// BehaviorUnknown: the observations cannot decide (see Result.Reasons).
	BehaviorUnknown Behavior = "unknown"
)

// Answer is a yes/no finding that may be undecided.
type Answer string

const (
	Yes     Answer = "yes"
	No      Answer = "no"
	Unknown Answer = "unknown"
)

// Verdict says how far the classification got.
type Verdict string

const (
	// VerdictComplete: mapping and filtering are both decided.
	VerdictComplete Verdict = "complete"
	// VerdictPartial: something is unknown (a plain server, lost answers,
	// contradictory evidence); Reasons say what and why.
	VerdictPartial Verdict = "partial"
	// VerdictUDPBlocked: no server answered at all.
	VerdictUDPBlocked Verdict = "udp-blocked"
	// VerdictMisconfigured: the RFC 5780 server gave answers that contradict
	// its own attributes (bad OTHER-ADDRESS, wrong RESPONSE-ORIGIN, ignored
	// CHANGE-REQUEST); Problems say which. What depends on it is unknown.
	VerdictMisconfigured Verdict = "server-misconfigured"
	// VerdictServerPortClosed: no server answered, and at least one
	// refused with ICMP port unreachable: the network carries UDP to it but
	// nothing listens on the port. Nothing about the NAT is known.
	VerdictServerPortClosed Verdict = "server-port-closed"
)

// Classic RFC 3489 names.
const (
	ClassicOpenInternet         = "open internet"
	ClassicFullCone             = "full cone"
	ClassicRestrictedCone       = "restricted cone"
	ClassicPortRestrictedCone   = "port-restricted cone"
	ClassicSymmetric            = "symmetric"
	ClassicSymmetricUDPFirewall = "symmetric UDP firewall"
	ClassicBlocked              = "blocked"
	ClassicUnknown              = "unknown"
)

// Lifetime is the measured mapping lifetime: the mapping survived AliveS
// seconds of idleness and was gone after ExpiredS (0: it never expired
// within the longest idle time tried).
type Lifetime struct {
	AliveS   float64 `json:"alive_s"`
	ExpiredS float64 `json:"expired_s,omitempty"`
}

// Result is a classification and the evidence behind it.
type Result struct {
	// Family is "ipv4" or "ipv6".
	Family  string  `json:"family"`
	Verdict Verdict `json:"verdict"`
	// UDPBlocked reports that no server answered any request.
	UDPBlocked bool `json:"udp_blocked"`
	// ServerPortClosed reports that no server answered and at least one
	// refused with ICMP port unreachable (verdict server-port-closed).
	ServerPortClosed bool `json:"server_port_closed,omitempty"`
	// NAT is "no" when the mapped address equals a local address.
	NAT Answer `json:"nat"`
	// PublicAddr is the first mapped (server-reflexive) address seen.
	PublicAddr       netip.AddrPort `json:"public_addr,omitzero"`
	Mapping          Behavior       `json:"mapping"`
	Filtering        Behavior       `json:"filtering"`
	Hairpinning      Answer         `json:"hairpinning"`
	PortPreservation Answer         `json:"port_preservation"`
	// MappingLifetime is set when it was measured successfully.
	MappingLifetime *Lifetime `json:"mapping_lifetime,omitempty"`
	// Classic is the RFC 3489 name (Classic* constants).
	Classic string `json:"classic"`
	// WebRTC says in one sentence what this means for peer connections.
	WebRTC string `json:"webrtc"`
	// Reasons explain each decision from the observations.
	Reasons []string `json:"reasons"`
	// Problems are server misconfigurations and contradictions.
	Problems []string `json:"problems,omitempty"`
	// Observations are the evidence.
	Observations Observations `json:"observations"`
}
