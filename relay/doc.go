// Package relay is a STUN/TURN server (RFC 8489, RFC 8656, RFC 6062 TCP
// relays, RFC 6156 IPv6 relays) built on pion/turn, with what a self-hosted
// replacement for coturn needs around it: long-term and TURN REST
// credentials with secret rotation, a peer address policy that is safe by
// default, quotas and bandwidth limits, rate limits on unauthenticated
// traffic, RFC 5780 NAT behaviour discovery answers, Prometheus metrics,
// draining on shutdown and reloading without dropping allocations.
//
// pion/turn owns the TURN state machine. This package owns the sockets it
// serves (wrappers around net.PacketConn and net.Listener that count,
// rate-limit and authenticate before pion sees a packet) and the relay
// sockets it allocates (a RelayAddressGenerator whose sockets enforce the
// peer policy and bandwidth limits on every datagram).
//
// Use New to validate a Config and bind every socket, then Run until the
// context ends; Run drains allocations for Config.DrainTimeout and closes.
package relay
