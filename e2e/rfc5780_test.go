package e2e

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rtcsuite/rtcsuite/natclass"
	"github.com/rtcsuite/rtcsuite/relay"
)

// TestNatprobeAgainstTurndOnLoopback runs the natclass probe against a
// whole turnd (not just its responder) on loopback, where there is no NAT:
// with RFC 5780 on, every test is possible and the answer is "open
// internet"; without it, turnd is a plain STUN server and filtering must
// come out unknown rather than guessed.
func TestNatprobeAgainstTurndOnLoopback(t *testing.T) {
	probe := func(t *testing.T, server net.Addr, lifetime bool) natclass.Result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		obs, err := natclass.Probe(ctx, natclass.Options{
			Servers: []string{server.String()},
			Listen: func(ctx context.Context) (net.PacketConn, error) {
				var lc net.ListenConfig
				return lc.ListenPacket(ctx, "udp4", "127.0.0.1:0")
			},
			LocalAddrs:    []netip.Addr{netip.MustParseAddr("127.0.0.1")},
			Lifetime:      lifetime,
			LifetimeSteps: []time.Duration{20 * time.Millisecond},
		})
		if err != nil {
			t.Fatalf("probe: %v", err)
		}
		return natclass.Classify(obs)
	}
	start := func(t *testing.T, rfc *relay.RFC5780Config) *relay.Server {
		t.Helper()
		srv, err := relay.New(relay.Config{
			Listeners: []relay.Listener{{Network: "udp", Addr: "127.0.0.1:0"}},
			Secrets:   [][]byte{[]byte("s")},
			RFC5780:   rfc,
			Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		return srv
	}

	t.Run("rfc5780", func(t *testing.T) {
		// 127.0.0.2 is loopback too on Linux; the alternate port must be free.
		alt, err := net.ListenPacket("udp4", "127.0.0.2:0")
		if err != nil {
			t.Skipf("no 127.0.0.2: %v", err)
		}
		altPort := alt.LocalAddr().(*net.UDPAddr).Port
		alt.Close()
		srv := start(t, &relay.RFC5780Config{AlternateIP: netip.MustParseAddr("127.0.0.2"), AlternatePort: altPort, Rate: -1})
		r := probe(t, srv.Addr("udp"), true)
		if r.Verdict != natclass.VerdictComplete || r.NAT != natclass.No || r.Mapping != natclass.EndpointIndependent ||
			r.Filtering != natclass.EndpointIndependent || r.Classic != natclass.ClassicOpenInternet || r.Hairpinning != natclass.Yes {
			t.Fatalf("got %s nat=%s %s/%s %q hairpin=%s\nreasons: %s\nproblems: %s", r.Verdict, r.NAT, r.Mapping,
				r.Filtering, r.Classic, r.Hairpinning, strings.Join(r.Reasons, "\n"), strings.Join(r.Problems, "\n"))
		}
		if r.MappingLifetime == nil {
			t.Fatalf("no mapping lifetime measured via RESPONSE-PORT: %v", r.Reasons)
		}
	})
	t.Run("plain", func(t *testing.T) {
		srv := start(t, nil)
		r := probe(t, srv.Addr("udp"), false)
		if r.Filtering != natclass.BehaviorUnknown || r.Verdict != natclass.VerdictPartial || r.NAT != natclass.No {
			t.Fatalf("plain server: %s filtering %s nat %s: %v", r.Verdict, r.Filtering, r.NAT, r.Reasons)
		}
	})
}
