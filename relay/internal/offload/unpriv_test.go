//go:build linux

package offload

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rtcsuite/rtcsuite/internal/testenv"
)

const unprivChildEnv = "RTCSUITE_OFFLOAD_UNPRIV_CHILD"

// TestLoadUnprivileged runs Load as nobody with no capabilities (setpriv):
// it must fail with an error a caller in "auto" mode falls back on, not
// panic and not half-load.
func TestLoadUnprivileged(t *testing.T) {
	if os.Getenv(unprivChildEnv) == "1" {
		e, err := Load(testConfig)
		if err == nil {
			e.Close()
			t.Fatal("Load succeeded without privileges")
		}
		if !errors.Is(err, ErrPermission) && !errors.Is(err, ErrUnsupported) {
			t.Fatalf("Load = %v, want ErrPermission or ErrUnsupported", err)
		}
		fmt.Printf("unprivileged Load refused: %v\n", err)
		return
	}
	testenv.NeedRoot(t)
	setpriv := testenv.NeedCommand(t, "setpriv", "util-linux")

	// The test binary sits in a root-only build directory: copy it where
	// nobody may run it.
	dir, err := os.MkdirTemp("", "ebpf-unpriv-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	must(t, os.Chmod(dir, 0o755))
	self, err := os.Executable()
	must(t, err)
	bin := filepath.Join(dir, "offload.test")
	must(t, copyFile(self, bin))

	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs",
		bin, "-test.run=^TestLoadUnprivileged$", "-test.count=1")
	cmd.Env = append(os.Environ(), unprivChildEnv+"=1")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("unprivileged child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "unprivileged Load refused") {
		t.Fatalf("child did not run the check:\n%s", out)
	}
	t.Logf("%s", strings.TrimSpace(strings.Split(string(out), "\n")[0]))
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
