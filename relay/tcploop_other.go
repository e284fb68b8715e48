//go:build !linux

package relay

import "net"

// loopStream is Linux-only (tcploop_linux.go): elsewhere every stream
// keeps its reading goroutine.
type loopStream struct{}

func (c *framedConn) adopt() bool                    { return false }
func (c *framedConn) readLooped([]byte) (int, error) { return 0, net.ErrClosed }
func (st *loopStream) close()                        {}
