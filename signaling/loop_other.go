//go:build !linux

package signaling

import "errors"

// readLoop is the hub's read loop (loop.go); only Linux has one.
type readLoop struct{}

func newReadLoop() (*readLoop, error) { return nil, errors.New("no read loop on this system") }

func (*readLoop) add(*conn) bool { return false }
func (*readLoop) remove(*conn)   {}
func (*readLoop) stop()          {}
