package main

import (
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/conf"
	"github.com/rtcsuite/rtcsuite/internal/turnrest"
	"github.com/rtcsuite/rtcsuite/relay"
)

func load(t *testing.T, args []string, env map[string]string) (loaded, error) {
	t.Helper()
	var o options
	fs := newFlagSet(&o)
	warnings, err := loadOptions(fs, args, func(k string) string { return env[k] })
	if err != nil {
		return loaded{}, err
	}
	defer func() { t.Logf("warnings: %q", warnings) }()
	l, err := o.build(io.Discard)
	return l, errors.Join(err, l.relay.Validate())
}

func TestExampleConfigParses(t *testing.T) {
	_, err := load(t, []string{"--config", "../../deploy/turnd.conf.example"}, nil)
	if !errors.Is(err, conf.ErrPlaceholderSecret) {
		t.Fatalf("the example's placeholder secret must be refused, got %v", err)
	}
	l, err := load(t, []string{"--config", "../../deploy/turnd.conf.example"},
		map[string]string{"TURND_STATIC_AUTH_SECRET": "9c1185a5c5e9fc54612808977ee8f548b2258d31"})
	if err != nil {
		t.Fatalf("deploy/turnd.conf.example: %v", err)
	}
	c := l.relay
	if c.Realm != "example.com" || c.UserQuota != 10 || c.TotalQuota != 10000 || c.MaxBPS != 1_000_000 || len(c.Secrets) != 1 {
		t.Fatalf("unexpected config: %+v", c)
	}
	if c.Peers.AllowLoopback || c.Peers.AllowPrivate {
		t.Fatal("example config opens the peer policy")
	}
}

func TestEnvAndFlags(t *testing.T) {
	l, err := load(t, []string{"--listening-ip", "127.0.0.1", "--external-ip", "203.0.113.10/10.0.0.5",
		"--user", "alice:secret", "--user", "bob:0x00112233445566778899aabbccddeeff",
		"--denied-peer-ip", "198.51.100.0/24", "--allowed-peer-ip", "10.0.0.1-10.0.0.6"},
		map[string]string{"TURND_STATIC_AUTH_SECRET": "s1,s2", "TURND_REALM": "env.realm"})
	if err != nil {
		t.Fatal(err)
	}
	c := l.relay
	if c.Realm != "env.realm" || len(c.Secrets) != 2 {
		t.Fatalf("env not applied: realm %q, %d secrets", c.Realm, len(c.Secrets))
	}
	if c.ExternalIPv4 != netip.MustParseAddr("203.0.113.10") || c.RelayIPv4 != netip.MustParseAddr("10.0.0.5") {
		t.Fatalf("external-ip: %v / %v", c.ExternalIPv4, c.RelayIPv4)
	}
	if len(c.Users) != 2 || string(c.Users[0].Key) != string(turnrest.LongTermKey("alice", "env.realm", "secret")) {
		t.Fatalf("users: %+v", c.Users)
	}
	want := []string{"10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"}
	var got []string
	for _, p := range c.Peers.Allowed {
		got = append(got, p.String())
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("range 10.0.0.1-10.0.0.6 = %v, want %v", got, want)
	}
}

func TestBadConfigReportsEverything(t *testing.T) {
	_, err := load(t, []string{"--log-format", "xml", "--user", "nopass", "--min-port", "5000", "--max-port", "4000",
		"--denied-peer-ip", "nonsense", "--rfc5780", "--listening-ip", "bad"}, nil)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"log-format", "nopass", "port range", "nonsense", "alt-listening-ip", "listening-ip \"bad\"", "no authentication"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "secret") && strings.Contains(err.Error(), "s3cr3t") {
		t.Error("a secret leaked into an error")
	}
}

func TestUserParsingNeverEchoesPassword(t *testing.T) {
	_, err := parseUser("alice", "r")
	if err == nil {
		t.Fatal("no error for a user without password")
	}
	_, err = parseUser("alice:0xnothex", "r")
	if err == nil || strings.Contains(err.Error(), "nothex") {
		t.Fatalf("bad key error %v must not echo the key", err)
	}
}

func FuzzParsePeerRange(f *testing.F) {
	f.Add("10.0.0.0/8")
	f.Add("10.0.0.1-10.0.0.9")
	f.Add("::1")
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := parsePeerRange(s)
		if err != nil {
			return
		}
		if len(ps) == 0 || len(ps) > 256 {
			t.Fatalf("%q gave %d prefixes", s, len(ps))
		}
	})
}

// --loop-raw-wait and --busy-slice: 0 on the command line is off
// (negative in relay.Config), and out-of-range values are refused.
func TestLoopDurationFlags(t *testing.T) {
	base := []string{"--user", "alice:secret"}
	rawWait := func(c relay.Config) time.Duration { return c.RawWait }
	busySlice := func(c relay.Config) time.Duration { return c.BusySlice }
	for _, tc := range []struct {
		flag    string
		field   func(relay.Config) time.Duration
		want    time.Duration
		wantErr string
	}{
		{"", rawWait, 5 * time.Millisecond, ""},
		{"--loop-raw-wait=2ms", rawWait, 2 * time.Millisecond, ""},
		{"--loop-raw-wait=0", rawWait, -1, ""}, // off
		{"--loop-raw-wait=500us", rawWait, 0, "loop raw wait 500µs"},
		{"--loop-raw-wait=1s", rawWait, 0, "loop raw wait 1s"},
		{"", busySlice, 500 * time.Microsecond, ""},
		{"--busy-slice=1ms", busySlice, time.Millisecond, ""},
		{"--busy-slice=0", busySlice, -1, ""}, // off
		{"--busy-slice=50us", busySlice, 0, "busy slice: time slice 50µs"},
		{"--busy-slice=1s", busySlice, 0, "busy slice: time slice 1s"},
	} {
		args := base
		if tc.flag != "" {
			args = append(append([]string{}, base...), tc.flag)
		}
		l, err := load(t, args, nil)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want one mentioning %q", tc.flag, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.flag, err)
		case tc.field(l.relay) != tc.want:
			t.Errorf("%q: config field %v, want %v", tc.flag, tc.field(l.relay), tc.want)
		}
	}
}
