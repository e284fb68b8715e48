// Command turnd is a STUN/TURN relay: a self-hostable replacement for coturn
// with safe defaults. See `turnd --help` and docs/turnd.md.
package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/rtcsuite/rtcsuite/internal/sigctx"
)

func main() {
	ctx, stop := sigctx.Notify("turnd", os.Stderr) // a second SIGINT/SIGTERM exits at once
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	code := run(ctx, os.Args[1:], runEnv{getenv: os.Getenv, stdout: os.Stdout, stderr: os.Stderr, reload: hup})
	stop()
	os.Exit(code)
}
