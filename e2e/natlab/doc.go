// Package natlab builds NAT labs out of Linux network namespaces and
// nftables for tests and benchmarks: a LAN host behind a router whose rules
// emulate one RFC 4787 behaviour (each mapping by each filtering, with or
// without hairpinning and port preservation, UDP blocked, no NAT, random
// loss), and a public side with two server addresses for RFC 5780.
//
//	public (203.0.113.10, .11, .20) ── router (198.51.100.2 | 192.0.2.1) ── LAN host (192.0.2.10)
//
// Every address comes from the RFC 5737 documentation ranges. A lab's
// namespaces are named Prefix + "<pid>-<random>-<role>"; New removes them
// when the test ends (pass or fail), stopping the processes it started by
// pid, and Sweep removes those of test binaries that no longer run.
//
//	lab := natlab.New(t, natlab.Case{Mapping: natlab.AddressDependent, Filtering: natlab.EndpointIndependent})
//	out, err := lab.Exec(ctx, natlab.LAN, "natprobe", "--json", "--server", "203.0.113.10:3478")
//
// The lab is checked without any STUN code of the project: RawProbe
// measures it with a reflector of its own protocol, and the package's tests
// cross-check it with coturn's turnutils_natdiscovery. Case.Want says what
// natprobe must report for a case. Building a lab needs root, iproute2 and
// nftables; callers check with internal/testenv first.
package natlab
