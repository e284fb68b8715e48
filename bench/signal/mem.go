//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// result is one JSON line of output; fields that do not apply are omitted.
type result struct {
	Bench  string `json:"bench"` // mem or relay
	Target string `json:"target"`
	Label  string `json:"label,omitempty"`
	Conns  int    `json:"conns"`
	Room   int    `json:"room,omitempty"` // peers per room (PeerJS: 2, pairs)

	// mem
	Connected    int     `json:"connected,omitempty"`
	Alive        int     `json:"alive,omitempty"` // still open at the end of the hold
	ConnectSec   float64 `json:"connectSec,omitempty"`
	HoldSec      float64 `json:"holdSec,omitempty"`
	RSSBefore    uint64  `json:"rssBefore,omitempty"`
	RSSAfter     uint64  `json:"rssAfter,omitempty"`
	RSSPeak      uint64  `json:"rssPeak,omitempty"`
	BytesPerConn float64 `json:"bytesPerConn,omitempty"`
	IdleCPUPct   float64 `json:"idleCpuPct,omitempty"` // server CPU during the hold, % of one core
	// Go runtime view of our hub after a forced GC (hub only).
	GoLiveHeapPerConn float64 `json:"goLiveHeapPerConn,omitempty"`
	GoStackPerConn    float64 `json:"goStackPerConn,omitempty"`
	Goroutines        int     `json:"goroutines,omitempty"`

	// relay
	Mode         string  `json:"mode,omitempty"`    // sat (closed loop) or rate (fixed offered load)
	Offered      float64 `json:"offered,omitempty"` // msgs/s, rate mode
	Window       int     `json:"window,omitempty"`  // messages in flight per connection, sat mode
	DurationSec  float64 `json:"durationSec,omitempty"`
	Sent         int64   `json:"sent,omitempty"`
	Received     int64   `json:"received,omitempty"`
	MsgsPerSec   float64 `json:"msgsPerSec,omitempty"`
	P50us        float64 `json:"p50us,omitempty"` // one-way latency
	P99us        float64 `json:"p99us,omitempty"`
	RTTP50us     float64 `json:"rttP50us,omitempty"`
	RTTP99us     float64 `json:"rttP99us,omitempty"`
	ServerCPUPct float64 `json:"serverCpuPct,omitempty"`
	CPUusPerMsg  float64 `json:"cpuUsPerMsg,omitempty"` // server CPU per relayed message
	Errors       int64   `json:"errors,omitempty"`
	FirstError   string  `json:"firstError,omitempty"`
	// Load1 is the machine's 1-minute load average when the measurement
	// ended: the machine is shared, and this says how busy it was.
	Load1 float64 `json:"load1,omitempty"`
}

func runMem(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mem", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", targetHub, "hub or peerjs")
	addr := fs.String("addr", "127.0.0.1:8801", "server address")
	pid := fs.Int("pid", 0, "server process id (RSS and CPU from /proc)")
	n := fs.Int("n", 10000, "connections (even: rooms of 2)")
	hold := fs.Duration("hold", 15*time.Second, "how long the connections stay idle before the RSS is taken")
	conc := fs.Int("concurrency", 64, "connections being opened at once")
	srcBase := fs.String("src", "127.0.1.1", "first source address")
	srcCount := fs.Int("src-count", 8, "source addresses, consecutive from -src (about 28,000 ports each)")
	memstatsURL := fs.String("memstats", "", "hub /debug/memstats URL (Go heap and stacks after a GC)")
	label := fs.String("label", "", "free text carried into the result")
	connectTimeout := fs.Duration("connect-timeout", 3*time.Minute, "bound on the connect phase")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pid <= 0 || *n < 2 || *n%2 != 0 {
		return errors.New("need -pid and an even -n >= 2")
	}
	if lim, err := raiseNoFile(uint64(*n) + 512); err != nil {
		fmt.Fprintf(stderr, "mem: %v\n", err)
	} else if lim < uint64(*n)+100 {
		return fmt.Errorf("open-file limit %d is too low for %d connections", lim, *n)
	}
	cl, err := newClient(*target, *addr, *srcBase, *srcCount)
	if err != nil {
		return err
	}
	if err := waitListening(ctx, *addr, 20*time.Second); err != nil {
		return err
	}
	time.Sleep(time.Second) // let the server settle after start
	rssBefore, _, err := procRSS(*pid)
	if err != nil {
		return err
	}
	var msBefore memStats
	if *memstatsURL != "" {
		if msBefore, err = fetchMemStats(ctx, *memstatsURL); err != nil {
			return err
		}
	}
	res := result{Bench: "mem", Target: *target, Label: *label, Conns: *n, Room: 2, RSSBefore: rssBefore}

	var closing atomic.Bool
	var (
		mu    sync.Mutex
		conns = make([]*bconn, 0, *n)
		wg    sync.WaitGroup // readers
		// why the first connection that died during the hold ended
		deathErr atomic.Value
		deaths   atomic.Int64
	)
	startReader := func(c *bconn) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, _, err := c.ws.NextReader(); err != nil {
					c.dead.Store(true)
					if deaths.Add(1) == 1 && !closing.Load() {
						deathErr.Store(fmt.Sprintf("after %.1fs: %v", time.Since(c.since).Seconds(), err))
					}
					return
				}
			}
		}()
	}
	hbCtx, hbStop := context.WithCancel(ctx)
	defer hbStop()
	if *target == targetPeerJS {
		go peerJSHeartbeats(hbCtx, func() []*bconn {
			mu.Lock()
			defer mu.Unlock()
			return conns[:len(conns):len(conns)]
		})
	}

	cctx, ccancel := context.WithTimeout(ctx, *connectTimeout)
	defer ccancel()
	var (
		nextPair atomic.Int64
		failed   atomic.Int64
		firstErr atomic.Value
		cwg      sync.WaitGroup
	)
	pairs := int64(*n / 2)
	prefix := runPrefix()
	start := time.Now()
	for range *conc {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for cctx.Err() == nil && failed.Load() < 50 {
				i := nextPair.Add(1) - 1
				if i >= pairs {
					return
				}
				for side := range 2 {
					id := "m" + prefix + "-" + strconv.FormatInt(i, 36) + "-" + strconv.Itoa(side)
					c, err := cl.dial(cctx, id)
					if err == nil && *target == targetHub {
						if err = cl.join(c, "r"+prefix+"-"+strconv.FormatInt(i, 36)); err != nil {
							c.closeRST()
						}
					}
					if err != nil {
						if failed.Add(1) == 1 {
							firstErr.Store(fmt.Sprintf("connection %d: %v", 2*i+int64(side), err))
						}
						continue
					}
					c.since = time.Now()
					startReader(c)
					mu.Lock()
					conns = append(conns, c)
					k := len(conns)
					mu.Unlock()
					if k%10000 == 0 {
						fmt.Fprintf(stderr, "mem %s: %d connections, %.1fs\n", *target, k, time.Since(start).Seconds())
					}
				}
			}
		}()
	}
	cwg.Wait()
	res.ConnectSec = time.Since(start).Seconds()
	res.Connected = len(conns)
	if e, ok := firstErr.Load().(string); ok {
		res.FirstError = e
		res.Errors = failed.Load()
		fmt.Fprintf(stderr, "mem %s: %d failed connections, first: %s\n", *target, failed.Load(), e)
	}
	fmt.Fprintf(stderr, "mem %s: %d/%d connected in %.1fs; idle for %s\n", *target, len(conns), *n, res.ConnectSec, *hold)

	// Hold: sample the RSS every second; CPU over the hold after a short settle.
	holdStart := time.Now()
	var cpu0 time.Duration
	var cpu0At time.Time
	var rss uint64
	for time.Since(holdStart) < *hold && ctx.Err() == nil {
		time.Sleep(time.Second)
		if cpu0At.IsZero() && time.Since(holdStart) >= 2*time.Second {
			cpu0, _ = procCPU(*pid)
			cpu0At = time.Now()
		}
		r, hwm, err := procRSS(*pid)
		if err != nil {
			return fmt.Errorf("server gone during the hold: %w", err)
		}
		rss, res.RSSPeak = r, hwm
	}
	if cpu1, err := procCPU(*pid); err == nil && !cpu0At.IsZero() {
		res.IdleCPUPct = 100 * (cpu1 - cpu0).Seconds() / time.Since(cpu0At).Seconds()
	}
	res.HoldSec = time.Since(holdStart).Seconds()
	res.Load1 = loadAvg()
	res.RSSAfter = rss
	for _, c := range conns {
		if !c.dead.Load() {
			res.Alive++
		}
	}
	if res.Alive > 0 {
		res.BytesPerConn = float64(int64(res.RSSAfter)-int64(res.RSSBefore)) / float64(res.Alive)
	}
	if *memstatsURL != "" && res.Alive > 0 {
		if ms, err := fetchMemStats(ctx, *memstatsURL); err == nil {
			res.GoLiveHeapPerConn = float64(int64(ms.HeapAlloc)-int64(msBefore.HeapAlloc)) / float64(res.Alive)
			res.GoStackPerConn = float64(int64(ms.StackInuse)-int64(msBefore.StackInuse)) / float64(res.Alive)
			res.Goroutines = ms.Goroutines
		} else {
			fmt.Fprintf(stderr, "mem: memstats: %v\n", err)
		}
	}
	if e, ok := deathErr.Load().(string); ok {
		res.FirstError = "a connection died during the hold " + e
		fmt.Fprintf(stderr, "mem %s: %d connections died, first %s\n", *target, deaths.Load(), e)
	}
	hbStop()
	closing.Store(true)
	closeAll(conns)
	wg.Wait()
	fmt.Fprintf(stderr, "mem %s n=%d: alive %d, RSS %.1f -> %.1f MiB, %.1f KiB/conn, idle CPU %.1f%%\n",
		*target, *n, res.Alive, mib(res.RSSBefore), mib(res.RSSAfter), res.BytesPerConn/1024, res.IdleCPUPct)
	return json.NewEncoder(stdout).Encode(res)
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func fetchMemStats(ctx context.Context, u string) (memStats, error) {
	var ms memStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return ms, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ms, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ms, fmt.Errorf("%s: %s", u, resp.Status)
	}
	return ms, json.NewDecoder(resp.Body).Decode(&ms)
}
