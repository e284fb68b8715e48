//go:build linux

package natlab

import (
	"fmt"
	"net/netip"
	"strings"
)

// Interface names inside the lab namespaces (they live only there, so they
// never collide with the host's or another lab's).
const (
	pubIf  = "eth0" // public namespace, towards the router
	wanIf  = "wan0" // router, towards the public namespace
	lanIf  = "lan0" // router, towards the LAN host
	hostIf = "eth0" // LAN host, towards the router
)

// The LAN host's ephemeral ports, set by sysctl so that the XOR mappings
// below can never produce the inside port again (which would look like port
// preservation) or port 0.
const (
	lanPortMin = 40000
	lanPortMax = 60999
)

// mapTimeout is how long a recorded mapping stays usable for unsolicited
// inbound packets without outbound traffic refreshing it. Longer than the
// UDP conntrack timeouts (30 s unreplied, 120 s assured): the lab lives for
// one test.
const mapTimeout = "300s"

// Ruleset returns the nftables ruleset the router of case c runs. It is
// plain text for `nft -f`, one table that the lab owns.
//
// How each behaviour is made:
//
//   - Endpoint-independent mapping, port preserved: snat to the external
//     address without a port (conntrack keeps the source port when it is
//     free, and with one inside host it always is).
//   - Endpoint-independent mapping, port not preserved: snat to the
//     external port = inside port XOR 0x1f00, whatever the destination.
//   - Address-dependent mapping: snat to inside port XOR a constant chosen
//     by the low four bits of the destination address (16 rules). Distinct
//     constants make distinct ports for the lab's public addresses (.10,
//     .11, .20 differ in those bits), and XOR is a bijection, so no two
//     inside ports ever collide on one destination. Deterministic: no hash,
//     no rare collision.
//   - Address-and-port-dependent mapping: snat fully-random; every new
//     5-tuple draws a fresh external port (chance of two equal draws about
//     1 in 64,000).
//   - Filtering: conntrack alone passes only replies from the exact remote
//     address and port (address-and-port-dependent). For the other two, a
//     chain after source NAT records every outbound flow in a dynamic map
//     (external port -> inside address.port; or remote address . external
//     port -> inside address.port) and the prerouting chain DNATs
//     unsolicited inbound packets through it.
//   - Unsolicited packets that match nothing are dropped on input (a real
//     NAT sends no ICMP port unreachable back).
//   - Hairpinning: packets from the LAN to the external address are DNATed
//     through the port map and source-NATed with the case's mapping rules,
//     so the receiver sees the sender's external address.
//   - UDP blocked and loss: rules in the forward chain.
func Ruleset(c Case) string { return ruleset(c, ExternalIP, "natlab") }

// ruleset is Ruleset for a router whose outside address is ext, in an
// nftables table of that name.
func ruleset(c Case, ext netip.Addr, table string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("table ip %s {", table)
	w("\tmap byport { type inet_service : ipv4_addr . inet_service; flags dynamic, timeout; timeout %s; }", mapTimeout)
	w("\tmap byaddr { type ipv4_addr . inet_service : ipv4_addr . inet_service; flags dynamic, timeout; timeout %s; }", mapTimeout)

	w("\tchain prerouting {")
	w("\t\ttype nat hook prerouting priority dstnat; policy accept;")
	if !c.NoNAT {
		switch c.Filtering {
		case EndpointIndependent:
			w("\t\tiifname %q ip daddr %s meta l4proto udp dnat ip to udp dport map @byport", wanIf, ext)
		case AddressDependent:
			w("\t\tiifname %q ip daddr %s meta l4proto udp dnat ip to ip saddr . udp dport map @byaddr", wanIf, ext)
		}
		if c.Hairpin {
			w("\t\tiifname %q ip daddr %s meta l4proto udp dnat ip to udp dport map @byport", lanIf, ext)
		}
	}
	w("\t}")

	w("\tchain postrouting {")
	w("\t\ttype nat hook postrouting priority srcnat; policy accept;")
	if !c.NoNAT {
		if c.Hairpin {
			mappingRules(w, c, ext, fmt.Sprintf("iifname %q oifname %q ct status dnat", lanIf, lanIf))
		}
		mappingRules(w, c, ext, fmt.Sprintf("oifname %q", wanIf))
		w("\t\toifname %q snat ip to %s", wanIf, ext) // anything not UDP
	}
	w("\t}")

	if !c.NoNAT {
		w("\tchain record {")
		w("\t\ttype filter hook postrouting priority srcnat + 10; policy accept;")
		w("\t\toifname %q meta l4proto udp ct direction original update @byport { ct reply proto-dst : ct original ip saddr . ct original proto-src }", wanIf)
		w("\t\toifname %q meta l4proto udp ct direction original update @byaddr { ct original ip daddr . ct reply proto-dst : ct original ip saddr . ct original proto-src }", wanIf)
		w("\t}")
	}

	w("\tchain forward {")
	w("\t\ttype filter hook forward priority filter; policy accept;")
	if c.LossPercent > 0 {
		w("\t\tmeta l4proto udp numgen random mod 100 < %d drop", c.LossPercent)
	}
	if c.UDPBlocked {
		w("\t\tmeta l4proto udp drop")
	}
	if c.NoNAT && c.Filtering == AddressPortDependent {
		w("\t\tiifname %q ct state established,related accept", wanIf)
		w("\t\tiifname %q meta l4proto udp drop", wanIf)
	}
	w("\t}")

	w("\tchain input {")
	w("\t\ttype filter hook input priority filter; policy accept;")
	w("\t\tmeta l4proto udp drop")
	w("\t}")
	w("}")
	return b.String()
}

// mappingRules writes the source NAT rules of c's mapping behind match.
func mappingRules(w func(string, ...any), c Case, ext netip.Addr, match string) {
	switch {
	case c.Mapping == EndpointIndependent && c.PortPreserve:
		w("\t\t%s meta l4proto udp snat ip to %s", match, ext)
	case c.Mapping == EndpointIndependent:
		w("\t\t%s meta l4proto udp snat ip to %s : udp sport ^ %#x", match, ext, 0x1f00)
	case c.Mapping == AddressDependent:
		for i := range 16 {
			w("\t\t%s meta l4proto udp ip daddr & 0.0.0.15 == 0.0.0.%d snat ip to %s : udp sport ^ %#x",
				match, i, ext, (i+1)<<8)
		}
	case c.Mapping == AddressPortDependent:
		w("\t\t%s meta l4proto udp snat ip to %s fully-random", match, ext)
	}
}
