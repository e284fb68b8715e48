package relay

import "runtime"

// udpSocketCount is how many sockets share each UDP listener address: the
// configured count, by default one per CPU. The kernel spreads clients
// over them (SO_REUSEPORT) and steer_linux.go keeps each client IP on one.
func udpSocketCount(configured int) int {
	if configured <= 0 {
		return runtime.NumCPU()
	}
	return configured
}
