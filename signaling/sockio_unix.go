//go:build unix && !darwin

package signaling

import (
	"syscall"
	"unsafe"
)

// rawSockIO: hijacked TCP connections are read and written with raw
// read(2)/write(2) on their non-blocking sockets (sockread.go, writenow.go).
const rawSockIO = true

// read issues read(2) into op.p; false (wait in the netpoller) on EAGAIN
// unless op.nowait.
func (op *readOp) read(fd uintptr) bool {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&op.p[0])), uintptr(len(op.p))) //nolint:gosec // G103: read(2) into p, len(p) > 0
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if !op.nowait {
				return false
			}
		}
		op.n, op.errno = int32(r), e // r <= len(p), a read buffer or message far below 2 GiB
		return true
	}
}

// write makes one write(2) attempt of op.b: it never waits for the socket.
// A raw system call: the socket is non-blocking, so the call cannot block,
// and skipping entersyscall keeps an idle process's sysmon thread asleep
// (sockread.go).
func (op *writeOp) write(fd uintptr) bool {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&op.b[0])), uintptr(len(op.b))) //nolint:gosec // G103: write(2) of b, never empty (it holds a frame header)
		if e != syscall.EINTR {
			op.n = int(r)
			if e != 0 {
				op.n, op.err = 0, e
			}
			return true
		}
	}
}
