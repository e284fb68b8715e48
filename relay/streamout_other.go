//go:build !linux

package relay

import (
	"crypto/tls"
	"net"
)

// streamOut is Linux-only (streamout_linux.go): elsewhere pion writes
// TCP and TLS streams itself and peer data for stream clients takes its
// path.
type streamOut struct{ tls *tls.Conn }

func newStreamOut(net.Conn) *streamOut { return nil }

func (o *streamOut) write([]byte, int) (bool, error) { return false, net.ErrClosed }
func (o *streamOut) drain() error                    { return nil }
func (o *streamOut) close()                          {}
func (o *streamOut) sendFrame([]byte) bool           { return false }

type outConn struct {
	net.Conn
	out *streamOut
}
