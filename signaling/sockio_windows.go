package signaling

import "syscall"

// rawSockIO is false on Windows: Winsock sockets are not read(2)/write(2)
// descriptors, so sockConn.init declines every connection and the hub reads
// through gorilla and writes through the connection's writer goroutine, as
// it does for TLS connections terminated in process. The callbacks below
// are never reached.
const rawSockIO = false

func (op *readOp) read(uintptr) bool {
	op.errno = syscall.EWINDOWS
	return true
}

func (op *writeOp) write(uintptr) bool {
	op.err = syscall.EWINDOWS
	return true
}
