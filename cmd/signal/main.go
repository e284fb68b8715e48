// Command signal is the WebSocket signaling hub with the browser demo page:
// rooms, trickle ICE, short-lived TURN credentials (shared secret with
// turnd). `signal --dev` runs everything on this machine, with an embedded
// relay. See `signal --help` and docs/protocol.md.
package main

import (
	"os"

	"github.com/rtcsuite/rtcsuite/internal/sigctx"
)

func main() {
	ctx, stop := sigctx.Notify("signal", os.Stderr) // a second SIGINT/SIGTERM exits at once
	code := run(ctx, os.Args[1:], runEnv{getenv: os.Getenv, stdout: os.Stdout, stderr: os.Stderr})
	stop()
	os.Exit(code)
}
