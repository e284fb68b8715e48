//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/procs"
	"github.com/rtcsuite/rtcsuite/signaling"
)

// runHub serves a hub until ctx ends. Only the limits that would refuse the
// load are changed from the defaults: the connection caps (defaults 10,000
// in total and 100 per address) and the per-connection message rate
// (default 20/s, burst 100). Ping interval, send queue, resume grace and
// message size stay at their defaults.
func runHub(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("hub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8801", "public listener (GET /ws)")
	admin := fs.String("admin", "127.0.0.1:8802", "admin listener: /metrics, /debug/pprof/, /debug/memstats")
	capacity := fs.Int("room-capacity", 16, "peers per room")
	rateLimit := fs.Float64("message-rate", 1e7, "per-connection messages/s (hub default 20)")
	contention := fs.Bool("contention-profile", false, "record mutex and block profiles (/debug/pprof/mutex, /block)")
	redisURL := fs.String("redis", "", "run as a cluster node on this Redis (cluster.sh)")
	node := fs.String("node-id", "", "cluster node id (with -redis)")
	procsFlag := fs.String("procs", "auto", "as cmd/signal --procs: auto, or a fixed GOMAXPROCS (0 = all CPUs)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *contention {
		runtime.SetMutexProfileFraction(5)
		runtime.SetBlockProfileRate(int(10 * time.Microsecond))
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ps, err := procs.Parse(*procsFlag)
	if err != nil {
		return err
	}
	if err := procs.Apply(ctx, ps, os.Getenv, nil); err != nil {
		return err
	}
	store, closeStore, err := redisStore(ctx, *redisURL, *node, log)
	if err != nil {
		return err
	}
	defer closeStore()
	hub, err := signaling.NewHub(signaling.Config{
		Store:         store,
		RoomCapacity:  *capacity,
		MaxConns:      -1,
		MaxConnsPerIP: -1,
		MessageRate:   *rateLimit,
		MessageBurst:  1 << 20,
		Logger:        log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	aln, err := net.Listen("tcp", *admin)
	if err != nil {
		ln.Close()
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", hub.AdminHandler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/memstats", serveMemStats)
	srv := &http.Server{Handler: hub.Handler(), ReadHeaderTimeout: 10 * time.Second}
	asrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	go func() { errc <- asrv.Serve(aln) }()
	fmt.Fprintf(stderr, "hub: serving ws://%s/ws, admin http://%s\n", ln.Addr(), aln.Addr())

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx) // hijacked connections are the hub's
	_ = hub.Shutdown(sctx) // bounded by sctx
	_ = asrv.Shutdown(sctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// memStats is the Go runtime's view of the hub process after a forced GC.
type memStats struct {
	Goroutines  int    `json:"goroutines"`
	HeapAlloc   uint64 `json:"heapAlloc"`
	HeapInuse   uint64 `json:"heapInuse"`
	StackInuse  uint64 `json:"stackInuse"`
	Sys         uint64 `json:"sys"`
	HeapObjects uint64 `json:"heapObjects"`
}

// serveMemStats runs a GC and reports the live heap and stacks. It exists so
// the RSS figure can be split into live data and garbage or retained pages.
func serveMemStats(w http.ResponseWriter, _ *http.Request) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(memStats{
		Goroutines:  runtime.NumGoroutine(),
		HeapAlloc:   ms.HeapAlloc,
		HeapInuse:   ms.HeapInuse,
		StackInuse:  ms.StackInuse,
		Sys:         ms.Sys,
		HeapObjects: ms.HeapObjects,
	})
}
