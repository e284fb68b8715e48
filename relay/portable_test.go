package relay

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// portableMode makes newTestServer build servers the way every platform
// but Linux runs them: no user-space fast path (pion carries every
// packet), no relay loops, one socket per UDP listener address. Set only
// by TestPortablePath.
var portableMode atomic.Bool

// TestPortablePath runs the relay's behaviour tests on the path macOS,
// Windows and FreeBSD take (netlink_other.go, mmsg_other.go,
// udpsockets_other.go), which Linux CI otherwise never exercises: relaying
// over UDP, TCP and TLS, RFC 6062, the peer policy, quotas, permission and
// channel bounds, bandwidth limits, metrics, drain and bad input must hold
// there exactly as on the fast path.
func TestPortablePath(t *testing.T) {
	portableMode.Store(true)
	noRelayLoops.Store(true)
	t.Cleanup(func() { // after every subtest, parallel ones included
		portableMode.Store(false)
		noRelayLoops.Store(false)
	})
	for _, tc := range []struct {
		name string
		test func(*testing.T)
	}{
		{"RelayUDPTCPTLS", TestRelayUDPTCPTLS},
		{"RelayIPv6", TestRelayIPv6},
		{"TCPRelayRFC6062", TestTCPRelayRFC6062},
		{"PeerPolicyEnforced", TestPeerPolicyEnforced},
		{"ForbiddenPeerAnswers", TestForbiddenPeerAnswers},
		{"RelayToRelay", TestRelayToRelay},
		{"Quotas", TestQuotas},
		{"PermissionAndChannelBounds", TestPermissionAndChannelBounds},
		{"BandwidthLimitDrops", TestBandwidthLimitDrops},
		{"MetricsPresentFromStart", TestMetricsPresentFromStart},
		{"AuthErrors", TestAuthErrors},
		{"BadInput", TestBadInput},
		{"Drain", TestDrain},
	} {
		t.Run(tc.name, tc.test)
	}
}

// TestNoKernelPath: off Linux, --offload=tc is a start-up error naming
// the platform, auto relays in user space with one note, off is silent.
func TestNoKernelPath(t *testing.T) {
	for _, tc := range []struct {
		mode     OffloadMode
		wantNote bool
		wantErr  string
	}{
		{OffloadTC, false, "needs Linux, this is darwin"},
		{OffloadAuto, true, ""},
		{OffloadOff, false, ""},
	} {
		note, err := noKernelPath(tc.mode, "darwin")
		if note != tc.wantNote {
			t.Errorf("%s: note=%v, want %v", tc.mode, note, tc.wantNote)
		}
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: unexpected error %v", tc.mode, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want one containing %q", tc.mode, err, tc.wantErr)
		}
	}
}

// TestPollAddresses: where there are no address events (off Linux), own
// addresses are re-read on a timer, and Close ends the poller.
func TestPollAddresses(t *testing.T) {
	refreshed := make(chan struct{}, 1)
	srv := newTestServer(t, func(c *Config) {
		c.onSelfRefresh = func() {
			select {
			case refreshed <- struct{}{}:
			default:
			}
		}
	})
	srv.pollAddresses(time.Millisecond)
	for i := 0; i < 3; i++ {
		select {
		case <-refreshed:
		case <-time.After(time.Minute): // a hang guard, not a measurement
			t.Fatalf("own addresses re-read %d times, want 3", i)
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	select {
	case err := <-closed:
		if err != nil && !errors.Is(err, ErrClosed) {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Close did not return: the address poller did not stop")
	}
}
