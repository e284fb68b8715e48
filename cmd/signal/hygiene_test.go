package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"
)

// TestDeployExampleConfig: deploy/signal.conf.example refuses to start with
// its placeholders, and starts once install.sh's generated secrets replace
// them (simulated here by environment variables, which beat the file).
func TestDeployExampleConfig(t *testing.T) {
	var stderr bytes.Buffer
	noEnv := func(string) string { return "" }
	code := run(context.Background(), []string{"--config", "../../deploy/signal.conf.example", "--listen", "127.0.0.1:0", "--tls-cert", "", "--tls-key", ""},
		runEnv{getenv: noEnv, stdout: io.Discard, stderr: &stderr})
	if code != exitConfig || strings.Count(stderr.String(), "placeholder") != 2 {
		t.Fatalf("exit %d, want both placeholder secrets refused:\n%s", code, stderr.String())
	}

	env := map[string]string{"SIGNAL_JWT_SECRET": strings.Repeat("j", 40), "SIGNAL_TURN_SECRET": "short-one"}
	ctx, cancel := context.WithCancel(context.Background())
	stderr.Reset()
	var logs syncBuffer
	done := make(chan int, 1)
	ready := make(chan struct{})
	go func() {
		done <- run(ctx, []string{"--config", "../../deploy/signal.conf.example", "--listen", "127.0.0.1:0", "--admin-listen", "", "--tls-cert", "", "--tls-key", ""},
			runEnv{getenv: func(k string) string { return env[k] }, stdout: io.Discard, stderr: &logs,
				ready: func(net.Addr, net.Addr) { close(ready) }})
	}()
	select {
	case <-ready:
	case code := <-done:
		t.Fatalf("exit %d:\n%s", code, logs.String())
	}
	cancel()
	<-done
	if !strings.Contains(logs.String(), "turn-secret is only 9 bytes") || strings.Contains(logs.String(), "short-one") {
		t.Errorf("want a warning about the short turn-secret that does not quote it:\n%s", logs.String())
	}
}

func TestVersionAndHelp(t *testing.T) {
	var stdout bytes.Buffer
	env := runEnv{getenv: func(string) string { return "" }, stdout: &stdout, stderr: io.Discard}
	if code := run(context.Background(), []string{"--version"}, env); code != exitOK || !strings.HasPrefix(stdout.String(), "signal ") {
		t.Errorf("--version: exit %d, %q", code, stdout.String())
	}
	stdout.Reset()
	if code := run(context.Background(), []string{"--help"}, env); code != exitOK {
		t.Fatalf("--help exit %d", code)
	}
	for _, l := range strings.Split(stdout.String(), "\n") {
		if strings.Contains(" "+l, " -") && !strings.Contains(" "+l, " --") && strings.HasPrefix(strings.TrimSpace(l), "-") {
			t.Errorf("single-dash flag in help: %q", l)
		}
	}
	if !strings.Contains(stdout.String(), "  --turn-secret string") {
		t.Errorf("help lacks --turn-secret:\n%s", stdout.String())
	}
}
