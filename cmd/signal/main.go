// Command signal is the WebSocket signaling hub with the browser demo page:
// rooms, trickle ICE, short-lived TURN credentials (shared secret with
// turnd). `signal -dev` runs everything on this machine, with an embedded
// relay. See `signal -h` and docs/protocol.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], runEnv{getenv: os.Getenv, stdout: os.Stdout, stderr: os.Stderr}))
}
