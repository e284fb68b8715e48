//go:build unix && !linux

package relay

import (
	"strings"
	"syscall"
)

// reusePortControl, on macOS and the BSDs, lets an RFC 6062 peer
// connection bind the allocation's TCP relay address next to its listener
// (SO_REUSEADDR and SO_REUSEPORT, as on Linux). UDP sockets get neither:
// each UDP listener address is one socket here (udpsockets_other.go) and
// needs no sharing, and these systems do not restrict SO_REUSEPORT to the
// socket owner's user as Linux does, so the option would only let another
// process join the port and take its datagrams.
func reusePortControl(network, _ string, c syscall.RawConn) error {
	if !strings.HasPrefix(network, "tcp") {
		return nil
	}
	return setReuseAddrPort(c)
}
