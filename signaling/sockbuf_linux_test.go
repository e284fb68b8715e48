package signaling

import (
	"net"
	"syscall"

	"github.com/gorilla/websocket"
)

// smallBufferDialer dials with a tiny socket receive buffer (no
// autotuning), so a client that stops reading backs up to the hub quickly.
func smallBufferDialer() *websocket.Dialer {
	d := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return &websocket.Dialer{NetDialContext: d.DialContext, HandshakeTimeout: waitFor}
}
