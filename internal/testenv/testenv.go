// Package testenv decides whether a test that needs something from the
// machine (root, network namespaces, Chromium, coturn) may skip when it is
// missing. On a developer laptop it skips with a clear message; where
// RTCSUITE_REQUIRE_ALL=1 (set by .ci/run) a missing prerequisite fails the
// test instead, so CI can never pass by skipping.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// StrictVar is the environment variable that turns skips into failures.
const StrictVar = "RTCSUITE_REQUIRE_ALL"

// Strict reports whether missing prerequisites must fail tests.
func Strict() bool { return os.Getenv(StrictVar) == "1" }

// SkipOrFail skips t with reason, or fails it when Strict.
func SkipOrFail(t testing.TB, reason string) {
	t.Helper()
	if Strict() {
		t.Fatalf("%s (required because %s=1; run e2e/setup.sh as root)", reason, StrictVar)
	}
	t.Skipf("skipping: %s (set %s=1 to make this a failure)", reason, StrictVar)
}

// NeedRoot skips or fails unless the test runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root (network namespaces, nftables)")
	}
}

// NeedCommand returns the path of name, or skips or fails when it is not installed.
func NeedCommand(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		SkipOrFail(t, name+" not found (Debian package "+debianPackage+")")
	}
	return p
}
