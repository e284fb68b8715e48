package buildinfo

import (
	"strings"
	"testing"
)

func TestLdflagsWin(t *testing.T) {
	oldV, oldR := version, revision
	t.Cleanup(func() { version, revision = oldV, oldR })
	version, revision = "v1.2.3", "0123456789abcdef"
	in := Read()
	if in.Version != "v1.2.3" || in.Revision != "0123456789abcdef" {
		t.Fatalf("%+v", in)
	}
	if l := Line("turnd"); !strings.HasPrefix(l, "turnd v1.2.3 (revision 0123456789abcdef") {
		t.Errorf("Line = %q", l)
	}
}

func TestUnknownRevisionSaysWhy(t *testing.T) {
	if s := (Info{Version: "(devel)", Go: "go1"}).String(); !strings.Contains(s, "-buildvcs") {
		t.Errorf("%q does not say how to get a revision", s)
	}
}
