package natclass

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func runProbe(t *testing.T, opts Options) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	obs, err := Probe(ctx, opts)
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	return Classify(obs)
}

func TestProbeFakeNATAllCombinations(t *testing.T) {
	t.Parallel()
	behaviours := []Behavior{EndpointIndependent, AddressDependent, AddressAndPortDependent}
	classic := map[[2]Behavior]string{
		{EndpointIndependent, EndpointIndependent}:     ClassicFullCone,
		{EndpointIndependent, AddressDependent}:        ClassicRestrictedCone,
		{EndpointIndependent, AddressAndPortDependent}: ClassicPortRestrictedCone,
	}
	for _, m := range behaviours {
		for _, f := range behaviours {
			t.Run(string(m)+"/"+string(f), func(t *testing.T) {
				t.Parallel()
				srv := (&fakeServer{nat: true, mapping: m, filtering: f, preserve: true}).start(t)
				r := runProbe(t, probeOpts(srv.primary()))
				if r.Mapping != m || r.Filtering != f {
					t.Fatalf("got mapping %s filtering %s, want %s %s\nreasons: %s\nproblems: %s", r.Mapping, r.Filtering, m, f,
						strings.Join(r.Reasons, "\n"), strings.Join(r.Problems, "\n"))
				}
				if r.Verdict != VerdictComplete || r.NAT != Yes || r.UDPBlocked {
					t.Fatalf("verdict %s nat %s blocked %v", r.Verdict, r.NAT, r.UDPBlocked)
				}
				want := classic[[2]Behavior{m, f}]
				if want == "" {
					want = ClassicSymmetric
				}
				if r.Classic != want {
					t.Fatalf("classic %q, want %q", r.Classic, want)
				}
				if r.PublicAddr.Addr() != publicIP {
					t.Fatalf("public address %v", r.PublicAddr)
				}
				// The fake NAT's public address is not routable from here:
				// the hairpin test cannot send, so it must say unknown.
				if r.Hairpinning != Unknown {
					t.Fatalf("hairpinning %s, want unknown", r.Hairpinning)
				}
			})
		}
	}
}

func TestProbeLoopbackNoNAT(t *testing.T) {
	t.Parallel()
	srv := (&fakeServer{}).start(t)
	r := runProbe(t, probeOpts(srv.primary()))
	if r.NAT != No || r.Mapping != EndpointIndependent || r.Filtering != EndpointIndependent ||
		r.Classic != ClassicOpenInternet || r.Verdict != VerdictComplete || r.PortPreservation != Yes || r.Hairpinning != Yes {
		t.Fatalf("got %+v", r)
	}
}

func TestProbePortPreservation(t *testing.T) {
	t.Parallel()
	srv := (&fakeServer{nat: true, mapping: EndpointIndependent, filtering: EndpointIndependent}).start(t)
	r := runProbe(t, probeOpts(srv.primary()))
	if r.PortPreservation != No {
		t.Fatalf("port preservation %s, want no (%v)", r.PortPreservation, r.Reasons)
	}
}

func TestProbeRetransmitsThroughLoss(t *testing.T) {
	t.Parallel()
	// The first two copies of every transaction are dropped; only
	// retransmissions get through.
	srv := (&fakeServer{nat: true, mapping: AddressDependent, filtering: AddressDependent, dropFirst: 2}).start(t)
	r := runProbe(t, probeOpts(srv.primary()))
	if r.Mapping != AddressDependent || r.Filtering != AddressDependent {
		t.Fatalf("got %s/%s: %v", r.Mapping, r.Filtering, r.Reasons)
	}
	for _, e := range r.Observations.Exchanges {
		if e.Test == TestMapping && e.Answered && e.Transmissions < 3 {
			t.Fatalf("answered after %d transmissions, want >= 3: %+v", e.Transmissions, e)
		}
	}
}

func TestProbePlainServers(t *testing.T) {
	t.Parallel()
	t.Run("one", func(t *testing.T) {
		t.Parallel()
		srv := (&fakeServer{nat: true, plain: true, mapping: AddressAndPortDependent, filtering: AddressAndPortDependent}).start(t)
		r := runProbe(t, probeOpts(srv.primary()))
		if r.Mapping != BehaviorUnknown || r.Filtering != BehaviorUnknown || r.Verdict != VerdictPartial || r.NAT != Yes {
			t.Fatalf("got %s/%s %s: %v", r.Mapping, r.Filtering, r.Verdict, r.Reasons)
		}
	})
	// Two plain servers on different IPs: one fake server's two IPs serve as
	// two plain servers (the simulated NAT is shared, as it would be).
	for _, tc := range []struct {
		m, want Behavior
		classic string
	}{
		{EndpointIndependent, EndpointIndependent, ClassicUnknown},
		{AddressDependent, EndpointDependent, ClassicSymmetric},
		{AddressAndPortDependent, EndpointDependent, ClassicSymmetric},
	} {
		t.Run("two/"+string(tc.m), func(t *testing.T) {
			t.Parallel()
			srv := (&fakeServer{nat: true, plain: true, mapping: tc.m, filtering: AddressAndPortDependent}).start(t)
			r := runProbe(t, probeOpts(srv.addrs[0][0].String(), srv.addrs[1][1].String()))
			if r.Mapping != tc.want || r.Filtering != BehaviorUnknown || r.Classic != tc.classic || r.Verdict != VerdictPartial {
				t.Fatalf("got %s/%s %q %s: %v", r.Mapping, r.Filtering, r.Classic, r.Verdict, r.Reasons)
			}
		})
	}
	t.Run("same-ip-two-ports", func(t *testing.T) {
		t.Parallel()
		srv := (&fakeServer{nat: true, plain: true, mapping: AddressAndPortDependent, filtering: EndpointIndependent}).start(t)
		r := runProbe(t, probeOpts(srv.addrs[0][0].String(), srv.addrs[0][1].String()))
		if r.Mapping != AddressAndPortDependent {
			t.Fatalf("got %s: %v", r.Mapping, r.Reasons)
		}
	})
}

func TestProbeMisconfiguredServer(t *testing.T) {
	t.Parallel()
	for name, srv := range map[string]*fakeServer{
		"wrong RESPONSE-ORIGIN":   {wrongOrigin: true},
		"OTHER-ADDRESS same IP":   {otherSameIP: true},
		"ignores CHANGE-REQUEST":  {ignoreChange: true},
		"NAT + ignores CHANGE":    {nat: true, mapping: EndpointIndependent, filtering: AddressAndPortDependent, ignoreChange: true},
		"NAT + wrong origin only": {nat: true, mapping: EndpointIndependent, filtering: EndpointIndependent, wrongOrigin: true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv.start(t)
			r := runProbe(t, probeOpts(srv.primary()))
			if r.Verdict != VerdictMisconfigured || len(r.Problems) == 0 || r.Classic != ClassicUnknown {
				t.Fatalf("verdict %s classic %q problems %v", r.Verdict, r.Classic, r.Problems)
			}
			if r.Filtering != BehaviorUnknown {
				t.Fatalf("filtering %s from a misconfigured server", r.Filtering)
			}
		})
	}
}

func TestProbeUDPBlocked(t *testing.T) {
	t.Parallel()
	srv := (&fakeServer{dropEverything: true}).start(t)
	opts := probeOpts(srv.primary())
	opts.Timeout = 300 * time.Millisecond
	r := runProbe(t, opts)
	if !r.UDPBlocked || r.Verdict != VerdictUDPBlocked || r.Classic != ClassicBlocked {
		t.Fatalf("got %+v", r)
	}
	if e := r.Observations.Exchanges[0]; e.Transmissions < 2 {
		t.Fatalf("only %d transmissions before giving up", e.Transmissions)
	}
}

func TestProbeLifetime(t *testing.T) {
	t.Parallel()
	srv := (&fakeServer{nat: true, mapping: EndpointIndependent, filtering: AddressAndPortDependent}).start(t)
	opts := probeOpts(srv.primary())
	opts.Lifetime = true
	opts.LifetimeSteps = []time.Duration{10 * time.Millisecond, 20 * time.Millisecond}
	r := runProbe(t, opts)
	// The fake NAT never expires mappings: alive after the longest step.
	if r.MappingLifetime == nil || r.MappingLifetime.AliveS != 0.02 || r.MappingLifetime.ExpiredS != 0 {
		t.Fatalf("lifetime %+v: %v", r.MappingLifetime, r.Reasons)
	}

	plain := (&fakeServer{nat: true, plain: true, mapping: EndpointIndependent, filtering: EndpointIndependent}).start(t)
	opts = probeOpts(plain.primary())
	opts.Lifetime = true
	opts.LifetimeSteps = []time.Duration{10 * time.Millisecond}
	r = runProbe(t, opts)
	if r.MappingLifetime != nil {
		t.Fatalf("lifetime from a server without RESPONSE-PORT: %+v", r.MappingLifetime)
	}
}

func TestProbeErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if _, err := Probe(ctx, Options{}); !errors.Is(err, ErrNoServers) {
		t.Fatalf("no servers: %v", err)
	}
	if _, err := Probe(ctx, Options{Servers: []string{"[::1]:3478"}}); !errors.Is(err, ErrNoServers) {
		t.Fatalf("IPv6 server for IPv4 probe: %v", err)
	}
	if _, err := Probe(ctx, Options{Servers: []string{"127.0.0.1:0"}}); !errors.Is(err, ErrNoServers) {
		t.Fatalf("port 0: %v", err)
	}
	if _, err := Probe(ctx, Options{Servers: []string{"127.0.0.1:1"}, Family: "ipx"}); err == nil {
		t.Fatal("bad family accepted")
	}
}

func TestRetransmissionSchedule(t *testing.T) {
	t.Parallel()
	want := []time.Duration{100, 200, 250, 250, 250}
	for i, w := range want {
		if got := defaultSchedule.next(i + 1); got != w*time.Millisecond {
			t.Errorf("default interval after copy %d: %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	if got := patientSchedule.next(10); got != 2*time.Second {
		t.Errorf("patient cap %v", got)
	}
	// A silent server gets exactly MinCopies copies per test by default,
	// however late the timers fire.
	srv := (&fakeServer{dropEverything: true}).start(t)
	r := runProbe(t, probeOpts(srv.primary()))
	if e := r.Observations.Exchanges[0]; e.Transmissions != defaultSchedule.MinCopies {
		t.Fatalf("%d copies, want %d", e.Transmissions, defaultSchedule.MinCopies)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.requests != defaultSchedule.MinCopies {
		t.Fatalf("server saw %d requests, want %d", srv.requests, defaultSchedule.MinCopies)
	}
}
