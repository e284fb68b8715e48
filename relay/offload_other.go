//go:build !linux

package relay

import "runtime"

// offloader: the eBPF kernel path needs Linux; elsewhere every mode but
// tc relays in user space (noKernelPath).
type offloader struct {
	s      *Server
	logged bool
}

func newOffloader(s *Server) *offloader { return &offloader{s: s} }

func (o *offloader) setMode(mode OffloadMode) error {
	note, err := noKernelPath(mode, runtime.GOOS)
	if note && !o.logged {
		o.logged = true
		o.s.log.Info("offload: kernel path unavailable; relaying in user space", "reason", "needs Linux", "os", runtime.GOOS)
	}
	return err
}

func (o *offloader) refresh() {}
func (o *offloader) drain()   {}
func (o *offloader) close()   {}
