package relay

import (
	"strings"
	"syscall"
)

// reusePortControl, on Windows, lets an RFC 6062 peer connection bind the
// allocation's TCP relay address next to its listener (SO_REUSEADDR).
// Windows has no SO_REUSEPORT, and SO_REUSEADDR there lets another socket
// take over a bound port, so UDP sockets get no option: each UDP listener
// address is one socket (see udpSocketCount).
func reusePortControl(network, _ string, c syscall.RawConn) error {
	if !strings.HasPrefix(network, "tcp") {
		return nil
	}
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(syscall.Handle(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
