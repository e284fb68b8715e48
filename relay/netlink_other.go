//go:build !linux

package relay

import "time"

// addressPollInterval is how often own addresses are re-read off Linux.
// Reading the interface list costs well under a millisecond.
const addressPollInterval = 10 * time.Second

// watchAddresses: rtnetlink address events are Linux's (netlink_linux.go);
// elsewhere own addresses are re-read on a timer and on Reload (SIGHUP).
func (s *Server) watchAddresses() { s.pollAddresses(addressPollInterval) }
