//go:build !linux

package schedslice

import "time"

func set(time.Duration) (int, error) { return 0, ErrUnsupported }
