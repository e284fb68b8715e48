package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPackageGraph keeps the design's import rules: relay, signaling,
// natclass and web are siblings that never import one another, web imports
// nothing of the project, and the TURN REST credential package is standard
// library only (both the relay and the hub's command depend on it).
func TestPackageGraph(t *testing.T) {
	const mod = "github.com/rtcsuite/rtcsuite/"
	siblings := []string{"relay", "signaling", "natclass", "web"}
	deps := func(pkg string) []string {
		out, err := exec.Command("go", "list", "-deps", mod+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		return strings.Fields(string(out))
	}
	for _, p := range siblings {
		for _, d := range deps(p) {
			for _, other := range siblings {
				if other != p && (d == mod+other || strings.HasPrefix(d, mod+other+"/")) {
					t.Errorf("%s imports its sibling %s", p, other)
				}
			}
			if p == "web" && strings.HasPrefix(d, mod) && d != mod+"web" {
				t.Errorf("web imports project package %s", d)
			}
		}
	}
	for _, d := range deps("internal/turnrest") {
		if strings.Contains(strings.SplitN(d, "/", 2)[0], ".") && d != mod+"internal/turnrest" {
			t.Errorf("internal/turnrest depends on non-stdlib %s", d)
		}
	}
}
