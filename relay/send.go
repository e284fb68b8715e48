package relay

import "errors"

// errWouldBlock reports a datagram dropped because the socket's send
// buffer was full (send_unix.go, send_windows.go).
var errWouldBlock = errors.New("relay: send buffer full")
