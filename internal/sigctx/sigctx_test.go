package sigctx

import (
	"bytes"
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestSecondSignalExits(t *testing.T) {
	sigs := make(chan os.Signal)
	exited := make(chan int, 1)
	var stderr bytes.Buffer
	ctx, stop := Watch(context.Background(), sigs, "turnd", &stderr, func(code int) { exited <- code })
	defer stop()

	sigs <- syscall.SIGTERM
	<-ctx.Done() // the first signal starts the drain
	select {
	case code := <-exited:
		t.Fatalf("exited (%d) on the first signal", code)
	default:
	}
	sigs <- os.Interrupt
	if code := <-exited; code != 130 {
		t.Errorf("exit code %d after a second SIGINT, want 130", code)
	}
	if !strings.Contains(stderr.String(), "second interrupt during drain") {
		t.Errorf("stderr %q", stderr.String())
	}
}

func TestStopWithoutSignal(t *testing.T) {
	sigs := make(chan os.Signal)
	ctx, stop := Watch(context.Background(), sigs, "x", &bytes.Buffer{}, func(int) { t.Error("exit called") })
	stop()
	stop() // idempotent
	if ctx.Err() == nil {
		t.Error("stop did not cancel the context")
	}
}

func TestExitCode(t *testing.T) {
	if ExitCode(syscall.SIGTERM) != 143 || ExitCode(os.Interrupt) != 130 {
		t.Errorf("exit codes %d %d", ExitCode(syscall.SIGTERM), ExitCode(os.Interrupt))
	}
}
