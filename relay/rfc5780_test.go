package relay

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

var (
	rfc5780Loop1 = netip.MustParseAddr("127.0.0.1")
	rfc5780Loop2 = netip.MustParseAddr("127.0.0.2")
)

func rfc5780Logger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// behaviorFixture is a primary socket read by the test (standing in for the
// server's) plus a responder around it.
type behaviorFixture struct {
	primary *net.UDPConn
	b       *behaviorResponder
	wg      sync.WaitGroup
}

// newBehaviorFixture binds a primary socket on 127.0.0.1 and a responder
// with 127.0.0.2 as alternate IP, retrying until primary port + 1 is free on
// both IPs. With rfc5780 false there is no responder: the primary answers
// plain Binding requests and 420s CHANGE-REQUEST (a server with RFC 5780 off).
func newBehaviorFixture(t *testing.T, cfg RFC5780Config, advertised netip.Addr, rfc5780 bool) *behaviorFixture {
	t.Helper()
	f := &behaviorFixture{}
	var lastErr error
	for attempt := 0; attempt < 50; attempt++ {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(rfc5780Loop1, 0)))
		if err != nil {
			t.Fatal(err)
		}
		if !rfc5780 {
			f.primary = c
			break
		}
		if cfg.AlternateIP == (netip.Addr{}) {
			cfg.AlternateIP = rfc5780Loop2
		}
		b, err := newBehaviorResponder(cfg, c.LocalAddr().(*net.UDPAddr), advertised, rfc5780Logger())
		if err != nil {
			c.Close()
			lastErr = err
			continue
		}
		f.primary, f.b = c, b
		break
	}
	if f.primary == nil {
		t.Fatalf("could not bind a responder: %v", lastErr)
	}
	f.wg.Add(1)
	go f.serve()
	t.Cleanup(func() {
		f.primary.Close()
		if f.b != nil {
			if err := f.b.close(); err != nil {
				t.Errorf("close: %v", err)
			}
		}
		f.wg.Wait()
	})
	return f
}

// serve is the stand-in for the server's UDP read loop.
func (f *behaviorFixture) serve() {
	defer f.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := f.primary.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		m := &stun.Message{Raw: buf[:n]}
		if m.Decode() != nil || m.Type != stun.BindingRequest {
			continue
		}
		switch {
		case f.b != nil:
			f.b.answer(f.primary, m, from)
		case m.Contains(stun.AttrChangeRequest):
			answerChangeRequestUnsupported(f.primary, m, from)
		default:
			// A plain STUN answer, as pion gives.
			ua := from.(*net.UDPAddr)
			resp := stun.MustBuild(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
				&stun.XORMappedAddress{IP: ua.IP, Port: ua.Port}, stun.Fingerprint)
			_, _ = f.primary.WriteTo(resp.Raw, from)
		}
	}
}

func (f *behaviorFixture) addr() netip.AddrPort {
	return f.primary.LocalAddr().(*net.UDPAddr).AddrPort()
}

// exchange sends req from c to to and returns the answer and its source.
func rfc5780Exchange(t *testing.T, c *net.UDPConn, to netip.AddrPort, req *stun.Message) (*stun.Message, netip.AddrPort) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(req.Raw, to); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	for {
		if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("no answer to %v: %v", to, err)
		}
		m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if m.Decode() != nil || m.TransactionID != req.TransactionID {
			continue
		}
		return m, netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	}
}

func rfc5780Binding(attrs ...stun.Setter) *stun.Message {
	return stun.MustBuild(append([]stun.Setter{stun.TransactionID, stun.BindingRequest}, append(attrs, stun.Fingerprint)...)...)
}

func rfc5780Change(flags byte) stun.Setter {
	return stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, flags}}
}

func rfc5780AP(ip net.IP, port int) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), uint16(port))
}

func TestBehaviorResponderAnswers(t *testing.T) {
	t.Parallel()
	advP, advA := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")
	f := newBehaviorFixture(t, RFC5780Config{AdvertisedAlternateIP: advA}, advP, true)
	pp := f.addr().Port()
	ap := pp + 1
	bound := [2][2]netip.AddrPort{
		{netip.AddrPortFrom(rfc5780Loop1, pp), netip.AddrPortFrom(rfc5780Loop1, ap)},
		{netip.AddrPortFrom(rfc5780Loop2, pp), netip.AddrPortFrom(rfc5780Loop2, ap)},
	}
	adv := [2][2]netip.AddrPort{
		{netip.AddrPortFrom(advP, pp), netip.AddrPortFrom(advP, ap)},
		{netip.AddrPortFrom(advA, pp), netip.AddrPortFrom(advA, ap)},
	}
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	me := client.LocalAddr().(*net.UDPAddr).AddrPort()
	for _, tc := range []struct {
		name   string
		i, j   int // socket asked
		change byte
	}{
		{"primary", 0, 0, 0},
		{"primary change port", 0, 0, changePortFlag},
		{"primary change ip", 0, 0, changeIPFlag},
		{"primary change both", 0, 0, changeIPFlag | changePortFlag},
		{"alt ip", 1, 0, 0},
		{"alt both", 1, 1, 0},
		{"alt port", 0, 1, 0},
		{"alt both change both", 1, 1, changeIPFlag | changePortFlag}, // answered from the primary
		{"alt ip change ip", 1, 0, changeIPFlag},
	} {
		var setters []stun.Setter
		if tc.change != 0 {
			setters = append(setters, rfc5780Change(tc.change))
		}
		resp, from := rfc5780Exchange(t, client, bound[tc.i][tc.j], rfc5780Binding(setters...))
		si, sj := tc.i, tc.j
		if tc.change&changeIPFlag != 0 {
			si ^= 1
		}
		if tc.change&changePortFlag != 0 {
			sj ^= 1
		}
		if from != bound[si][sj] {
			t.Errorf("%s: answered from %v, want %v", tc.name, from, bound[si][sj])
		}
		var xa stun.XORMappedAddress
		var oa stun.OtherAddress
		var ro stun.ResponseOrigin
		if err := resp.Parse(&xa, &oa, &ro); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := rfc5780AP(xa.IP, xa.Port); got != me {
			t.Errorf("%s: XOR-MAPPED-ADDRESS %v, want %v", tc.name, got, me)
		}
		if got := rfc5780AP(oa.IP, oa.Port); got != adv[tc.i^1][tc.j^1] {
			t.Errorf("%s: OTHER-ADDRESS %v, want %v", tc.name, got, adv[tc.i^1][tc.j^1])
		}
		if got := rfc5780AP(ro.IP, ro.Port); got != adv[si][sj] {
			t.Errorf("%s: RESPONSE-ORIGIN %v, want %v", tc.name, got, adv[si][sj])
		}
		if err := stun.Fingerprint.Check(resp); err != nil {
			t.Errorf("%s: fingerprint: %v", tc.name, err)
		}
	}

	// RESPONSE-PORT sends the answer to another port of the same IP.
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	op := other.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	req := rfc5780Binding(stun.RawAttribute{Type: stun.AttrResponsePort, Value: []byte{byte(op >> 8), byte(op), 0, 0}})
	if _, err := client.WriteToUDPAddrPort(req.Raw, bound[0][0]); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	_ = other.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := other.Read(buf)
	if err != nil {
		t.Fatalf("RESPONSE-PORT answer: %v", err)
	}
	m := &stun.Message{Raw: buf[:n]}
	if m.Decode() != nil || m.TransactionID != req.TransactionID || m.Type != stun.BindingSuccess {
		t.Fatalf("RESPONSE-PORT answer is not ours: %v", m)
	}

	// Malformed attributes get 400.
	for name, attr := range map[string]stun.Setter{
		"short CHANGE-REQUEST": stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{4}},
		"RESPONSE-PORT 0":      stun.RawAttribute{Type: stun.AttrResponsePort, Value: []byte{0, 0, 0, 0}},
	} {
		resp, _ := rfc5780Exchange(t, client, bound[0][0], rfc5780Binding(attr))
		var ec stun.ErrorCodeAttribute
		if err := ec.GetFrom(resp); err != nil || ec.Code != stun.CodeBadRequest {
			t.Errorf("%s: got %v %v, want 400", name, ec.Code, err)
		}
	}
}

func TestAnswerChangeRequestUnsupported(t *testing.T) {
	t.Parallel()
	f := newBehaviorFixture(t, RFC5780Config{}, netip.Addr{}, false)
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	resp, _ := rfc5780Exchange(t, client, f.addr(), rfc5780Binding(rfc5780Change(changeIPFlag|changePortFlag)))
	var ec stun.ErrorCodeAttribute
	var ua stun.UnknownAttributes
	if err := resp.Parse(&ec, &ua); err != nil {
		t.Fatal(err)
	}
	if resp.Type != stun.BindingError || ec.Code != stun.CodeUnknownAttribute || len(ua) != 1 || ua[0] != stun.AttrChangeRequest {
		t.Fatalf("got %v code %d unknown %v", resp.Type, ec.Code, ua)
	}
}

func TestBehaviorResponderRateLimit(t *testing.T) {
	t.Parallel()
	// A rate so low that the bucket (burst 1) never refills during the test.
	f := newBehaviorFixture(t, RFC5780Config{Rate: 0.001}, netip.Addr{}, true)
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	alt := netip.AddrPortFrom(rfc5780Loop2, f.addr().Port())
	rfc5780Exchange(t, client, alt, rfc5780Binding()) // the one token
	for range 3 {
		if _, err := client.WriteToUDPAddrPort(rfc5780Binding().Raw, alt); err != nil {
			t.Fatal(err)
		}
	}
	// Plain Binding requests on the primary are not limited here.
	rfc5780Exchange(t, client, f.addr(), rfc5780Binding())
	deadline := time.Now().Add(5 * time.Second)
	for f.b.stats().RateLimited < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling a counter, bounded
	}
	if st := f.b.stats(); st.RateLimited != 3 || st.Answers != 2 {
		t.Fatalf("stats %+v, want 3 rate-limited and 2 answers", st)
	}
}

func TestSourceLimiterBounded(t *testing.T) {
	t.Parallel()
	l := newSourceLimiter(1, 1)
	now := time.Unix(1000, 0)
	ip := netip.MustParseAddr("198.51.100.9")
	if !l.allow(ip, now) || l.allow(ip, now) {
		t.Fatal("burst 1 not enforced")
	}
	if !l.allow(ip, now.Add(time.Second)) {
		t.Fatal("token not refilled after 1s")
	}
	// Fill the table; stale entries are swept when it is full.
	for i := range maxRateSources {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.allow(a, now)
	}
	if !l.allow(netip.MustParseAddr("203.0.113.1"), now.Add(time.Hour)) {
		t.Fatal("new source refused although every entry is stale")
	}
	if len(l.sources) > maxRateSources {
		t.Fatalf("table grew to %d", len(l.sources))
	}
	if l.allow(netip.MustParseAddr("203.0.113.2"), now.Add(time.Hour)) != true {
		t.Fatal("second new source refused")
	}
}

func TestNewBehaviorResponderConfigErrors(t *testing.T) {
	t.Parallel()
	primary := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3478}
	for _, tc := range []struct {
		name    string
		cfg     RFC5780Config
		primary *net.UDPAddr
		want    string
	}{
		{"no alternate", RFC5780Config{}, primary, "AlternateIP is required"},
		{"wildcard primary", RFC5780Config{AlternateIP: rfc5780Loop2}, &net.UDPAddr{IP: net.IPv4zero, Port: 3478}, "explicit IP"},
		{"same IP", RFC5780Config{AlternateIP: rfc5780Loop1}, primary, "equals the primary IP"},
		{"family", RFC5780Config{AlternateIP: netip.MustParseAddr("::1")}, primary, "different families"},
		{"same port", RFC5780Config{AlternateIP: rfc5780Loop2, AlternatePort: 3478}, primary, "equals the primary port"},
		{"port range", RFC5780Config{AlternateIP: rfc5780Loop2, AlternatePort: 70000}, primary, "out of range"},
		{"unspecified alt", RFC5780Config{AlternateIP: netip.IPv4Unspecified()}, primary, "explicit address"},
		{"advertised same", RFC5780Config{AlternateIP: rfc5780Loop2, AdvertisedAlternateIP: netip.MustParseAddr("198.51.100.1")}, primary, "both 198.51.100.1"},
	} {
		adv := netip.Addr{}
		if tc.name == "advertised same" {
			adv = netip.MustParseAddr("198.51.100.1")
		}
		_, err := newBehaviorResponder(tc.cfg, tc.primary, adv, rfc5780Logger())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to mention %q", tc.name, err, tc.want)
		}
	}
	// Every problem at once.
	_, err := newBehaviorResponder(RFC5780Config{AlternatePort: 3478}, &net.UDPAddr{IP: net.IPv4zero, Port: 3478}, netip.Addr{}, rfc5780Logger())
	if err == nil || strings.Count(err.Error(), "\n") < 2 {
		t.Fatalf("want several problems reported together, got %v", err)
	}
}

func TestBehaviorResponderCloseIdempotent(t *testing.T) {
	t.Parallel()
	f := newBehaviorFixture(t, RFC5780Config{}, netip.Addr{}, true)
	if err := f.b.close(); err != nil {
		t.Fatal(err)
	}
	if err := f.b.close(); err != nil {
		t.Fatal(err)
	}
}
