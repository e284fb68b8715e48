package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestVersionAndHelpDashes(t *testing.T) {
	var stdout, stderr bytes.Buffer
	getenv := func(string) string { return "" }
	if code := run(context.Background(), []string{"--version"}, getenv, &stdout, &stderr); code != exitOK || !strings.HasPrefix(stdout.String(), "natprobe ") {
		t.Errorf("--version: exit %d, %q %q", code, stdout.String(), stderr.String())
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"--help"}, getenv, &stdout, &stderr); code != exitOK {
		t.Fatalf("--help exit %d", code)
	}
	if !strings.Contains(stderr.String(), "  --server host:port") {
		t.Errorf("help lacks --server:\n%s", stderr.String())
	}
	for _, l := range strings.Split(stderr.String(), "\n") {
		short := len(l) == 4 || len(l) > 4 && l[4] == ' ' // one-letter flags keep one dash: -4, -q
		if strings.HasPrefix(l, "  -") && !strings.HasPrefix(l, "  --") && !short {
			t.Errorf("single-dash flag in help: %q", l)
		}
	}
}
