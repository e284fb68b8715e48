//go:build !linux

package relay

// udpSocketCount is always 1 off Linux: spreading one UDP address over
// several SO_REUSEPORT sockets needs Linux's load balancing and the
// per-client steering program (steer_linux.go). On macOS and the BSDs
// plain SO_REUSEPORT hands every datagram to one socket, and Windows has
// no SO_REUSEPORT, so each UDP listener address is one socket and one
// reading goroutine. New logs once when a larger count was asked for.
func udpSocketCount(int) int { return 1 }
