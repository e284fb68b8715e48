// Command turnd is a STUN/TURN relay: a self-hostable replacement for coturn
// with safe defaults. See `turnd -h` and docs/turnd.md.
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
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	os.Exit(run(ctx, os.Args[1:], runEnv{getenv: os.Getenv, stdout: os.Stdout, stderr: os.Stderr, reload: hup}))
}
