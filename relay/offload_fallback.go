package relay

import "fmt"

// noKernelPath is what a platform without the eBPF kernel path (anything
// but Linux: offload_other.go) does with mode. tc asked for the kernel
// path explicitly, so it is an error naming the platform; auto relays in
// user space and says so once (note); off needs nothing.
func noKernelPath(mode OffloadMode, goos string) (note bool, err error) {
	switch mode {
	case OffloadTC:
		return false, fmt.Errorf("offload=tc: the eBPF kernel path needs Linux, this is %s (use --offload=auto or off)", goos)
	case OffloadAuto:
		return true, nil
	}
	return false, nil
}
