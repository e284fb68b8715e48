//go:build unix && !linux

package relay

import (
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
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
	var serr error
	err := c.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
