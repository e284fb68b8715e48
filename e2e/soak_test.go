//go:build linux

package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/testenv"
)

// TestSoakShort is the CI version of bench/soak.sh: turnd and signal as
// built binaries for two minutes under TURN echo flows (UDP and TCP),
// relay-only pion data channels, turnutils_uclient runs, hub churn and
// bounded attack traffic (oversize and trickled frames, idle connections,
// floods, Connect over UDP, oversize hub messages). It fails when a
// legitimate flow loses data, a health probe fails, or RSS, goroutines or
// file descriptors keep growing (bench/soak/main.go has the checks).
func TestSoakShort(t *testing.T) {
	testenv.NeedCommand(t, "turnutils_uclient", "coturn")
	dir := t.TempDir()
	turnd := natlab_build(t, dir, "turnd")
	signal := natlab_build(t, dir, "signal")
	soak := filepath.Join(dir, "soak")
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", soak, "../bench/soak")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build soak: %v\n%s", err, out)
	}
	cmd := exec.CommandContext(ctx, soak, "-turnd", turnd, "-signal", signal, "-duration", "2m", "-sample", "5s")
	out, err := cmd.CombinedOutput()
	t.Logf("soak output:\n%s", out)
	if err != nil {
		t.Fatalf("soak failed: %v", err)
	}
}
