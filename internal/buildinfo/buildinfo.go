// Package buildinfo says which build of a command is running: the module
// version and the VCS revision it was built from, for --version.
//
// The Go toolchain stamps both into the binary (runtime/debug.BuildInfo)
// when it builds inside a git checkout with -buildvcs=true (the default
// unless GOFLAGS says -buildvcs=false). Builds that cannot stamp (a source
// tarball, a container build without .git) pass them with -ldflags:
//
//	go build -ldflags "-X github.com/rtcsuite/rtcsuite/internal/buildinfo.revision=$(git rev-parse HEAD)" ./cmd/turnd
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set with -ldflags -X; they win over what the toolchain stamped.
var (
	version  string
	revision string
)

// Info is what a binary knows about its own build.
type Info struct {
	Module   string // module path
	Version  string // module version, "(devel)" for an untagged local build
	Revision string // VCS revision, "" when unknown
	Time     string // commit time (RFC 3339), "" when unknown
	Modified bool   // the work tree had uncommitted changes
	Go       string // Go toolchain version
}

// Read returns the running binary's build information.
func Read() Info {
	in := Info{Version: "(devel)", Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		in.Module = bi.Main.Path
		if bi.Main.Version != "" {
			in.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				in.Revision = s.Value
			case "vcs.time":
				in.Time = s.Value
			case "vcs.modified":
				in.Modified = s.Value == "true"
			}
		}
	}
	if version != "" {
		in.Version = version
	}
	if revision != "" {
		in.Revision = revision
	}
	return in
}

// String is the --version line: "turnd v0.0.0-2026...-abcdef (revision
// abcdef..., 2026-11-28T23:00:00Z, modified) go1.26.0".
func (in Info) String() string {
	rev := in.Revision
	if rev == "" {
		rev = "unknown: built without VCS stamping (-buildvcs=false); see internal/buildinfo"
	}
	if in.Time != "" {
		rev += ", " + in.Time
	}
	if in.Modified {
		rev += ", modified"
	}
	return fmt.Sprintf("%s (revision %s) %s", in.Version, rev, in.Go)
}

// Line is the full --version output line for the command name.
func Line(name string) string { return name + " " + Read().String() }
