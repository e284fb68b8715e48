// Package netlab is shared plumbing for tests and benchmarks that run real
// processes in Linux network namespaces: running code inside a namespace,
// a three-namespace client — relay — peer topology joined by veth pairs on
// documentation addresses, an AF_PACKET capture whose UDP checksums are
// recomputed from scratch, and the kernel's UDP checksum error counters.
//
// Everything here needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for setns);
// callers decide whether to skip (internal/testenv).
//
// The package is Linux-only: on other systems it is empty, and the tests
// and benchmarks that use it carry the same build constraint.
package netlab
