// Package sigctx turns SIGINT/SIGTERM into a context for a command's main:
// the first signal cancels the context (graceful drain), a second one
// during the drain exits the process at once, as an operator pressing
// Ctrl-C twice expects.
package sigctx

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Notify returns a context cancelled by the first SIGINT or SIGTERM. A
// second signal writes a line to stderr and calls os.Exit with 128 plus
// the signal number (130 for SIGINT, 143 for SIGTERM). stop releases the
// signal handlers.
func Notify(name string, stderr io.Writer) (ctx context.Context, stop func()) {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	ctx, stopWatch := Watch(context.Background(), ch, name, stderr, os.Exit)
	return ctx, func() { signal.Stop(ch); stopWatch() }
}

// Watch is Notify on a given signal channel and exit function (tests).
func Watch(parent context.Context, sigs <-chan os.Signal, name string, stderr io.Writer, exit func(int)) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-sigs:
			cancel()
		case <-quit:
			return
		}
		select {
		case s := <-sigs:
			fmt.Fprintf(stderr, "%s: second %v during drain: exiting now\n", name, s)
			exit(ExitCode(s))
		case <-quit:
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() { close(quit); <-done })
		cancel()
	}
}

// ExitCode is the shell convention for death by signal s: 128 + its number.
func ExitCode(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return 1
}
