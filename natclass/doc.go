// Package natclass finds out how the NAT (or firewall) in front of a host
// treats UDP, in the terms of RFC 4787 and RFC 5780, and predicts whether two
// hosts can connect directly with ICE.
//
// It has two halves. Probe sends STUN Binding requests (pion/stun wire
// format) from fresh local sockets to one RFC 5780 server or to one or more
// plain STUN servers and records what happened as Observations: what was
// sent where, from which local port, what mapped address came back from
// which server address, and what went unanswered. Classify is a pure function
// from Observations to a Result: mapping and filtering behaviour,
// hairpinning, port preservation, whether there is a NAT at all, whether UDP
// is blocked, the mapping lifetime when measured, and the classic RFC 3489
// name. A Result carries its Observations and a reason for every decision,
// and says "unknown" rather than guessing when the server could not support
// a test.
//
// Predict combines two Results into "direct", "direct via peer-reflexive
// candidates" or "relay needed" by playing ICE connectivity checks between
// two modelled NATs.
//
// Report is the JSON document natprobe writes with --json; ParseReport reads
// it back. The schema is documented in docs/nat.md and only grows.
package natclass
