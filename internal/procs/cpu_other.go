//go:build !unix

package procs

import (
	"errors"
	"time"
)

// cpuTime has no implementation here: --procs auto reports it and the Go
// default stays.
func cpuTime() (time.Duration, error) {
	return 0, errors.New("procs: auto needs getrusage (unix)")
}
