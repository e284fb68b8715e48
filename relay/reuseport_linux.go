package relay

import (
	"syscall"
)

// reusePortControl sets SO_REUSEADDR and SO_REUSEPORT so several sockets
// share one UDP address (the kernel spreads clients over them by hash) and
// TCP relay connections can bind the allocation's relay address.
func reusePortControl(_, _ string, c syscall.RawConn) error {
	return setReuseAddrPort(c)
}
