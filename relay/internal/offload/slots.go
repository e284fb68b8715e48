//go:build linux

package offload

// slotPool hands out counter slots, oldest-freed first.
type slotPool struct {
	free []uint32
}

func (s *slotPool) init(n int) {
	s.free = make([]uint32, n)
	for i := range s.free {
		s.free[i] = uint32(i)
	}
}

func (s *slotPool) get() (uint32, bool) {
	if len(s.free) == 0 {
		return 0, false
	}
	v := s.free[0]
	s.free = s.free[1:]
	return v, true
}

func (s *slotPool) put(v uint32) { s.free = append(s.free, v) }
