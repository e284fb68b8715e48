//go:build linux

package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/pprof"

	"github.com/rtcsuite/rtcsuite/internal/turnrest"
	"github.com/rtcsuite/rtcsuite/relay"
)

// profileTurnd runs the relay package in this process, configured as
// turndKind runs the binary, drives it with turnutils_uclient and writes a
// CPU profile of the run to path. The bench's own CPU use is negligible
// while uclient (a separate process) runs, so the profile is the relay's.
func profileTurnd(path, uclientBin, peerBin string, flows, pps, size, seconds, sources int) error {
	peerCmd, peer, err := startPeer(peerBin)
	if err != nil {
		return err
	}
	defer func() { peerCmd.Process.Kill(); _ = peerCmd.Wait() }()

	srv, err := relay.New(relay.Config{
		Realm:        benchRealm,
		Listeners:    []relay.Listener{{Network: "udp", Addr: "127.0.0.1:0"}},
		Users:        []relay.User{{Name: benchUser, Key: turnrest.LongTermKey(benchUser, benchRealm, benchPass)}},
		Peers:        relay.PeerPolicy{AllowLoopback: true},
		Offload:      relay.OffloadOff, // the user-space path, as the bench runs turnd
		UnauthRate:   -1,
		AuthFailRate: -1,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return err
	}
	defer srv.Close()

	runtime.MemProfileRate = 4096
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	s := &server{kind: "turnd-inproc", pid: os.Getpid(), addr: srv.Addr("udp").(*net.UDPAddr)}
	res, err := uclientLoad(uclientBin, s, peer, flows, pps, size, seconds, sources)
	pprof.StopCPUProfile()
	if err != nil {
		return err
	}
	if af, err := os.Create(path + ".allocs"); err == nil {
		_ = pprof.Lookup("allocs").WriteTo(af, 0)
		af.Close()
	}
	fmt.Fprintf(os.Stderr, "in-process turnd, %d flows: %s\nprofile written to %s (go tool pprof -top %s)\n", flows, brief(res), path, path)
	return nil
}
