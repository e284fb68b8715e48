//go:build linux

package netlab

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Do runs f on an OS thread switched into the named network namespace
// (/run/netns/ns, as `ip netns add` creates it). Sockets, links and route
// lookups made by f belong to ns and keep belonging to it afterwards. The
// thread goes back to its own namespace; if that fails it stays locked and
// the runtime discards it when the goroutine ends.
func Do(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open namespace %s: %w", ns, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		ferr := f()
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// Command returns a command that runs name inside namespace ns through
// `ip netns exec`, which execs name in place: the started process's pid is
// name's own, so it can be measured and killed by pid.
func Command(ns, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...) //nolint:gosec,noctx // test and bench plumbing (callers bound their runs): runs what its caller names

}

// Run runs name inside ns and returns its combined output; a failure says
// what ran and where.
func Run(ns, name string, args ...string) (string, error) {
	out, err := Command(ns, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s %s: %w\n%s", ns, name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// SetTxChecksum turns transmit checksum offload of dev in ns on or off
// (`ethtool -K dev tx on|off`). With it off, a veth hands its peer fully
// checksummed packets, so the receiver verifies every UDP checksum.
func SetTxChecksum(ns, dev string, on bool) error {
	v := "off"
	if on {
		v = "on"
	}
	_, err := Run(ns, "ethtool", "-K", dev, "tx", v)
	return err
}
