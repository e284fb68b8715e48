//go:build unix

package relay

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// setReuseAddrPort sets SO_REUSEADDR and SO_REUSEPORT on the socket behind
// c; reusePortControl decides per platform which sockets get them.
func setReuseAddrPort(c syscall.RawConn) error {
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
