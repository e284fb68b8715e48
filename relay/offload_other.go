//go:build !linux

package relay

import "errors"

// offloader: the eBPF kernel path needs Linux; elsewhere every mode but
// tc relays in user space.
type offloader struct {
	s      *Server
	logged bool
}

func newOffloader(s *Server) *offloader { return &offloader{s: s} }

func (o *offloader) setMode(mode OffloadMode) error {
	switch mode {
	case OffloadTC:
		return errors.New("offload=tc: the eBPF kernel path needs Linux (use --offload=auto or off)")
	case OffloadAuto:
		if !o.logged {
			o.logged = true
			o.s.log.Info("offload: kernel path unavailable; relaying in user space", "reason", "needs Linux")
		}
	}
	return nil
}

func (o *offloader) refresh() {}
func (o *offloader) drain()   {}
func (o *offloader) close()   {}
