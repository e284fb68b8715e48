// Command natprobe finds out what NAT (or firewall) this host is behind,
// in RFC 4787 / RFC 5780 terms, and what that means for WebRTC.
//
//	natprobe --server turn.example.com:3478            probe and print a summary
//	natprobe --server ... --json > mine.json           machine-readable report
//	natprobe predict mine.json theirs.json             can these two hosts connect directly?
//	natprobe --server ... --peer theirs.json           probe, then predict against a saved report
//
// Exit codes are documented in docs/nat.md and in --help.
package main

import (
	"os"

	"github.com/rtcsuite/rtcsuite/internal/sigctx"
)

func main() {
	ctx, stop := sigctx.Notify("natprobe", os.Stderr) // a second SIGINT/SIGTERM exits at once
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
