package natclass

import (
	"net/netip"
)

// Test names an Exchange's purpose.
type Test string

const (
	// TestMapping is a Binding request from the mapping socket (the same
	// local port for all of them) to a server address: RFC 5780 mapping
	// tests I, II and III, or one request per plain server.
	TestMapping Test = "mapping"
	// TestFiltering is a Binding request with CHANGE-REQUEST from a fresh
	// socket to the RFC 5780 server's primary address (filtering tests II
	// and III).
	TestFiltering Test = "filtering"
	// TestHairpinBinding learns the mapped address of a hairpin socket.
	TestHairpinBinding Test = "hairpin-binding"
	// TestHairpin is a Binding request from one hairpin socket to the other
	// one's mapped address; answered means the other socket received it.
	TestHairpin Test = "hairpin"
	// TestLifetimeBinding creates the mapping whose lifetime is measured.
	TestLifetimeBinding Test = "lifetime-binding"
	// TestLifetime asks the server, after IdleSeconds, to answer to the
	// mapped port of a lifetime socket (RESPONSE-PORT) from a second socket;
	// answered means the mapping was still alive.
	TestLifetime Test = "lifetime"
	// TestReach is a Binding request to a server's address from a socket
	// connected to it: the only kind of socket that learns of an ICMP port
	// unreachable (Refused), so a closed server port is not mistaken for a
	// network that drops UDP.
	TestReach Test = "reach"
)

// Change is the CHANGE-REQUEST a Binding request carried.
type Change string

const (
	ChangeNone   Change = ""
	ChangePort   Change = "port"
	ChangeIPPort Change = "ip+port"
	ChangeIP     Change = "ip"
)

// Server is one STUN server the probe used.
type Server struct {
	// Name is the server as the user gave it (host:port).
	Name string `json:"name"`
	// Addr is the address the probe sent to.
	Addr netip.AddrPort `json:"addr"`
}

// Exchange is one STUN transaction (with its retransmissions) and what came
// of it.
type Exchange struct {
	Test Test `json:"test"`
	// Socket numbers the local socket the request was sent from (1-based);
	// the same number means the same local port.
	Socket int `json:"socket"`
	// Local is that socket's local address (the IP may be unspecified).
	Local netip.AddrPort `json:"local"`
	// Server indexes Observations.Servers (-1: not sent to a server, as in
	// hairpin tests).
	Server int `json:"server"`
	// To is where the request went.
	To netip.AddrPort `json:"to"`
	// Change is the CHANGE-REQUEST it carried.
	Change Change `json:"change,omitempty"`
	// ResponsePort is the RESPONSE-PORT it carried (0: none).
	ResponsePort uint16 `json:"response_port,omitempty"`
	// IdleSeconds is, for lifetime tests, how long the mapping sat idle.
	IdleSeconds float64 `json:"idle_s,omitempty"`
	// Transmissions counts the copies sent (1 + retransmissions).
	Transmissions int `json:"transmissions"`

	// Answered reports that a matching message (same transaction ID) came
	// back, or for hairpin tests arrived at the other socket.
	Answered bool `json:"answered"`
	// ReceivedOn is the socket that received it.
	ReceivedOn int `json:"received_on,omitempty"`
	// ElapsedMS is the time from the first transmission to the answer.
	ElapsedMS float64 `json:"elapsed_ms,omitempty"`
	// From is the answer's actual source address.
	From netip.AddrPort `json:"from,omitzero"`
	// Mapped is the XOR-MAPPED-ADDRESS (or MAPPED-ADDRESS) in the answer.
	Mapped netip.AddrPort `json:"mapped,omitzero"`
	// ResponseOrigin and OtherAddress are the RFC 5780 attributes of the
	// answer, when present.
	ResponseOrigin netip.AddrPort `json:"response_origin,omitzero"`
	OtherAddress   netip.AddrPort `json:"other_address,omitzero"`
	// Refused reports an ICMP port unreachable for a TestReach exchange:
	// the server host is reachable but nothing listens on the port.
	Refused bool `json:"refused,omitempty"`
	// ErrorCode is the STUN error code of an error response (0: success).
	ErrorCode int    `json:"error_code,omitempty"`
	Error     string `json:"error,omitempty"`
}

// ok reports whether e was answered with a usable success response.
func (e Exchange) ok() bool {
	return e.Answered && e.ErrorCode == 0 && e.Error == ""
}

// Observations are what a probe saw, the input of Classify.
type Observations struct {
	// Family is "ipv4" or "ipv6".
	Family string `json:"family"`
	// Servers are the servers the probe used, in the user's order.
	Servers []Server `json:"servers"`
	// RFC5780Server indexes Servers: the server whose OTHER-ADDRESS drove
	// the RFC 5780 tests (-1: none offered a usable one).
	RFC5780Server int `json:"rfc5780_server"`
	// LocalAddrs are the host's own addresses of the family, for telling
	// "no NAT" apart.
	LocalAddrs []netip.Addr `json:"local_addrs"`
	// Exchanges are every transaction, in the order they started.
	Exchanges []Exchange `json:"exchanges"`
	// Lifetime reports that the mapping lifetime was measured.
	Lifetime bool `json:"lifetime,omitempty"`
}
