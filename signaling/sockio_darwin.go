package signaling

import (
	"errors"
	"syscall"
)

// rawSockIO: on macOS too the hub reads and writes hijacked sockets itself,
// but through libc's read and write (package syscall's), since Darwin's
// system-call numbers are not a stable interface (sockio_unix.go uses them
// directly elsewhere).
const rawSockIO = true

// read: see sockio_unix.go.
func (op *readOp) read(fd uintptr) bool {
	for {
		n, err := syscall.Read(int(fd), op.p)
		var e syscall.Errno
		if err != nil && !errors.As(err, &e) {
			e = syscall.EIO
		}
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if !op.nowait {
				return false
			}
		}
		op.n, op.errno = int32(max(n, 0)), e // n <= len(p), far below 2 GiB
		return true
	}
}

// write: see sockio_unix.go.
func (op *writeOp) write(fd uintptr) bool {
	for {
		n, err := syscall.Write(int(fd), op.b)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		op.n, op.err = max(n, 0), err
		if err != nil {
			op.n = 0
		}
		return true
	}
}
