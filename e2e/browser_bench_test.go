//go:build linux

package e2e

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/rtcsuite/rtcsuite/internal/testenv"
)

// BenchmarkBrowserConnect measures, in headless Chromium against the
// in-process hub and relay, the time from "the second page opens" to "its
// data channel is open", direct and relay-only. Each iteration uses a fresh
// room: the first page joins it (untimed), then the second page navigates
// to it (timed). Every iteration takes one sample of each mode.
//
// Two figures per mode, medians over the iterations:
//   - page-ms: the second page's own performance.now() when the channel
//     opened, i.e. from its navigation start (page load, WebSocket, join,
//     offer/answer, ICE, DTLS, SCTP);
//   - wall-ms: the same seen from Go, from the navigate command until a
//     DOM poll (every 50 ms) saw the channel open.
//
// The browsers are started once per mode and reused, so page loads after
// the first hit a warm cache (revalidated with ETags). Run with a fixed
// count, for example bench/browser-connect.sh or
//
//	go test -run '^$' -bench BrowserConnect -benchtime 9x ./e2e/
func BenchmarkBrowserConnect(b *testing.B) {
	testenv.NeedCommand(b, "chromium", "chromium")
	env := browser_startEnv(b, browserEnvConfig{roomCapacity: 2})
	first := browser_open(b, "first", 1024, 768)
	second := browser_open(b, "second", 1024, 768)
	modes := []struct{ name, query, want string }{
		{"direct", "", ""},
		{"relay", "&relay=1", "relay"},
	}
	pageMS := make([][]float64, len(modes))
	wallMS := make([][]float64, len(modes))
	i := 0
	// Each iteration takes one sample of each mode, alternating, so a
	// noisy shared machine disturbs both alike.
	for b.Loop() {
		for m, mode := range modes {
			b.StopTimer()
			i++
			room := fmt.Sprintf("bench-%s-%d-%d", mode.name, time.Now().UnixNano(), i)
			first.do(chromedp.Navigate(env.base + "/?room=" + room + mode.query))
			browser_wait[string](first, "first page joined", browserJSJoined)
			b.StartTimer()

			start := time.Now()
			second.do(chromedp.Navigate(env.base + "/?room=" + room + mode.query))
			card := browser_wait[browserPeerCard](second, "data channel open", browserJSOpenPeer)
			wall := time.Since(start)

			b.StopTimer()
			ms, err := strconv.ParseFloat(card.DcOpenMs, 64)
			if err != nil {
				b.Fatalf("data-dc-open-ms %q: %v", card.DcOpenMs, err)
			}
			pageMS[m] = append(pageMS[m], ms)
			wallMS[m] = append(wallMS[m], float64(wall.Microseconds())/1000)
			// Each sample must have taken the path its mode names.
			browser_wait[browserPeerCard](second, "selected pair", fmt.Sprintf(`(() => { const c = document.querySelector('[data-testid=peer][data-dc=open]');
  return c && c.dataset.selectedLocal && (%[1]q === '' || (c.dataset.selectedLocal === %[1]q && c.dataset.selectedRemote === %[1]q)) ? {...c.dataset} : null; })()`, mode.want))
			b.StartTimer()
		}
	}
	b.StopTimer()
	for m, mode := range modes {
		b.ReportMetric(browser_median(pageMS[m]), mode.name+"-page-ms")
		b.ReportMetric(browser_median(wallMS[m]), mode.name+"-wall-ms")
		fmt.Printf("BrowserConnect %-6s runs=%d page-ms median=%.1f min=%.1f max=%.1f | wall-ms median=%.1f min=%.1f max=%.1f\n",
			mode.name, len(pageMS[m]), browser_median(pageMS[m]), slices.Min(pageMS[m]), slices.Max(pageMS[m]),
			browser_median(wallMS[m]), slices.Min(wallMS[m]), slices.Max(wallMS[m]))
	}
	ratio := browser_median(pageMS[1]) / browser_median(pageMS[0])
	b.ReportMetric(ratio, "relay/direct")
	b.ReportMetric(0, "ns/op") // an iteration is one sample of each mode plus untimed setup; the metrics above are the figures
	fmt.Printf("BrowserConnect relay/direct median ratio %.2f\n", ratio)
}

func browser_median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
