package main

import (
	"bytes"
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/fleet"
	"github.com/rtcsuite/rtcsuite/internal/turnrest"
)

func TestClusterConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"bad redis url", []string{"-allow-open", "-redis", "http://x"}, []string{"redis: redis URL"}},
		{"node ttl below two heartbeats", []string{"-allow-open", "-redis", "redis://127.0.0.1:1", "-node-heartbeat", "1s", "-node-ttl", "1s"}, []string{"node-ttl"}},
		{"node id with a colon", []string{"-allow-open", "-redis", "redis://127.0.0.1:1", "-node-id", "a:b"}, []string{"node-id"}},
		{"negative fleet", []string{"-allow-open", "-redis", "redis://127.0.0.1:1", "-turn-fleet", "-1"}, []string{"turn-fleet"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, runEnv{
				getenv: func(string) string { return "" }, stdout: &stdout, stderr: &stderr,
				ready: func(net.Addr, net.Addr) { t.Error("started serving with a bad configuration") },
			})
			if code != exitConfig {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, exitConfig, stderr.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr does not mention %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}

// A hub told to use a Redis it cannot reach refuses to start, saying so.
func TestClusterRedisUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-allow-open", "-listen", "127.0.0.1:0", "-admin-listen", "", "-redis", "redis://" + addr}, runEnv{
		getenv: func(string) string { return "" }, stdout: &stdout, stderr: &stderr,
		ready: func(net.Addr, net.Addr) { t.Error("started serving without its Redis") },
	})
	if code != exitFail || !strings.Contains(stderr.String(), "redis") {
		t.Fatalf("exit code %d, stderr:\n%s", code, stderr.String())
	}
}

func TestWithFleet(t *testing.T) {
	secret := []byte("fleet-secret")
	now := time.Unix(1_700_000_000, 0)
	base := iceServersFunc([]string{"stun:stun.example:3478"}, nil, time.Hour, func() time.Time { return now })
	var relays []fleet.Relay
	f := withFleet(base, func() []fleet.Relay { return relays }, secret, time.Hour, func() time.Time { return now })

	servers, exp := f("peer1")
	if len(servers) != 1 || !exp.IsZero() {
		t.Fatalf("without relays: %+v, %v; want the static STUN server only", servers, exp)
	}
	relays = []fleet.Relay{{ID: "b", URLs: []string{"turn:b:3478?transport=udp", "turn:b:3478?transport=tcp"}}, {ID: "c", URLs: []string{"turn:c:3478"}}}
	servers, exp = f("peer1")
	if len(servers) != 2 || !slices.Equal(servers[1].URLs, []string{"turn:b:3478?transport=udp", "turn:b:3478?transport=tcp", "turn:c:3478"}) {
		t.Fatalf("with relays: %+v", servers)
	}
	want := turnrest.Mint(secret, "peer1", now.Add(time.Hour))
	if servers[1].Username != want.Username || servers[1].Credential != want.Password || !exp.Equal(want.Expires) {
		t.Fatalf("fleet credential %+v (expires %v), want %+v", servers[1], exp, want)
	}
}
