//go:build linux

// Command signal is the load generator for the signaling hub (package
// signaling) and the reference it is compared with, PeerJS server (the npm
// package "peer"). It is a benchmark, not a test: run.sh in this directory
// drives it and docs/benchmarks.md records the figures and the method.
//
// Subcommands:
//
//	hub     serve a signaling.Hub on -addr (with pprof and /debug/memstats
//	        on -admin), with the connection caps and the per-connection
//	        message rate raised for load generation
//	mem     open -n idle connections to a server process, joined in rooms
//	        of 2 (PeerJS: registered ids), and report the server's RSS per
//	        connection from /proc/PID/status
//	relay   relay signals between -conns connections in rooms of -room
//	        peers (PeerJS: pairs) and report messages/s, one-way latency
//	        p50/p99 and the server's CPU time per message
//	report  read the JSON result lines of the other subcommands and print
//	        a Markdown table (medians over repeated runs)
//
// Every measurement prints one JSON line on stdout; progress goes to stderr.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/signal:", err)
		os.Exit(1)
	}
}

const usage = `usage: signal <hub|mem|relay|report> [flags]   (signal <cmd> -h for flags)`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%s", usage)
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stderr, usage)
		return nil
	case "hub":
		return runHub(ctx, args[1:], stderr)
	case "mem":
		return runMem(ctx, args[1:], stdout, stderr)
	case "relay":
		return runRelay(ctx, args[1:], stdout, stderr)
	case "report":
		return runReport(args[1:], stdout)
	case "cluster-report":
		return runClusterReport(args[1:], stdout)
	}
	return fmt.Errorf("unknown subcommand %q\n%s", args[0], usage)
}
