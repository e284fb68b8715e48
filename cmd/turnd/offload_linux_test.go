package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rtcsuite/rtcsuite/internal/testenv"
)

// TestRunReloadOffload: SIGHUP re-reads offload= from the config file and
// switches the kernel path on and off in a running turnd.
func TestRunReloadOffload(t *testing.T) {
	testenv.NeedRoot(t)
	file := filepath.Join(t.TempDir(), "turnd.conf")
	write := func(mode string) {
		t.Helper()
		if err := os.WriteFile(file, []byte("static-auth-secret=reload-offload-secret\noffload="+mode+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("off")
	// The relay range lies above the ephemeral ports the port-0 listener
	// takes, as the program requires.
	r := startTurndRun(t, "--config", file, "--min-port", "61000", "--max-port", "61999")
	active := regexp.MustCompile(`(?m)^turnd_offload_active (\S+)$`)
	state := func() string {
		t.Helper()
		_, body := r.get(t, "/metrics")
		m := active.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no turnd_offload_active in /metrics")
		}
		return m[1]
	}
	reload := func() {
		// Unbuffered: once the second send is taken, the first reload is done.
		r.reload <- os.Interrupt
		r.reload <- os.Interrupt
	}
	if s := state(); s != "0" {
		t.Fatalf("offload=off: turnd_offload_active %s", s)
	}
	write("tc")
	reload()
	if s := state(); s != "1" {
		if strings.Contains(r.stderr.String(), "cannot start") {
			testenv.SkipOrFail(t, "the eBPF kernel path cannot start here:\n"+r.stderr.String())
		}
		t.Fatalf("offload=tc after SIGHUP: turnd_offload_active %s", s)
	}
	write("off")
	reload()
	if s := state(); s != "0" {
		t.Fatalf("offload=off after SIGHUP: turnd_offload_active %s", s)
	}
	if !strings.Contains(r.stderr.String(), "offload: kernel path off") {
		t.Errorf("no log line for turning the kernel path off:\n%s", r.stderr.String())
	}
}
