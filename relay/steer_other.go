//go:build !linux

package relay

import (
	"errors"
	"net"
)

// steerBySource: per-client steering across SO_REUSEPORT sockets is a
// Linux classic-BPF program (steer_linux.go). Elsewhere a UDP listener
// address is one socket (udpSocketCount), so every client already shares
// one socket and its EVEN-PORT reservations.
func steerBySource(conns []net.PacketConn) error {
	if len(conns) < 2 {
		return nil
	}
	return errors.New("steer: several sockets on one UDP address need Linux (SO_ATTACH_REUSEPORT_CBPF)")
}
