package natclass

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/pion/stun/v4"
)

// Retransmission defaults. A negative answer (a filter dropping an answer)
// costs one Timeout; the default run is about two of them. RFC 8489's own
// schedule (500 ms doubling, 39.5 s) would make every negative answer cost
// 39.5 s.
const (
	// DefaultTimeout is how long one test waits for an answer.
	DefaultTimeout = 1600 * time.Millisecond
	// PatientTimeout is the per-test wait with Options.Patient.
	PatientTimeout = 10 * time.Second
	// DefaultPort is the STUN port used when a server has none.
	DefaultPort = 3478
)

var (
	defaultSchedule = schedule{RTO: 100 * time.Millisecond, MaxRTO: 250 * time.Millisecond, Timeout: DefaultTimeout, MinCopies: 8}
	patientSchedule = schedule{RTO: 250 * time.Millisecond, MaxRTO: 2 * time.Second, Timeout: PatientTimeout, MinCopies: 8}
)

// Adaptive schedule bounds. Once the first answers have measured the round
// trip, every later test sends adaptiveCopies copies spaced by
// 2*RTT+adaptiveSlack (within [adaptiveMinRTO, adaptiveMaxRTO]) and waits one
// spacing after the last. A path that answers at all loses all copies of a
// test with probability q^adaptiveCopies, q the round-trip loss: at 20% loss
// each way (q = 0.36) that is 5e-6 per test, where 8 copies gave 3e-4.
const (
	adaptiveCopies = 12
	adaptiveMinRTO = 30 * time.Millisecond
	adaptiveMaxRTO = 250 * time.Millisecond
	adaptiveSlack  = 20 * time.Millisecond
)

// adaptiveSchedule is the schedule for a measured round trip rtt.
func adaptiveSchedule(rtt time.Duration) schedule {
	rto := min(max(2*rtt+adaptiveSlack, adaptiveMinRTO), adaptiveMaxRTO)
	return schedule{RTO: rto, MaxRTO: rto, MinCopies: adaptiveCopies}
}

// measuredRTT is the longest round trip to the servers that answered, when
// every answer came back before any retransmission (Karn's rule: an answer
// after a retransmission cannot be matched to one copy). The longest,
// because the later tests go to one of these servers, maybe the farthest.
func measuredRTT(ex []Exchange) (time.Duration, bool) {
	longest, ok := time.Duration(0), false
	for _, e := range ex {
		if !e.Answered {
			continue
		}
		if e.Transmissions != 1 || e.ElapsedMS <= 0 {
			return 0, false
		}
		longest, ok = max(longest, time.Duration(e.ElapsedMS*float64(time.Millisecond))), true
	}
	return longest, ok
}

// DefaultLifetimeSteps are the idle times tried when measuring the mapping
// lifetime. RFC 4787 REQ-5 asks for at least 2 minutes, recommends 5.
var DefaultLifetimeSteps = []time.Duration{
	5 * time.Second, 10 * time.Second, 20 * time.Second, 30 * time.Second, 45 * time.Second,
	60 * time.Second, 90 * time.Second, 120 * time.Second, 180 * time.Second, 300 * time.Second,
}

// ErrNoServers means no server address of the probed family was usable.
var ErrNoServers = errors.New("natclass: no usable server")

// Options configure Probe.
type Options struct {
	// Servers are STUN servers as host:port (port default 3478). The first
	// one that sends a usable OTHER-ADDRESS is used for the RFC 5780 tests;
	// all of them are asked from the mapping socket.
	Servers []string
	// Family is "ipv4" (default) or "ipv6".
	Family string
	// Listen returns a fresh local UDP socket on every call (tests that must
	// not inherit NAT state each get one). Default: the unspecified address
	// of Family, port 0.
	Listen func(ctx context.Context) (net.PacketConn, error)
	// Resolve looks up a host name ("ip4" or "ip6" network). Default
	// net.DefaultResolver.LookupNetIP.
	Resolve func(ctx context.Context, network, host string) ([]netip.Addr, error)
	// LocalAddrs are the host's addresses, to recognise "no NAT". Default:
	// the interface addresses of Family.
	LocalAddrs []netip.Addr
	// Patient waits longer (PatientTimeout per test, slower retransmissions)
	// for lossy or slow paths.
	Patient bool
	// Timeout overrides the per-test wait. By default a test also sends at
	// least 8 copies however late timers fire on a loaded machine; with an
	// explicit Timeout it sends at least 2.
	//
	// Without Patient or Timeout the probe adapts: the first answers measure
	// the round trip, and every later test sends 12 copies spaced by about
	// twice that (30-250 ms), so a negative answer costs about 0.4 s on a
	// fast path instead of DefaultTimeout.
	Timeout time.Duration
	// Dial opens a UDP socket connected to a server. The probe asks every
	// server once from such a socket first, because only a connected socket
	// learns of an ICMP port unreachable: that tells a closed server port
	// from a network that drops UDP. Default: net.Dialer for Family; when
	// Listen is set and Dial is not, this check is skipped.
	Dial func(ctx context.Context, to netip.AddrPort) (net.Conn, error)
	// Lifetime also measures the mapping lifetime (takes up to the longest
	// of LifetimeSteps).
	Lifetime bool
	// LifetimeSteps are the idle times tried (default DefaultLifetimeSteps).
	LifetimeSteps []time.Duration
	// Progress, when set, receives one line per finished test.
	Progress func(line string)
}

// LocalAddrs returns the host's interface addresses of a family ("ipv4" or
// "ipv6"), without zones.
func LocalAddrs(family string) []netip.Addr {
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range ifAddrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := pfx.Addr().Unmap().WithZone("")
		if ip.Is4() == (family != "ipv6") {
			out = append(out, ip)
		}
	}
	return out
}

type prober struct {
	opts     Options
	sched    schedule
	adaptive bool // switch to adaptiveSchedule once the RTT is measured
	mux      *mux
	obs      *Observations
	mu       sync.Mutex // guards obs.Exchanges
}

// Probe runs the tests against opts.Servers and returns what it observed;
// Classify turns that into a Result. Network silence is an observation, not
// an error: Probe fails only when no server can be used or no socket can be
// opened. Independent tests run concurrently; the whole run takes about two
// test timeouts (plus the lifetime steps with Options.Lifetime).
func Probe(ctx context.Context, opts Options) (Observations, error) {
	if opts.Family == "" {
		opts.Family = "ipv4"
	}
	if opts.Family != "ipv4" && opts.Family != "ipv6" {
		return Observations{}, fmt.Errorf("natclass: family %q is not ipv4 or ipv6", opts.Family)
	}
	sched := defaultSchedule
	if opts.Patient {
		sched = patientSchedule
	}
	if opts.Timeout > 0 {
		// An explicit budget is the user's call: keep only one
		// retransmission as a minimum.
		sched.Timeout = opts.Timeout
		sched.MinCopies = 2
	}
	adaptive := !opts.Patient && opts.Timeout == 0
	if opts.Listen == nil && opts.Dial == nil {
		network := "udp4"
		if opts.Family == "ipv6" {
			network = "udp6"
		}
		opts.Dial = func(ctx context.Context, to netip.AddrPort) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, to.String())
		}
	}
	if opts.Listen == nil {
		network, addr := "udp4", "0.0.0.0:0"
		if opts.Family == "ipv6" {
			network, addr = "udp6", "[::]:0"
		}
		opts.Listen = func(ctx context.Context) (net.PacketConn, error) {
			var lc net.ListenConfig
			return lc.ListenPacket(ctx, network, addr)
		}
	}
	if opts.LocalAddrs == nil {
		opts.LocalAddrs = LocalAddrs(opts.Family)
	}
	obs := Observations{Family: opts.Family, RFC5780Server: -1, LocalAddrs: slices.Clone(opts.LocalAddrs), Lifetime: opts.Lifetime}
	if obs.LocalAddrs == nil {
		obs.LocalAddrs = []netip.Addr{}
	}
	var skipped []error
	for _, name := range opts.Servers {
		ap, err := resolveServer(ctx, opts, name)
		if err != nil {
			skipped = append(skipped, err)
			continue
		}
		obs.Servers = append(obs.Servers, Server{Name: name, Addr: ap})
	}
	if len(opts.Servers) == 0 {
		return obs, fmt.Errorf("%w: no server given", ErrNoServers)
	}
	if len(obs.Servers) == 0 {
		return obs, fmt.Errorf("%w for %s: %w", ErrNoServers, opts.Family, errors.Join(skipped...))
	}
	p := &prober{opts: opts, sched: sched, adaptive: adaptive, mux: newMux(opts.Listen), obs: &obs}
	defer p.mux.close()
	for _, err := range skipped {
		p.progress("skipping server: %v", err)
	}
	if err := p.run(ctx); err != nil {
		return obs, err
	}
	return obs, nil
}

func resolveServer(ctx context.Context, opts Options, name string) (netip.AddrPort, error) {
	host, portStr, err := net.SplitHostPort(name)
	if err != nil {
		host, portStr = name, strconv.Itoa(DefaultPort)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return netip.AddrPort{}, fmt.Errorf("server %q: bad port %q", name, portStr)
	}
	if host == "" {
		return netip.AddrPort{}, fmt.Errorf("server %q: no host", name)
	}
	want4 := opts.Family == "ipv4"
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if ip.Is4() != want4 {
			return netip.AddrPort{}, fmt.Errorf("server %q is not an %s address", name, opts.Family)
		}
		return netip.AddrPortFrom(ip, uint16(port)), nil
	}
	network := "ip4"
	if !want4 {
		network = "ip6"
	}
	resolve := opts.Resolve
	if resolve == nil {
		resolve = net.DefaultResolver.LookupNetIP
	}
	ips, err := resolve(ctx, network, host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("server %q: %w", name, err)
	}
	for _, ip := range ips {
		ip = ip.Unmap()
		if ip.Is4() == want4 {
			return netip.AddrPortFrom(ip, uint16(port)), nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("server %q has no %s address", name, opts.Family)
}

func (p *prober) progress(format string, args ...any) {
	if p.opts.Progress != nil {
		p.opts.Progress(fmt.Sprintf(format, args...))
	}
}

// begin records e and returns its index; finish stores its outcome.
func (p *prober) begin(e Exchange) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.obs.Exchanges = append(p.obs.Exchanges, e)
	return len(p.obs.Exchanges) - 1
}

func (p *prober) finish(i int, e Exchange) {
	p.mu.Lock()
	p.obs.Exchanges[i] = e
	p.mu.Unlock()
	p.progress("%s", describe(e))
}

func describe(e Exchange) string {
	what := string(e.Test)
	if e.Change != ChangeNone {
		what += " (change " + string(e.Change) + ")"
	}
	if e.ResponsePort != 0 {
		what += fmt.Sprintf(" (answer to port %d after %gs idle)", e.ResponsePort, e.IdleSeconds)
	}
	head := fmt.Sprintf("%-28s %v -> %v", what, e.Local, e.To)
	switch {
	case e.Error != "" && !e.Answered:
		return head + ": " + e.Error
	case !e.Answered:
		return fmt.Sprintf("%s: no answer (%d tries)", head, e.Transmissions)
	case e.ErrorCode != 0:
		return fmt.Sprintf("%s: error %d %s from %v", head, e.ErrorCode, e.Error, e.From)
	case e.Test == TestHairpin:
		return fmt.Sprintf("%s: arrived on socket %d from %v (%.0f ms)", head, e.ReceivedOn, e.From, e.ElapsedMS)
	case e.Test == TestLifetime:
		return fmt.Sprintf("%s: arrived on socket %d (%.0f ms)", head, e.ReceivedOn, e.ElapsedMS)
	default:
		return fmt.Sprintf("%s: mapped %v, from %v (%.0f ms, %d tries)", head, e.Mapped, e.From, e.ElapsedMS, e.Transmissions)
	}
}

func bindingRequest(change Change, responsePort uint16) *stun.Message {
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest}
	var flags byte
	switch change {
	case ChangeIP:
		flags = 0x04
	case ChangePort:
		flags = 0x02
	case ChangeIPPort:
		flags = 0x06
	}
	if change != ChangeNone {
		setters = append(setters, stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, flags}})
	}
	if responsePort != 0 {
		setters = append(setters, stun.RawAttribute{Type: stun.AttrResponsePort, Value: []byte{byte(responsePort >> 8), byte(responsePort), 0, 0}})
	}
	setters = append(setters, stun.Fingerprint)
	return stun.MustBuild(setters...)
}

// binding runs one Binding transaction from s to server srv at to and
// records it.
func (p *prober) binding(ctx context.Context, test Test, s *sock, srv int, to netip.AddrPort, change Change) Exchange {
	e := Exchange{Test: test, Socket: s.id, Local: s.local, Server: srv, To: to, Change: change}
	idx := p.begin(e)
	req := bindingRequest(change, 0)
	p.mux.transact(ctx, s, to, req, p.sched, &e, func(a arrival) bool {
		if a.msg.Type.Method != stun.MethodBinding || a.msg.Type.Class == stun.ClassRequest || a.msg.Type.Class == stun.ClassIndication {
			return false
		}
		readAnswer(&e, a)
		return true
	})
	p.finish(idx, e)
	return e
}

func (p *prober) run(ctx context.Context) error {
	s1, err := p.mux.open(ctx)
	if err != nil {
		return fmt.Errorf("natclass: open socket: %w", err)
	}
	servers := p.obs.Servers

	// Phase 1: test I towards every server from the mapping socket, and
	// the same question from a connected socket (which alone sees an ICMP
	// port unreachable).
	first := make([]Exchange, len(servers))
	var wg sync.WaitGroup
	for i, srv := range servers {
		wg.Go(func() { first[i] = p.binding(ctx, TestMapping, s1, i, srv.Addr, ChangeNone) })
		if p.opts.Dial != nil {
			wg.Go(func() { p.reach(ctx, i, srv.Addr) })
		}
	}
	wg.Wait()
	if rtt, ok := measuredRTT(first); ok && p.adaptive {
		p.sched = adaptiveSchedule(rtt)
		p.progress("round trip %v: later tests send %d copies %v apart", rtt.Round(10*time.Microsecond), p.sched.MinCopies, p.sched.RTO)
	}
	answered := -1
	for i, e := range first {
		if !e.ok() {
			continue
		}
		if answered < 0 {
			answered = i
		}
		oa, p0 := e.OtherAddress, servers[i].Addr
		if p.obs.RFC5780Server < 0 && oa.IsValid() && oa.Addr() != p0.Addr() && oa.Port() != p0.Port() && oa.Port() != 0 && oa.Addr().Is4() == p0.Addr().Is4() {
			p.obs.RFC5780Server = i
		}
	}
	if answered < 0 {
		return ctx.Err()
	}

	// Phase 2: everything else, concurrently.
	var errMu sync.Mutex
	var errs []error
	fail := func(err error) {
		errMu.Lock()
		errs = append(errs, err)
		errMu.Unlock()
	}
	if s := p.obs.RFC5780Server; s >= 0 {
		prim, alt := servers[s].Addr, first[s].OtherAddress
		// Mapping tests II and III from the same socket.
		wg.Go(func() { p.binding(ctx, TestMapping, s1, s, netip.AddrPortFrom(alt.Addr(), prim.Port()), ChangeNone) })
		wg.Go(func() { p.binding(ctx, TestMapping, s1, s, alt, ChangeNone) })
		// Filtering tests II and III, each from a fresh socket that has
		// sent to nobody but the primary address.
		for _, ch := range []Change{ChangeIPPort, ChangePort} {
			wg.Go(func() {
				fs, err := p.mux.open(ctx)
				if err != nil {
					fail(err)
					return
				}
				p.binding(ctx, TestFiltering, fs, s, prim, ch)
			})
		}
	}
	hs := p.obs.RFC5780Server
	if hs < 0 {
		hs = answered
	}
	wg.Go(func() {
		if err := p.hairpin(ctx, hs); err != nil {
			fail(err)
		}
	})
	if p.opts.Lifetime {
		wg.Go(func() {
			if err := p.lifetime(ctx, hs); err != nil {
				fail(err)
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("natclass: open socket: %w", errors.Join(errs...))
	}
	return nil
}

// hairpin learns the mapped addresses of two fresh sockets and has each send
// to the other's: whatever arrives came back in through the NAT. Both send,
// so endpoint-independent mappings open each other's filters as in ICE.
func (p *prober) hairpin(ctx context.Context, srv int) error {
	var socks [2]*sock
	var mapped [2]netip.AddrPort
	var wg sync.WaitGroup
	var errs [2]error
	for i := range 2 {
		wg.Go(func() {
			s, err := p.mux.open(ctx)
			if err != nil {
				errs[i] = err
				return
			}
			socks[i] = s
			if e := p.binding(ctx, TestHairpinBinding, s, srv, p.obs.Servers[srv].Addr, ChangeNone); e.ok() {
				mapped[i] = e.Mapped
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return err
	}
	if !mapped[0].IsValid() || !mapped[1].IsValid() {
		return nil
	}
	for i := range 2 {
		from, to := socks[i], socks[1-i]
		wg.Go(func() {
			e := Exchange{Test: TestHairpin, Socket: from.id, Local: from.local, Server: -1, To: mapped[1-i]}
			idx := p.begin(e)
			req := bindingRequest(ChangeNone, 0)
			p.mux.transact(ctx, from, mapped[1-i], req, p.sched, &e, func(a arrival) bool {
				if a.sock != to.id || a.msg.Type != stun.BindingRequest {
					return false
				}
				e.Answered, e.ReceivedOn, e.From = true, a.sock, a.from
				return true
			})
			p.finish(idx, e)
		})
	}
	wg.Wait()
	return nil
}

// lifetime measures how long an idle mapping lives: for each idle time a
// fresh socket X makes a mapping, waits, and a second socket Y asks the
// server to answer to X's mapped port (RESPONSE-PORT). The answer comes from
// the address X sent to, so any filtering lets it in while the mapping
// lives, and Y's request does not refresh X's mapping. Steps run in
// parallel; once one finds the mapping gone, longer ones stop.
func (p *prober) lifetime(ctx context.Context, srv int) error {
	steps := p.opts.LifetimeSteps
	if len(steps) == 0 {
		steps = DefaultLifetimeSteps
	}
	y, err := p.mux.open(ctx)
	if err != nil {
		return err
	}
	// The control (no idle time) proves the method works with this server
	// and NAT; without it the steps would prove nothing.
	if ok, err := p.lifetimeStep(ctx, srv, y, 0, nil); err != nil || !ok {
		return err
	}
	var mu sync.Mutex
	expired := time.Duration(-1)
	gone := make(chan struct{})
	var goneOnce sync.Once
	shorterExpired := func(d time.Duration) bool {
		mu.Lock()
		defer mu.Unlock()
		return expired >= 0 && expired < d
	}
	var wg sync.WaitGroup
	errs := make([]error, len(steps))
	for i, d := range steps {
		wg.Go(func() {
			wait := func(timer <-chan time.Time) bool {
				g := gone
				for {
					select {
					case <-ctx.Done():
						return false
					case <-timer:
						return !shorterExpired(d)
					case <-g:
						if shorterExpired(d) {
							return false
						}
						g = nil // a nil channel never fires: wait for the timer
					}
				}
			}
			alive, err := p.lifetimeStep(ctx, srv, y, d, wait)
			errs[i] = err
			if err == nil && !alive && ctx.Err() == nil {
				mu.Lock()
				if expired < 0 || d < expired {
					expired = d
				}
				mu.Unlock()
				goneOnce.Do(func() { close(gone) })
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// lifetimeStep makes a mapping on a fresh socket X, waits d (through wait,
// which may abort it), then has y ask for an answer to X's mapped port. It
// reports whether X received it; skipped steps report true.
func (p *prober) lifetimeStep(ctx context.Context, srv int, y *sock, d time.Duration, wait func(<-chan time.Time) bool) (bool, error) {
	x, err := p.mux.open(ctx)
	if err != nil {
		return true, err
	}
	to := p.obs.Servers[srv].Addr
	b := p.binding(ctx, TestLifetimeBinding, x, srv, to, ChangeNone)
	if !b.ok() || b.Mapped.Port() == 0 {
		return false, nil
	}
	if d > 0 {
		timer := time.NewTimer(d)
		defer timer.Stop()
		if !wait(timer.C) {
			return true, nil
		}
	}
	e := Exchange{Test: TestLifetime, Socket: y.id, Local: y.local, Server: srv, To: to, ResponsePort: b.Mapped.Port(), IdleSeconds: d.Seconds()}
	idx := p.begin(e)
	req := bindingRequest(ChangeNone, b.Mapped.Port())
	p.mux.transact(ctx, y, to, req, p.sched, &e, func(a arrival) bool {
		if a.msg.Type.Method != stun.MethodBinding || a.msg.Type.Class == stun.ClassRequest {
			return false
		}
		readAnswer(&e, a) // ReceivedOn tells X (alive) from Y (no RESPONSE-PORT)
		return true
	})
	p.finish(idx, e)
	return e.Answered && e.ReceivedOn == x.id && e.ErrorCode == 0, nil
}
