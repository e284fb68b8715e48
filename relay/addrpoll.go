package relay

import "time"

// pollAddresses re-reads the host's own addresses every interval until
// Close. It is the fallback where the kernel gives us no address events
// (netlink_other.go): an address added after start (a laptop joining
// another network) is refused as a peer within one interval, or at once
// on Reload.
func (s *Server) pollAddresses(every time.Duration) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.refreshSelf()
			}
		}
	}()
}
