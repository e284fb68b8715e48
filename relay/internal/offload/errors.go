//go:build linux

package offload

import "errors"

var (
	// ErrUnsupported: this kernel cannot run the program (no BPF, no tcx,
	// a missing helper). Callers in "auto" mode fall back to user space.
	ErrUnsupported = errors.New("offload: not supported by this kernel")
	// ErrPermission: the process may not load or attach BPF programs
	// (needs CAP_BPF and CAP_NET_ADMIN, or root).
	ErrPermission = errors.New("offload: not permitted")
	// ErrSelfTest: the program loaded but forwarded a synthetic packet
	// wrongly; the kernel path must not be used.
	ErrSelfTest = errors.New("offload: self-test failed")
	// ErrInvalid: a configuration or binding the program cannot carry
	// (mixed address families, unspecified addresses, channel out of range).
	ErrInvalid = errors.New("offload: invalid")
	// ErrNotFound: no binding for the given relay and peer addresses.
	ErrNotFound = errors.New("offload: no such binding")
	// ErrFull: every binding slot is in use; the binding stays in user space.
	ErrFull = errors.New("offload: binding table full")
	// ErrClosed: the Engine was closed.
	ErrClosed = errors.New("offload: engine closed")
)
