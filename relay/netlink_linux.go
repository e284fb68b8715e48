//go:build linux

package relay

import (
	"os"

	"golang.org/x/sys/unix"
)

// watchAddresses re-reads the host's own addresses whenever the kernel
// reports an address change (RTM_NEWADDR/RTM_DELADDR over rtnetlink), so
// an address added after start is refused as a peer at once. Without
// netlink (not Linux, or a sandbox refusing the socket) SIGHUP still
// refreshes them. The goroutine ends when Close closes the socket.
func (s *Server) watchAddresses() {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		s.log.Warn("no netlink address events: own addresses refresh on SIGHUP only", "err", err)
		return
	}
	sa := &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		s.log.Warn("no netlink address events: own addresses refresh on SIGHUP only", "err", err)
		return
	}
	// A non-blocking descriptor joins Go's poller, so Close interrupts Read.
	f := os.NewFile(uintptr(fd), "rtnetlink")
	s.netlink = f
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 16<<10)
		for {
			if _, err := f.Read(buf); err != nil {
				select {
				case <-s.stop:
					return
				default:
				}
				if err == unix.ENOBUFS {
					s.refreshSelf() // events were lost: re-read anyway
					continue
				}
				s.log.Warn("netlink address events stopped: own addresses refresh on SIGHUP only", "err", err)
				return
			}
			// Any address message: re-read the whole set (cheap, and
			// exact whatever the message said).
			s.refreshSelf()
		}
	}()
}
