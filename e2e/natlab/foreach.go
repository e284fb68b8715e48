//go:build linux

package natlab

import (
	"sync"
	"testing"
)

// ForEachCase runs f for every case in its own subtest, at most limit at
// a time. Lab work waits on timeouts far more than it computes, so it runs
// wider than -parallel (GOMAXPROCS) would allow.
func ForEachCase(t *testing.T, cases []Case, limit int, f func(t *testing.T, c Case)) {
	t.Helper()
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			t.Run(c.Name(), func(t *testing.T) { f(t, c) })
		}()
	}
	wg.Wait()
}
